-- Fleet: workers, their samples, alerts and the command queue (seed §6, §7, §X, §XIII).
CREATE TABLE workers (
    id             VARCHAR PRIMARY KEY,
    hostname       VARCHAR NOT NULL,
    os             VARCHAR,
    platform       VARCHAR,
    cpu_count      INTEGER,
    ram_bytes      BIGINT,
    gpus           JSON,
    labels         JSON,
    agent_version  VARCHAR,
    registered_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at   TIMESTAMPTZ
);

CREATE TABLE worker_samples (
    worker_id       VARCHAR NOT NULL,
    time            TIMESTAMPTZ NOT NULL,
    cpu_percent     DOUBLE,
    ram_percent     DOUBLE,
    ram_used_bytes  BIGINT,
    disk_percent    DOUBLE,
    net_sent_bytes  BIGINT,
    net_recv_bytes  BIGINT,
    load_1m         DOUBLE,
    run_id          VARCHAR
);

CREATE TABLE gpu_samples (
    worker_id           VARCHAR NOT NULL,
    gpu_index           INTEGER NOT NULL,
    time                TIMESTAMPTZ NOT NULL,
    utilization         DOUBLE,
    memory_used_bytes   BIGINT,
    memory_total_bytes  BIGINT,
    temperature_c       DOUBLE,
    power_w             DOUBLE,
    power_limit_w       DOUBLE,
    sm_clock_mhz        INTEGER,
    mem_clock_mhz       INTEGER,
    throttle_reasons    VARCHAR,
    fan_percent         DOUBLE,
    pcie_tx_kbps        DOUBLE,
    pcie_rx_kbps        DOUBLE
);

CREATE TABLE alerts (
    id               VARCHAR PRIMARY KEY,
    rule             VARCHAR NOT NULL,
    severity         VARCHAR NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    source           VARCHAR,
    worker_id        VARCHAR,
    message          VARCHAR NOT NULL,
    dedup_key        VARCHAR NOT NULL,
    status           VARCHAR NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    opened_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    acknowledged_at  TIMESTAMPTZ,
    acknowledged_by  VARCHAR,
    resolved_at      TIMESTAMPTZ
);

CREATE TABLE worker_commands (
    id           VARCHAR PRIMARY KEY,
    worker_id    VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,
    payload      JSON,
    status       VARCHAR NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    created_by   VARCHAR,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    result       JSON,
    error        VARCHAR
);
