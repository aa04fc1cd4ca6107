-- Users, API tokens, training runs, their metrics, checkpoints and registered models (seed §III).
CREATE TABLE users (
    id          VARCHAR PRIMARY KEY,
    username    VARCHAR NOT NULL UNIQUE,
    email       VARCHAR,
    role        VARCHAR NOT NULL DEFAULT 'developer' CHECK (role IN ('viewer', 'developer', 'admin')),
    is_active   BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login  TIMESTAMPTZ
);

-- Only the sha256 of a token's secret is kept; the secret is shown once, at creation.
CREATE TABLE api_tokens (
    id            VARCHAR PRIMARY KEY,
    name          VARCHAR NOT NULL,
    role          VARCHAR NOT NULL CHECK (role IN ('viewer', 'developer', 'admin')),
    token_hash    VARCHAR NOT NULL UNIQUE,
    user_id       VARCHAR,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);

CREATE TABLE runs (
    id            VARCHAR PRIMARY KEY,
    name          VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL DEFAULT 'train',
    status        VARCHAR NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'stopped', 'done', 'failed')),
    preset        VARCHAR,
    config        JSON,
    worker_id     VARCHAR,
    device        VARCHAR,
    params_count  BIGINT,
    error         VARCHAR,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Metrics in long format. A series is one (run, name); points carry only the series' integer id,
-- which makes batch inserts about twice as fast as repeating two strings on every row. Points
-- arrive in batches ordered by run, so DuckDB's zone maps skip other series' row groups.
CREATE SEQUENCE metric_series_id START 1;

CREATE TABLE metric_series (
    id      INTEGER PRIMARY KEY,
    run_id  VARCHAR NOT NULL,
    name    VARCHAR NOT NULL,
    UNIQUE (run_id, name)
);

CREATE TABLE metric_points (
    series_id  INTEGER NOT NULL,
    step       BIGINT NOT NULL,
    value      DOUBLE NOT NULL,
    time       TIMESTAMPTZ NOT NULL
);

CREATE VIEW metrics AS
SELECT s.run_id, p.step, s.name, p.value, p.time
FROM metric_points p JOIN metric_series s ON s.id = p.series_id;

-- Idempotency keys of applied write batches: a retried batch with the same key is not stored twice.
CREATE TABLE write_batches (
    key         VARCHAR PRIMARY KEY,
    kind        VARCHAR NOT NULL,
    rows        BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE checkpoints (
    id          VARCHAR PRIMARY KEY,
    run_id      VARCHAR NOT NULL,
    step        BIGINT NOT NULL,
    epoch       INTEGER,
    kind        VARCHAR NOT NULL DEFAULT 'step' CHECK (kind IN ('step', 'best', 'last')),
    loss        DOUBLE,
    path        VARCHAR NOT NULL,
    size_bytes  BIGINT,
    sha256      VARCHAR,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE models (
    id             VARCHAR PRIMARY KEY,
    name           VARCHAR NOT NULL,
    version        INTEGER NOT NULL,
    run_id         VARCHAR,
    checkpoint_id  VARCHAR,
    status         VARCHAR NOT NULL DEFAULT 'ready' CHECK (status IN ('ready', 'deployed', 'archived')),
    params_count   BIGINT,
    metrics        JSON,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);
