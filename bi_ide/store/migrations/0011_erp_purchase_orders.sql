-- Purchase orders (seed §5.2): stock already ordered counts toward the reorder decision.
-- One row per order line; a receipt (a stock move) names the line it fills. Outstanding at a date =
-- quantity − receipts against the line up to that date, while the line is open; 'closed' means
-- nothing more will come (cancelled, or short-shipped and settled).
CREATE TABLE erp_purchase_orders (
    reference      VARCHAR PRIMARY KEY,  -- the order line, e.g. PO-0042/1
    date           DATE NOT NULL,
    supplier       VARCHAR NOT NULL,
    product        VARCHAR NOT NULL,
    quantity       DOUBLE NOT NULL CHECK (quantity > 0),
    unit_cost      DOUBLE NOT NULL CHECK (unit_cost >= 0),
    expected_date  DATE NOT NULL,
    status         VARCHAR NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    currency       VARCHAR NOT NULL
);

ALTER TABLE erp_stock_moves ADD COLUMN purchase_order VARCHAR;  -- the order line a receipt fills
