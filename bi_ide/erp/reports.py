"""The ERP reports: sales, margin, receivables, cash, stock and the latest forecasts.

Each report is a function of the store with keyword arguments; its formula is in its docstring.
The work is SQL in DuckDB (the store's ``sql``); given a HubClient instead of a Store, a report
asks the hub to run it, so notebooks, the council and the dashboards call the same names anywhere.
Amounts are in the currency of the rows (``currency`` in ``kpis``); a store holding invoices in
more than one currency is refused rather than summed.
"""

from __future__ import annotations

import functools
import inspect
from datetime import date, timedelta
from statistics import NormalDist

import numpy as np
import polars as pl

from bi_ide.errors import ValidationError

REPORTS: dict = {}  # name -> the report function (what the hub serves under /api/v1/erp/reports/NAME)
AGING_BUCKETS = ("0-30", "31-60", "61-90", "91-120", "120+")
GROUPINGS = ("category", "product", "customer")


def report(fn):
    """Register ``fn`` as a report; called with a HubClient, the hub runs it."""

    @functools.wraps(fn)
    def run(store, **kwargs):
        if not hasattr(store, "sql"):  # a HubClient: the store lives in the hub's process
            return store.erp_report(fn.__name__, **kwargs)
        return fn(store, **kwargs)

    run.parameters = {name: p.annotation for name, p in inspect.signature(fn).parameters.items() if name != "store"}
    REPORTS[fn.__name__] = run
    return run


# -- shared pieces ------------------------------------------------------------------------------
# The filter every sales report takes: a period, a product category and a customer.
_LINE_FILTER = (
    "date BETWEEN ? AND ? AND (?::VARCHAR IS NULL OR customer = ?) "
    "AND (?::VARCHAR IS NULL OR product IN (SELECT sku FROM erp_products WHERE category = ?))"
)


def _period(store, start: date | None, end: date | None) -> tuple[date, date]:
    """``start``..``end`` with the store's first and last invoice date as defaults."""
    first, last = store.sql("SELECT min(date) AS first, max(date) AS last FROM erp_invoices").row(0)
    end = end or last or date.today()
    start = start or first or end
    if start > end:
        raise ValidationError(f"the period starts {start} after it ends {end}; swap them", field="start")
    return start, end


def as_of_date(store, as_of: date | None = None) -> date:
    """``as_of``, or the date of the store's last invoice (today when there is none)."""
    return as_of or store.sql("SELECT max(date) AS d FROM erp_invoices").item() or date.today()


def _filter_params(start: date, end: date, category: str | None, customer: str | None) -> list:
    return [start, end, customer, customer, category, category]


def currency(store) -> str | None:
    """The one currency of the store's invoices (None when there are none)."""
    found = store.sql("SELECT DISTINCT currency FROM erp_invoices ORDER BY 1")["currency"].to_list()
    if len(found) > 1:
        raise ValidationError(f"the invoices are in several currencies {found}; the reports sum one currency, "
                              "so import each currency into its own store", field="currency")
    return found[0] if found else None


def _on_hand_sql(as_of_param: str = "?") -> str:
    """On hand per product at the end of a day: receipts and adjustments minus quantities sold."""
    return (
        "SELECT p.sku AS product, coalesce(m.q, 0) - coalesce(s.q, 0) AS on_hand FROM erp_products p "
        f"LEFT JOIN (SELECT product, sum(quantity) AS q FROM erp_stock_moves WHERE date <= {as_of_param} "
        "GROUP BY product) m ON m.product = p.sku "
        f"LEFT JOIN (SELECT product, sum(quantity) AS q FROM erp_invoice_lines WHERE date <= {as_of_param} "
        "GROUP BY product) s ON s.product = p.sku"
    )


def _outstanding_sql(as_of_param: str = "?") -> str:
    """Each open purchase-order line ordered by the day: quantity still to come (never below 0)."""
    return (
        "SELECT o.*, greatest(o.quantity - coalesce(r.q, 0), 0) AS outstanding FROM erp_purchase_orders o "
        "LEFT JOIN (SELECT purchase_order, sum(quantity) AS q FROM erp_stock_moves WHERE purchase_order IS NOT NULL "
        f"AND date <= {as_of_param} GROUP BY 1) r ON r.purchase_order = o.reference "
        f"WHERE o.status = 'open' AND o.date <= {as_of_param}"
    )


