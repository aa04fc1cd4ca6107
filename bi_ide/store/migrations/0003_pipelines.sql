-- Papermill pipelines: a run of a pipeline, its notebook steps, and cron schedules.
CREATE TABLE pipeline_runs (
    id            VARCHAR PRIMARY KEY,
    pipeline      VARCHAR NOT NULL,
    params        JSON,
    status        VARCHAR NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'done', 'failed', 'stopped')),
    trigger       VARCHAR NOT NULL DEFAULT 'manual',
    worker_id     VARCHAR,
    archive_path  VARCHAR,
    error         VARCHAR,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ
);

CREATE TABLE pipeline_steps (
    pipeline_run_id  VARCHAR NOT NULL,
    name             VARCHAR NOT NULL,
    notebook         VARCHAR NOT NULL,
    params           JSON,
    status           VARCHAR NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'done', 'failed', 'skipped')),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    duration_s       DOUBLE,
    output_path      VARCHAR,
    failed_cell      INTEGER,
    error            VARCHAR,
    PRIMARY KEY (pipeline_run_id, name)
);

CREATE TABLE schedules (
    id            VARCHAR PRIMARY KEY,
    pipeline      VARCHAR NOT NULL,
    cron          VARCHAR NOT NULL,
    params        JSON,
    paused        BOOLEAN NOT NULL DEFAULT FALSE,
    missed        VARCHAR NOT NULL DEFAULT 'run-once' CHECK (missed IN ('run-once', 'skip')),
    last_run_at   TIMESTAMPTZ,
    next_run_at   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
