-- The council (seed §II.C): members with their record, decisions, votes; and the learning log.
CREATE TABLE council_members (
    id          VARCHAR PRIMARY KEY,
    name        VARCHAR NOT NULL,
    "group"     VARCHAR NOT NULL
                CHECK ("group" IN ('president', 'high', 'shadow', 'light', 'scout', 'meta', 'domain')),
    expertise   VARCHAR NOT NULL,
    correct     INTEGER NOT NULL DEFAULT 0,
    wrong       INTEGER NOT NULL DEFAULT 0,
    weight      DOUBLE NOT NULL DEFAULT 1.0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE council_decisions (
    id                VARCHAR PRIMARY KEY,
    question          VARCHAR NOT NULL,
    urgency           VARCHAR NOT NULL DEFAULT 'normal'
                      CHECK (urgency IN ('low', 'normal', 'high', 'critical')),
    decision          VARCHAR CHECK (decision IN ('approved', 'rejected', 'deferred')),
    confidence        DOUBLE CHECK (confidence BETWEEN 0 AND 1),
    probability       DOUBLE,
    reasoning         VARCHAR,
    shadow_analysis   VARCHAR,
    light_suggestion  VARCHAR,
    evidence          JSON,
    vetoed            BOOLEAN NOT NULL DEFAULT FALSE,
    veto_reason       VARCHAR,
    outcome           VARCHAR CHECK (outcome IN ('right', 'wrong')),
    resolved_at       TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE council_votes (
    decision_id  VARCHAR NOT NULL,
    member_id    VARCHAR NOT NULL,
    round        INTEGER NOT NULL DEFAULT 0,
    vote         VARCHAR NOT NULL CHECK (vote IN ('approve', 'reject', 'abstain')),
    probability  DOUBLE,
    rationale    VARCHAR,
    evidence     JSON,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (decision_id, member_id, round)
);

CREATE TABLE learning_log (
    id            VARCHAR PRIMARY KEY,
    source        VARCHAR NOT NULL,
    content_type  VARCHAR NOT NULL,
    content       VARCHAR,
    topics        VARCHAR[],
    confidence    DOUBLE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