# -- sales ------------------------------------------------------------------------------------------
@report
def monthly_sales(store, *, start: date | None = None, end: date | None = None, category: str | None = None,
                  customer: str | None = None) -> pl.DataFrame:
    """Revenue by calendar month with its change and trend.

    revenue = Σ amount (= quantity · unit_price · (1 − discount)); cost = Σ quantity · unit_cost;
    gross_profit = revenue − cost; margin = gross_profit / revenue;
    mom = revenue_m / revenue_(m−1) − 1; yoy = revenue_m / revenue_(m−12) − 1;
    rolling_3m = mean(revenue_(m−2) .. revenue_m). Months without sales count as 0.
    """
    start, end = _period(store, start, end)
    currency(store)
    return store.sql(
        "WITH m AS (SELECT date_trunc('month', date)::DATE AS month, sum(amount) AS revenue, "
        f"sum(quantity * unit_cost) AS cost, count(*) AS lines FROM erp_invoice_lines WHERE {_LINE_FILTER} "
        "GROUP BY 1), months AS (SELECT unnest(range(date_trunc('month', ?::DATE), ?::DATE + 1, INTERVAL 1 MONTH))"
        "::DATE AS month) "
        "SELECT month, coalesce(revenue, 0) AS revenue, coalesce(cost, 0) AS cost, "
        "coalesce(revenue, 0) - coalesce(cost, 0) AS gross_profit, "
        "(coalesce(revenue, 0) - coalesce(cost, 0)) / nullif(revenue, 0) AS margin, coalesce(lines, 0) AS lines, "
        "coalesce(revenue, 0) / nullif(lag(coalesce(revenue, 0)) OVER w, 0) - 1 AS mom, "
        "coalesce(revenue, 0) / nullif(lag(coalesce(revenue, 0), 12) OVER w, 0) - 1 AS yoy, "
        "avg(coalesce(revenue, 0)) OVER (ORDER BY month ROWS 2 PRECEDING) AS rolling_3m "
        "FROM months LEFT JOIN m USING (month) WINDOW w AS (ORDER BY month) ORDER BY month",
        [*_filter_params(start, end, category, customer), start, end],
    )


@report
def gross_margin(store, *, by: str | None = None, start: date | None = None, end: date | None = None,
                 category: str | None = None, customer: str | None = None) -> pl.DataFrame:
    """Gross margin in total (``by`` None) or per category, product or customer, largest revenue first.

    revenue = Σ amount; cost = Σ quantity · unit_cost; gross_profit = revenue − cost;
    margin = gross_profit / revenue; share = revenue / total revenue of the period.
    """
    if by is not None and by not in GROUPINGS:
        raise ValidationError(f"by {by!r} is not one of {list(GROUPINGS)} (or none for the total)", field="by")
    start, end = _period(store, start, end)
    currency(store)
    key = {None: "'all'", "category": "p.category", "product": "l.product", "customer": "l.customer"}[by]
    return store.sql(
        f"SELECT {key} AS key, sum(amount) AS revenue, sum(quantity * l.unit_cost) AS cost, "
        "sum(amount) - sum(quantity * l.unit_cost) AS gross_profit, "
        "(sum(amount) - sum(quantity * l.unit_cost)) / nullif(sum(amount), 0) AS margin, "
        "sum(amount) / nullif(sum(sum(amount)) OVER (), 0) AS share "
        "FROM erp_invoice_lines l JOIN erp_products p ON p.sku = l.product "
        f"WHERE {_LINE_FILTER} GROUP BY 1 ORDER BY revenue DESC, key",
        _filter_params(start, end, category, customer),
    )


def _pareto(store, key: str, names: str, n: int, start, end, category, customer) -> pl.DataFrame:
    if not 1 <= n <= 10_000:
        raise ValidationError(f"n must be 1..10000, got {n}", field="n")
    start, end = _period(store, start, end)
    currency(store)
    return store.sql(
        f"SELECT t.key, coalesce(x.name, t.key) AS name, revenue, revenue / sum(revenue) OVER () AS share, "
        "sum(revenue) OVER (ORDER BY revenue DESC, t.key) / sum(revenue) OVER () AS cumulative_share "
        f"FROM (SELECT {key} AS key, sum(amount) AS revenue FROM erp_invoice_lines WHERE {_LINE_FILTER} "
        f"GROUP BY 1) t LEFT JOIN {names} x ON x.key = t.key ORDER BY revenue DESC, t.key LIMIT ?",
        [*_filter_params(start, end, category, customer), n],
    )


