-- Fleet: what the agents and the hub's rules need beyond 0002 (seed §6, §7, §X, §XIII).
-- Samples: raw rows have bucket_s 0; rows rolled up into one-minute averages have bucket_s 60.
ALTER TABLE worker_samples ADD COLUMN disk_used_bytes BIGINT;
ALTER TABLE worker_samples ADD COLUMN bucket_s INTEGER DEFAULT 0;
ALTER TABLE gpu_samples ADD COLUMN name VARCHAR;
ALTER TABLE gpu_samples ADD COLUMN bucket_s INTEGER DEFAULT 0;

-- Per-process GPU memory; run_id is the workbench run whose process this is (matched on host and pid).
CREATE TABLE gpu_processes (
    worker_id          VARCHAR NOT NULL,
    gpu_index          INTEGER NOT NULL,
    time               TIMESTAMPTZ NOT NULL,
    pid                INTEGER NOT NULL,
    process_name       VARCHAR,
    memory_used_bytes  BIGINT,
    run_id             VARCHAR
);

-- How an agent came back after the hub was away: the SLO "reconnect within 30 s" is read from here.
-- reconnect_s is an upper bound: the time from the last failed attempt to the first one that worked.
CREATE TABLE worker_reconnects (
    worker_id        VARCHAR NOT NULL,
    time             TIMESTAMPTZ NOT NULL,
    outage_s         DOUBLE NOT NULL,
    reconnect_s      DOUBLE NOT NULL,
    failed_attempts  INTEGER NOT NULL,
    dropped_batches  INTEGER NOT NULL DEFAULT 0
);

-- Runs: where their process lives (to map GPU processes to runs) and the thermal guard's verdict.
ALTER TABLE runs ADD COLUMN host VARCHAR;
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN throttle_factor DOUBLE DEFAULT 1.0;
ALTER TABLE runs ADD COLUMN throttle_reason VARCHAR;

-- Every throttle and release of a run by the thermal guard: when, why, and on which GPU.
CREATE TABLE run_throttles (
    run_id         VARCHAR NOT NULL,
    time           TIMESTAMPTZ NOT NULL DEFAULT now(),
    factor         DOUBLE NOT NULL,
    worker_id      VARCHAR,
    gpu_index      INTEGER,
    temperature_c  DOUBLE,
    reason         VARCHAR NOT NULL
);

-- Alerts: the value that triggered an alert and when the webhook was told.
ALTER TABLE alerts ADD COLUMN value DOUBLE;
ALTER TABLE alerts ADD COLUMN notified_at TIMESTAMPTZ;
