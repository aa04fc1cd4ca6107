-- ERP analytics (seed §5.2, §15): master data, sales, receipts, expenses, stock, forecasts, reports.
-- Natural keys (customer code, SKU, invoice number, payment/expense/move reference) make a
-- re-import an upsert. Money is DOUBLE in the currency named on the same row.
CREATE TABLE erp_customers (
    code        VARCHAR PRIMARY KEY,
    name        VARCHAR NOT NULL,
    segment     VARCHAR,
    terms_days  INTEGER NOT NULL DEFAULT 30 CHECK (terms_days BETWEEN 0 AND 365),
    currency    VARCHAR NOT NULL
);

CREATE TABLE erp_products (
    sku             VARCHAR PRIMARY KEY,
    name            VARCHAR NOT NULL,
    category        VARCHAR NOT NULL,
    unit_cost       DOUBLE NOT NULL CHECK (unit_cost >= 0),
    unit_price      DOUBLE NOT NULL CHECK (unit_price >= 0),
    currency        VARCHAR NOT NULL,
    lead_time_days  INTEGER NOT NULL DEFAULT 14 CHECK (lead_time_days BETWEEN 0 AND 365),
    order_cost      DOUBLE NOT NULL DEFAULT 50 CHECK (order_cost >= 0),      -- cost of one purchase order (EOQ's S)
    holding_rate    DOUBLE NOT NULL DEFAULT 0.25 CHECK (holding_rate > 0)    -- yearly holding cost / unit cost
);

CREATE TABLE erp_invoices (
    number    VARCHAR NOT NULL,  -- unique: the import replaces an invoice whole
    customer  VARCHAR NOT NULL,
    date      DATE NOT NULL,
    due_date  DATE NOT NULL,
    total     DOUBLE NOT NULL,
    currency  VARCHAR NOT NULL
);

-- Lines repeat their invoice's date and customer so the sales reports scan one table.
-- amount = quantity * unit_price * (1 - discount); cost = quantity * unit_cost.
CREATE TABLE erp_invoice_lines (
    invoice     VARCHAR NOT NULL,
    line        INTEGER NOT NULL,
    date        DATE NOT NULL,
    customer    VARCHAR NOT NULL,
    product     VARCHAR NOT NULL,
    quantity    DOUBLE NOT NULL,
    unit_price  DOUBLE NOT NULL,
    discount    DOUBLE NOT NULL DEFAULT 0,
    unit_cost   DOUBLE NOT NULL,
    amount      DOUBLE NOT NULL,
    currency    VARCHAR NOT NULL
);

CREATE TABLE erp_payments (
    reference  VARCHAR PRIMARY KEY,
    invoice    VARCHAR NOT NULL,
    date       DATE NOT NULL,
    amount     DOUBLE NOT NULL,
    currency   VARCHAR NOT NULL
);

CREATE TABLE erp_expenses (
    reference  VARCHAR PRIMARY KEY,
    date       DATE NOT NULL,
    category   VARCHAR NOT NULL,
    vendor     VARCHAR NOT NULL,
    amount     DOUBLE NOT NULL,
    currency   VARCHAR NOT NULL
);

-- Receipts and adjustments; sales leave stock through the invoice lines.
CREATE TABLE erp_stock_moves (
    reference  VARCHAR PRIMARY KEY,
    date       DATE NOT NULL,
    product    VARCHAR NOT NULL,
    quantity   DOUBLE NOT NULL,
    kind       VARCHAR NOT NULL CHECK (kind IN ('receipt', 'adjustment'))
);

-- A forecast run: which month it starts after, its horizon, and its backtest against seasonal naive.
CREATE TABLE erp_forecast_runs (
    id           VARCHAR PRIMARY KEY,
    as_of        DATE NOT NULL,
    horizon      INTEGER NOT NULL,
    level        INTEGER NOT NULL,
    series       INTEGER NOT NULL,
    backtest     JSON,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per series and month: quantity demand per product, or the sales amount of all ('*').
CREATE TABLE erp_forecasts (
    run_id   VARCHAR NOT NULL,
    target   VARCHAR NOT NULL CHECK (target IN ('quantity', 'sales')),
    series   VARCHAR NOT NULL,
    month    DATE NOT NULL,
    model    VARCHAR NOT NULL,
    pattern  VARCHAR NOT NULL,
    mean     DOUBLE NOT NULL,
    lo       DOUBLE,
    hi       DOUBLE,
    PRIMARY KEY (run_id, target, series, month)
);

-- Rendered reports (the weekly predictive report), each file written once under data/reports/.
CREATE TABLE erp_reports (
    id          VARCHAR PRIMARY KEY,
    kind        VARCHAR NOT NULL,
    as_of       DATE NOT NULL,
    path        VARCHAR NOT NULL,
    sha256      VARCHAR NOT NULL,
    size_bytes  BIGINT NOT NULL,
    summary     JSON,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