@report
def top_products(store, *, n: int = 10, start: date | None = None, end: date | None = None,
                 category: str | None = None, customer: str | None = None) -> pl.DataFrame:
    """The ``n`` products with the most revenue and their Pareto shares.

    share = revenue_p / Σ revenue; cumulative_share = Σ share of the products ranked at or above p.
    """
    return _pareto(store, "product", "(SELECT sku AS key, name FROM erp_products)", n, start, end, category, customer)


@report
def top_customers(store, *, n: int = 10, start: date | None = None, end: date | None = None,
                  category: str | None = None, customer: str | None = None) -> pl.DataFrame:
    """The ``n`` customers with the most revenue and their Pareto shares (as in ``top_products``)."""
    return _pareto(store, "customer", "(SELECT code AS key, name FROM erp_customers)", n, start, end, category,
                   customer)


@report
def abc_classification(store, *, a: float = 0.8, b: float = 0.95, start: date | None = None,
                       end: date | None = None, category: str | None = None) -> pl.DataFrame:
    """Products ranked by revenue in classes A, B and C.

    With products sorted by revenue and cumulative_share the running share including p:
    class A when the share before p (cumulative_share − share) < a, B when it is < b, else C.
    So the products making the first ``a`` of revenue are A, the next ``b − a`` are B.
    """
    if not 0 < a < b <= 1:
        raise ValidationError(f"need 0 < a < b <= 1, got a={a}, b={b}", field="a")
    ranked = _pareto(store, "product", "(SELECT sku AS key, name FROM erp_products)", 10_000, start, end, category,
                     None)
    before = pl.col("cumulative_share") - pl.col("share")
    return ranked.with_columns(
        pl.when(before < a).then(pl.lit("A")).when(before < b).then(pl.lit("B")).otherwise(pl.lit("C")).alias("class")
    )


# -- receivables and cash ------------------------------------------------------------------------
def _open_invoices_sql() -> str:
    """Invoices dated on or before as_of with what is still owed on them at as_of."""
    return (
        "SELECT i.number AS invoice, i.customer, i.date, i.due_date, i.total, "
        "i.total - coalesce(p.paid, 0) AS balance, ?::DATE - i.date AS age_days, "
        "greatest(?::DATE - i.due_date, 0) AS days_overdue FROM erp_invoices i "
        "LEFT JOIN (SELECT invoice, sum(amount) AS paid FROM erp_payments WHERE date <= ? GROUP BY invoice) p "
        "ON p.invoice = i.number WHERE i.date <= ? AND i.total - coalesce(p.paid, 0) > 0.005"
    )


@report
def ar_aging(store, *, as_of: date | None = None) -> pl.DataFrame:
    """Open receivables per customer in age buckets at ``as_of``, largest balance first.

    balance = invoice total − payments dated ≤ as_of (invoices dated ≤ as_of, balance > 0);
    age = as_of − invoice date, bucketed 0–30, 31–60, 61–90, 91–120, 120+ days;
    overdue = Σ balance of invoices whose due date is before as_of.
    """
    as_of = as_of_date(store, as_of)
    buckets = ", ".join(
        f"sum(balance) FILTER (WHERE age_days {cond}) AS \"{name}\""
        for name, cond in zip(AGING_BUCKETS, ("<= 30", "BETWEEN 31 AND 60", "BETWEEN 61 AND 90",
                                              "BETWEEN 91 AND 120", "> 120"), strict=True)
    )
    df = store.sql(
        f"SELECT o.customer, coalesce(c.name, o.customer) AS name, {buckets}, sum(balance) AS total, "
        "coalesce(sum(balance) FILTER (WHERE days_overdue > 0), 0) AS overdue "
        f"FROM ({_open_invoices_sql()}) o LEFT JOIN erp_customers c ON c.code = o.customer "
        "GROUP BY ALL ORDER BY total DESC, o.customer",
        [as_of] * 4,
    )
    return df.with_columns(pl.col(AGING_BUCKETS).fill_null(0.0))


@report
def receivables_to_chase(store, *, as_of: date | None = None, n: int = 20) -> pl.DataFrame:
    """Overdue invoices to chase first: ranked by balance · days overdue (money times delay)."""
    as_of = as_of_date(store, as_of)
    return store.sql(
        f"SELECT o.*, coalesce(c.name, o.customer) AS name FROM ({_open_invoices_sql()}) o "
        "LEFT JOIN erp_customers c ON c.code = o.customer WHERE days_overdue > 0 "
        "ORDER BY balance * days_overdue DESC, invoice LIMIT ?",
        [as_of] * 4 + [n],
    )


@report
def dso(store, *, as_of: date | None = None, days: int = 90) -> dict:
    """Days sales outstanding at ``as_of`` over the last ``days`` days.

    DSO = receivables at as_of / revenue invoiced in (as_of − days, as_of] · days.
    """
    if not 1 <= days <= 3660:
        raise ValidationError(f"days must be 1..3660, got {days}", field="days")
    as_of = as_of_date(store, as_of)
    receivables = store.sql(f"SELECT coalesce(sum(balance), 0) AS r FROM ({_open_invoices_sql()})", [as_of] * 4).item()
    sales = store.sql("SELECT coalesce(sum(total), 0) AS s FROM erp_invoices WHERE date > ?::DATE - ? AND date <= ?",
                      [as_of, days, as_of]).item()
    return {"as_of": as_of, "days": days, "receivables": receivables, "sales": sales,
            "dso_days": receivables / sales * days if sales else None}


@report
def cash_flow(store, *, start: date | None = None, end: date | None = None) -> pl.DataFrame:
    """Money in and out by month.

    receipts = Σ customer payments; expenses = Σ expenses; purchases = Σ stock receipts · unit cost
    (the purchase-order line's when the receipt names one, else the product's);
    net = receipts − expenses − purchases; cumulative = running Σ net from ``start``.
    """
    start, end = _period(store, start, end)
    return store.sql(
        "WITH months AS (SELECT unnest(range(date_trunc('month', ?::DATE), ?::DATE + 1, INTERVAL 1 MONTH))::DATE "
        "AS month), r AS (SELECT date_trunc('month', date)::DATE AS month, sum(amount) AS v FROM erp_payments "
        "WHERE date BETWEEN ? AND ? GROUP BY 1), e AS (SELECT date_trunc('month', date)::DATE AS month, "
        "sum(amount) AS v FROM erp_expenses WHERE date BETWEEN ? AND ? GROUP BY 1), "
        "b AS (SELECT date_trunc('month', m.date)::DATE AS month, sum(m.quantity * coalesce(o.unit_cost, "
        "p.unit_cost)) AS v FROM erp_stock_moves m JOIN erp_products p ON p.sku = m.product "
        "LEFT JOIN erp_purchase_orders o ON o.reference = m.purchase_order WHERE m.kind = 'receipt' "
        "AND m.date BETWEEN ? AND ? GROUP BY 1) "
        "SELECT month, coalesce(r.v, 0) AS receipts, coalesce(e.v, 0) AS expenses, coalesce(b.v, 0) AS purchases, "
        "coalesce(r.v, 0) - coalesce(e.v, 0) - coalesce(b.v, 0) AS net, "
        "sum(coalesce(r.v, 0) - coalesce(e.v, 0) - coalesce(b.v, 0)) OVER (ORDER BY month) AS cumulative "
        "FROM months LEFT JOIN r USING (month) LEFT JOIN e USING (month) LEFT JOIN b USING (month) ORDER BY month",
        [start, end] * 4,
    )


@report
def expense_anomalies(store, *, z: float = 3.0, months: int = 12) -> pl.DataFrame:
    """Months whose spending in a category is far from that category's recent months.

    For category c and month m with x = Σ amount: mean and sd over the ``months`` months before m
    (at least 3); score = (x − mean) / sd; anomalous when |score| > z.
    """
    if z <= 0 or not 3 <= months <= 120:
        raise ValidationError(f"need z > 0 and months 3..120, got z={z}, months={months}", field="z")
    return store.sql(
        "WITH m AS (SELECT category, date_trunc('month', date)::DATE AS month, sum(amount) AS amount "
        "FROM erp_expenses GROUP BY ALL), s AS (SELECT *, "
        "avg(amount) OVER w AS mean, stddev_samp(amount) OVER w AS sd, count(*) OVER w AS n FROM m "
        "WINDOW w AS (PARTITION BY category ORDER BY month ROWS BETWEEN ? PRECEDING AND 1 PRECEDING)) "
        "SELECT category, month, amount, mean, sd, (amount - mean) / sd AS score FROM s "
        "WHERE n >= 3 AND sd > 0 AND abs(amount - mean) / sd > ? ORDER BY month, category",
        [months, z],
    )


@report
def expense_trend(store, *, as_of: date | None = None, months: int = 3) -> pl.DataFrame:
    """Each expense category's spending in the last ``months`` full months against the ``months``
    before, and its share of revenue over the last of those periods.

    recent = Σ amount in the last ``months`` months up to as_of's month (included); before = the
    same span just before; change = recent / before − 1 (null when before is 0); share_of_revenue =
    recent / Σ invoice-line amounts over the same months.
    """
    if not 1 <= months <= 24:
        raise ValidationError(f"months must be 1..24, got {months}", field="months")
    as_of = as_of_date(store, as_of)
    return store.sql(
        "WITH b AS (SELECT date_trunc('month', ?::DATE)::DATE AS m), "
        "r AS (SELECT (SELECT m FROM b) - INTERVAL (? - 1) MONTH AS lo, (SELECT m FROM b) + INTERVAL 1 MONTH AS hi), "
        "e AS (SELECT category, "
        "  sum(amount) FILTER (WHERE date >= (SELECT lo FROM r) AND date < (SELECT hi FROM r)) AS recent, "
        "  sum(amount) FILTER (WHERE date >= (SELECT lo FROM r) - INTERVAL (?) MONTH AND date < (SELECT lo FROM r)) "
        "  AS before FROM erp_expenses GROUP BY category), "
        "s AS (SELECT sum(amount) AS revenue FROM erp_invoice_lines WHERE date >= (SELECT lo FROM r) "
        "  AND date < (SELECT hi FROM r)) "
        "SELECT category, coalesce(recent, 0) AS recent, coalesce(before, 0) AS before, "
        "CASE WHEN coalesce(before, 0) > 0 THEN coalesce(recent, 0) / before - 1 END AS change, "
        "CASE WHEN (SELECT revenue FROM s) > 0 THEN coalesce(recent, 0) / (SELECT revenue FROM s) END "
        "AS share_of_revenue FROM e ORDER BY recent DESC NULLS LAST, category",
        [as_of, months, months],
    )


@report
def price_elasticity(store, *, product: str, as_of: date | None = None, months: int = 24) -> dict:
    """How a product's monthly quantity moved with its net price: the log-log slope.

    Per month over the last ``months`` up to as_of: quantity = Σ quantity and net price = Σ amount /
    Σ quantity (discounts included). elasticity = the least-squares slope of log quantity on log
    net price over months with sales; None with fewer than 6 such months or when the net price
    varied by less than 1 % (coefficient of variation): then the history cannot tell. ``r2`` says
    how much of the quantity's movement the price explains (promotions and seasons move both).
    """
    if not 6 <= months <= 120:
        raise ValidationError(f"months must be 6..120, got {months}", field="months")
    as_of = as_of_date(store, as_of)
    rows = store.sql(
        "SELECT date_trunc('month', date) AS month, sum(quantity) AS q, sum(amount) / sum(quantity) AS price "
        "FROM erp_invoice_lines WHERE product = ? AND quantity > 0 AND amount > 0 AND date <= ?::DATE "
        "AND date > ?::DATE - INTERVAL (?) MONTH GROUP BY 1 ORDER BY 1",
        [product, as_of, as_of, months],
    )
    out = {"product": product, "months": rows.height, "elasticity": None, "price_cv": None, "r2": None}
    if rows.height < 6:
        return out
    q, p = rows["q"].to_numpy(), rows["price"].to_numpy()
    out["price_cv"] = float(p.std() / p.mean()) if p.mean() > 0 else 0.0
    if out["price_cv"] < 0.01:
        return out
    x, y = np.log(p), np.log(q)
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    residual = y - y.mean() - slope * (x - x.mean())
    total = float(((y - y.mean()) ** 2).sum())
    out["elasticity"] = slope
    out["r2"] = 1 - float((residual ** 2).sum()) / total if total > 0 else 0.0
    return out


# -- stock -------------------------------------------------------------------------------------------
@report
def inventory_turnover(store, *, as_of: date | None = None, days: int = 365) -> pl.DataFrame:
    """Inventory turnover and days of inventory per product over the ``days`` days to ``as_of``.

    cogs = Σ quantity · unit_cost sold in the window; average inventory = (on hand at the window's
    start + on hand at as_of) / 2 · unit_cost (negative stock counts as 0);
    turnover = cogs / average inventory; days_of_inventory = days / turnover.
    """
    if not 1 <= days <= 3660:
        raise ValidationError(f"days must be 1..3660, got {days}", field="days")
    as_of = as_of_date(store, as_of)
    begin = as_of - timedelta(days=days)
    return store.sql(
        f"WITH a AS ({_on_hand_sql('$begin')}), z AS ({_on_hand_sql('$as_of')}), "
        "c AS (SELECT product, sum(quantity * unit_cost) AS cogs FROM erp_invoice_lines "
        "WHERE date > $begin AND date <= $as_of GROUP BY 1) "
        "SELECT p.sku AS product, p.name, p.category, coalesce(c.cogs, 0) AS cogs, "
        "(greatest(a.on_hand, 0) + greatest(z.on_hand, 0)) / 2 * p.unit_cost AS avg_inventory, "
        "coalesce(c.cogs, 0) / nullif((greatest(a.on_hand, 0) + greatest(z.on_hand, 0)) / 2 * p.unit_cost, 0) "
        "AS turnover, $days / nullif(coalesce(c.cogs, 0) / nullif((greatest(a.on_hand, 0) + "
        "greatest(z.on_hand, 0)) / 2 * p.unit_cost, 0), 0) AS days_of_inventory "
        "FROM erp_products p JOIN a ON a.product = p.sku JOIN z ON z.product = p.sku "
        "LEFT JOIN c ON c.product = p.sku ORDER BY turnover DESC NULLS LAST, product",
        {"begin": begin, "as_of": as_of, "days": days},
    )


@report
def stock_status(store, *, as_of: date | None = None, service_level: float = 0.95, days: int = 180,
                 category: str | None = None) -> pl.DataFrame:
    """On hand and on order against reorder point, safety stock and EOQ per product; alerts first.

    From daily demand over the ``days`` days to as_of (days without sales count as 0):
    d = mean per day, σ = its sample sd; L = lead_time_days; z = Φ⁻¹(service_level);
    safety_stock = z · σ · √L; reorder_point = d · L + safety_stock;
    EOQ = √(2 · D · S / H) with D = 365 · d, S = order_cost, H = holding_rate · unit_cost;
    on_order = Σ outstanding quantity of open purchase-order lines (``open_purchase_orders``);
    position = on_hand + on_order.
    status: 'out' when on_hand ≤ 0, 'reorder' when position ≤ reorder_point, else 'ok'.
    """
    if not 0.5 <= service_level < 1:
        raise ValidationError(f"service_level must be in [0.5, 1), got {service_level}", field="service_level")
    if not 7 <= days <= 3660:
        raise ValidationError(f"days must be 7..3660, got {days}", field="days")
    as_of = as_of_date(store, as_of)
    z = NormalDist().inv_cdf(service_level)
    return store.sql(
        f"WITH h AS ({_on_hand_sql('$as_of')}), "
        "d AS (SELECT product, sum(quantity) AS s, sum(q2) AS s2 FROM (SELECT product, date, sum(quantity) AS quantity, "
        "sum(quantity) ^ 2 AS q2 FROM erp_invoice_lines WHERE date > $as_of::DATE - $days AND date <= $as_of "
        "GROUP BY ALL) GROUP BY 1), "
        f"o AS (SELECT product, sum(outstanding) AS q FROM ({_outstanding_sql('$as_of')}) GROUP BY 1), "
        "k AS (SELECT p.*, h.on_hand, coalesce(o.q, 0) AS on_order, coalesce(d.s, 0) / $days AS daily_demand, "
        "sqrt(greatest((coalesce(d.s2, 0) - coalesce(d.s, 0) ^ 2 / $days) / ($days - 1), 0)) AS daily_sd "
        "FROM erp_products p JOIN h ON h.product = p.sku LEFT JOIN d ON d.product = p.sku "
        "LEFT JOIN o ON o.product = p.sku WHERE $category::VARCHAR IS NULL OR p.category = $category), "
        "r AS (SELECT *, $z * daily_sd * sqrt(lead_time_days) AS safety_stock FROM k) "
        "SELECT sku AS product, name, category, on_hand, on_order, on_hand + on_order AS position, daily_demand, "
        "daily_sd, lead_time_days, safety_stock, daily_demand * lead_time_days + safety_stock AS reorder_point, "
        "sqrt(2 * 365 * daily_demand * order_cost / nullif(holding_rate * unit_cost, 0)) AS eoq, "
        "CASE WHEN on_hand <= 0 THEN 'out' WHEN on_hand + on_order <= daily_demand * lead_time_days + safety_stock "
        "THEN 'reorder' ELSE 'ok' END AS status FROM r "
        "ORDER BY CASE status WHEN 'out' THEN 0 WHEN 'reorder' THEN 1 ELSE 2 END, product",
        {"as_of": as_of, "days": days, "z": z, "category": category},
    )


@report
def open_purchase_orders(store, *, as_of: date | None = None) -> pl.DataFrame:
    """Purchase-order lines still to arrive at ``as_of``, the latest first.

    outstanding = quantity − Σ receipts against the line up to as_of (lines 'open' and ordered by
    as_of, with outstanding > 0); value = outstanding · unit_cost; days_late = as_of − expected_date
    when that is past, else 0.
    """
    as_of = as_of_date(store, as_of)
    return store.sql(
        "SELECT o.reference, o.supplier, o.product, p.name, o.date, o.expected_date, o.quantity, o.outstanding, "
        "o.outstanding * o.unit_cost AS value, greatest(date_diff('day', o.expected_date, $as_of::DATE), 0) "
        f"AS days_late FROM ({_outstanding_sql('$as_of')}) o JOIN erp_products p ON p.sku = o.product "
        "WHERE o.outstanding > 0 ORDER BY days_late DESC, o.expected_date, o.reference",
        {"as_of": as_of},
    )


# -- forecasts and the headline figures ---------------------------------------------------------------
@report
def latest_forecasts(store, *, target: str = "quantity", series: str | None = None) -> pl.DataFrame:
    """The newest forecast run's rows: series (a SKU, or '*' for all sales), month, model, mean, lo, hi.

    lo and hi bound the ``level`` % prediction interval; ``pattern`` is the demand class
    (smooth, erratic, intermittent, lumpy) that chose the model. Empty when nothing was forecast.
    """
    if target not in ("quantity", "sales"):
        raise ValidationError(f"target {target!r} is not one of ['quantity', 'sales']", field="target")
    return store.sql(
        "SELECT f.series, f.month, f.model, f.pattern, f.mean, f.lo, f.hi, r.level, r.as_of, f.run_id "
        "FROM erp_forecasts f JOIN erp_forecast_runs r ON r.id = f.run_id "
        "WHERE f.run_id = (SELECT id FROM erp_forecast_runs ORDER BY created_at DESC, id LIMIT 1) "
        "AND f.target = ? AND (?::VARCHAR IS NULL OR f.series = ?) ORDER BY f.series, f.month",
        [target, series, series],
    )


@report
def kpis(store, *, as_of: date | None = None, days: int = 30) -> dict:
    """The headline figures for the ``days`` days to ``as_of`` against the ``days`` before them.

    revenue, gross_profit and margin as in ``gross_margin``; revenue_change = revenue / previous − 1;
    receivables and overdue as in ``ar_aging``; dso as in ``dso`` (90 days); stock_alerts = products
    with status 'out' or 'reorder' in ``stock_status``; net_cash = receipts − expenses − purchases.
    """
    if not 1 <= days <= 366:
        raise ValidationError(f"days must be 1..366, got {days}", field="days")
    as_of = as_of_date(store, as_of)
    begin, before = as_of - timedelta(days=days), as_of - timedelta(days=2 * days)
    now = gross_margin(store, start=begin + timedelta(days=1), end=as_of)
    prev = gross_margin(store, start=before + timedelta(days=1), end=begin)
    revenue, previous = now["revenue"].sum(), prev["revenue"].sum()
    profit = now["gross_profit"].sum()
    aging = ar_aging(store, as_of=as_of)
    stock = stock_status(store, as_of=as_of)
    flows = cash_flow(store, start=begin + timedelta(days=1), end=as_of)
    return {
        "as_of": as_of, "days": days, "currency": currency(store),
        "revenue": revenue, "previous_revenue": previous,
        "revenue_change": revenue / previous - 1 if previous else None,
        "gross_profit": profit, "margin": profit / revenue if revenue else None,
        "receivables": aging["total"].sum() if aging.height else 0.0,
        "overdue": aging["overdue"].sum() if aging.height else 0.0,
        "dso_days": dso(store, as_of=as_of)["dso_days"],
        "stock_alerts": stock.filter(pl.col("status") != "ok").height,
        "net_cash": flows["net"].sum() if flows.height else 0.0,
    }
