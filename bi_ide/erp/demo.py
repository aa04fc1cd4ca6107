"""A seeded demo business: a trading company selling coffee, dates, spices and household goods.

Daily demand per product follows a trend, a yearly season and promotions; some products sell
rarely and in lumps (intermittent demand). Stock is replenished by an (s, Q) policy reviewed
weekly, each order a purchase order whose supplier is sometimes late, so products run out and sales are lost. Customers buy in a Pareto
pattern; some pay late and a few never do. Expenses come in categories, with one anomaly.
The same seed and dates give the same business, row for row.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from bi_ide.erp.imports import import_frame
from bi_ide.errors import ConflictError, ValidationError

CURRENCY = "SAR"
SUNDAY = 6  # date.weekday(): the buyer's order day, the first of the working week
# (category, [(sku, name, unit price)]): a few names are Arabic, as the user's own products are.
CATALOGUE = (
    ("Coffee", [("COF-ARB", "قهوة عربية شقراء", 42.0), ("COF-ESP", "Espresso beans 1kg", 95.0),
                ("COF-TRK", "Turkish coffee 250g", 18.0), ("COF-CAP", "Capsules x50", 60.0),
                ("COF-HEL", "قهوة بالهيل", 48.0)]),
    ("Dates", [("DAT-MJD", "تمر مجدول فاخر", 85.0), ("DAT-SKR", "تمر سكري", 55.0), ("DAT-AJW", "تمر عجوة المدينة", 120.0),
               ("DAT-GFT", "Dates gift box", 150.0)]),
    ("Spices", [("SPC-HEL", "هيل أخضر", 70.0), ("SPC-SAF", "زعفران", 210.0), ("SPC-CUM", "Cumin 500g", 16.0),
                ("SPC-BHR", "بهارات مشكلة", 22.0), ("SPC-TUR", "Turmeric 500g", 14.0)]),
    ("Tea", [("TEA-GRN", "Green tea 100 bags", 24.0), ("TEA-BLK", "شاي أسود", 19.0), ("TEA-MNT", "Mint tea", 21.0)]),
    ("Household", [("HH-DALL", "دلة نحاس", 180.0), ("HH-CUPS", "Finjan cups x12", 65.0), ("HH-THER", "Thermos 1L", 75.0),
                   ("HH-GRND", "Coffee grinder", 240.0), ("HH-BURN", "Incense burner", 95.0)]),
    ("Sweets", [("SWT-MAM", "معمول بالتمر", 38.0), ("SWT-BAQ", "Baklava tray", 90.0), ("SWT-HLV", "حلاوة طحينية", 26.0)]),
)
CUSTOMERS = (
    "مؤسسة الريان التجارية", "شركة الخليج للتموين", "Al Noor Hotels", "مقهى الديوان", "Desert Rose Café",
    "أسواق المدينة", "Oasis Catering", "شركة الواحة", "Crescent Supermarkets", "مطاعم البيت العربي",
    "Palm Tree Traders", "Najd Office Supplies", "مؤسسة السلام", "Blue Dhow Restaurants", "Hejaz Hospitality",
    "مكتب الأفق", "Red Sea Resorts", "Falcon Airlines Catering", "شركة الأمانة", "Corniche Coffee House",
    "Summit Events", "مخابز الفجر", "Golden Sands Mall", "Riyadh Gift Shop", "مؤسسة النخيل",
)
SUPPLIERS = {  # category -> the supplier its purchase orders go to
    "Coffee": "Yemen Mocha Importers", "Dates": "مزارع القصيم", "Spices": "Malabar Spice Co.", "Tea": "Ceylon Leaf Ltd",
    "Household": "مصنع الدلال", "Sweets": "حلويات الشام",
}
EXPENSES = (  # category, vendor, monthly base, how it moves
    ("Rent", "Al Olaya Properties", 6_000.0, "fixed"),
    ("Salaries", "Payroll", 17_000.0, "raise"),
    ("Utilities", "Saudi Electricity", 1_100.0, "summer"),
    ("Marketing", "Bright Ads", 2_000.0, "promo"),
    ("Logistics", "Fast Freight", 0.03, "sales"),
    ("Software", "Cloud ERP Ltd", 600.0, "fixed"),
    ("Maintenance", "Handy Services", 400.0, "random"),
)


def demo_tables(*, months: int = 36, seed: int = 7, end: date | None = None) -> dict[str, pl.DataFrame]:
    """The demo business's tables (customers, products, purchase orders, invoices, payments, expenses,
    stock moves), in the order they import."""
    if not 3 <= months <= 120:
        raise ValidationError(f"months must be 3..120, got {months}", field="months")
    rng = np.random.default_rng(seed)
    end = end or date.today().replace(day=1) - timedelta(days=1)
    first = _add_months(end.replace(day=1), 1 - months)
    days = pl.date_range(first, end, "1d", eager=True)
    products = _products(rng)
    customers = _customers(rng)
    demand = _demand(rng, products, days)
    sold, orders, receipts = _replenish(rng, products, demand, days)
    lines = _lines(rng, products, customers, sold, days)
    invoices = lines.group_by("invoice").agg(pl.col("date").first(), pl.col("customer").first(),
                                             (pl.col("quantity") * pl.col("unit_price")
                                              * (1 - pl.col("discount"))).sum().alias("total")).sort("invoice")
    return {
        "customers": customers.drop("lateness"),
        "products": products.drop("base", "pattern", "phase"),
        "purchase_orders": orders,
        "invoices": lines,
        "payments": _payments(rng, invoices, customers, end),
        "expenses": _expenses(rng, days, lines),
        "stock_moves": receipts,
    }


def load_demo(store, *, months: int = 36, seed: int = 7, end: date | None = None, if_empty: bool = False) -> dict:
    """Write the demo business into an empty store; returns rows per table.

    Refuses (ConflictError) when the store already holds ERP data, or with ``if_empty`` does
    nothing and returns {"skipped": ...}: the user's own data is never mixed with the demo.
    """
    held = {k: v for k, v in store.erp_counts().items() if v}
    if held:
        if if_empty:
            return {"skipped": held}
        raise ConflictError(f"the store already holds ERP data {held}; the demo goes into an empty store only. "
                            "Remove it with `bi-ide erp clear --yes` first, or pass --if-empty to skip")
    tables = demo_tables(months=months, seed=seed, end=end)
    return {name: import_frame(store, frame, name, name=f"demo {name}")["rows"] for name, frame in tables.items()}


# -- the parts ------------------------------------------------------------------------------------------
def _add_months(day: date, n: int) -> date:
    index = day.year * 12 + day.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def _products(rng) -> pl.DataFrame:
    rows = []
    for category, items in CATALOGUE:
        for sku, name, price in items:
            pattern = rng.choice(["smooth", "seasonal", "intermittent"], p=[0.45, 0.35, 0.2])
            base = rng.uniform(0.01, 0.05) if pattern == "intermittent" else rng.lognormal(2.8, 0.6) / max(price, 20) ** 0.5
            rows.append({
                "sku": sku, "name": name, "category": category, "unit_price": price,
                "unit_cost": round(price * rng.uniform(0.45, 0.72), 2), "currency": CURRENCY,
                "lead_time_days": int(rng.choice([7, 14, 21, 30, 45])), "order_cost": float(rng.choice([40, 80, 150])),
                "holding_rate": 0.25, "base": base, "pattern": str(pattern),
                "phase": int(rng.integers(0, 12)),
            })
    return pl.DataFrame(rows)


def _customers(rng) -> pl.DataFrame:
    n = len(CUSTOMERS)
    return pl.DataFrame({
        "code": [f"C{i + 1:03d}" for i in range(n)], "name": list(CUSTOMERS),
        "segment": rng.choice(["retail", "hospitality", "corporate"], n).tolist(),
        "terms_days": rng.choice([15, 30, 45, 60], n).tolist(), "currency": [CURRENCY] * n,
        # days past due a customer usually pays (negative: early); about a fifth pay late.
        "lateness": np.where(rng.random(n) < 0.2, rng.uniform(25, 110, n), rng.uniform(-8, 4, n)).tolist(),
    })


def _demand(rng, products: pl.DataFrame, days: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Units wanted and promotion days (1) per product (rows) and day (columns)."""
    t = np.arange(len(days)) / 365.0
    month = days.dt.month().to_numpy()
    weekday = days.dt.weekday().to_numpy()
    promo = np.zeros((products.height, len(days)))
    for i in range(products.height):  # two promotion fortnights a year per product, at random
        for start in rng.choice(len(days) - 14, size=max(1, len(days) // 180), replace=False):
            promo[i, start:start + 14] = 1
    demand = np.empty((products.height, len(days)))
    for i, p in enumerate(products.iter_rows(named=True)):
        season = 1 + (0.45 if p["pattern"] == "seasonal" else 0.12) * np.cos(2 * np.pi * (month - 1 - p["phase"]) / 12)
        rate = p["base"] * (1 + 0.18 * t) * season * np.where(weekday == 5, 0.5, 1.0) * (1 + 0.8 * promo[i])
        if p["pattern"] == "intermittent":  # rare orders of a few units at once
            demand[i] = rng.poisson(rate) * rng.integers(2, 12, len(days))
        else:
            demand[i] = rng.poisson(rate)
    return demand, promo


def _replenish(rng, products: pl.DataFrame, wanted, days: pl.Series):
    """Serve demand from stock under an (s, Q) policy with late suppliers; lost sales when out.

    Each order is a purchase-order line, received whole against it when it arrives; the orders
    still on their way at the end stay open.
    """
    demand, promo = wanted
    sold = np.zeros_like(demand)
    orders, moves = [], []
    for i, p in enumerate(products.iter_rows(named=True)):
        daily, spread = max(demand[i].mean(), 0.05), demand[i].std()
        lead = p["lead_time_days"]
        reorder_at, qty = daily * lead + 1.65 * spread * lead ** 0.5, max(round(daily * 75), 4)
        stock, arriving = float(round(qty * 1.5)), {}
        moves.append((f"RC-{p['sku']}-0000", days[0], p["sku"], float(round(qty * 1.5)), None))
        for d in range(len(days)):
            if d in arriving:
                order = arriving.pop(d)
                stock += qty
                moves.append((f"RC-{p['sku']}-{d:04d}", days[d], p["sku"], float(qty), order))
            sold[i, d] = min(stock, demand[i, d])
            stock -= sold[i, d]
            # The buyer reviews stock on Sundays and keeps one order in transit at a time.
            if stock <= reorder_at and not arriving and days[d].weekday() == SUNDAY:
                delay = lead + int(rng.integers(0, lead)) if rng.random() < 0.25 else lead
                order = f"PO-{p['sku']}-{d:04d}"
                arriving[d + delay] = order
                orders.append((order, days[d], SUPPLIERS[p["category"]], p["sku"], float(qty), p["unit_cost"],
                               days[d] + timedelta(days=lead), CURRENCY))
    receipts = pl.DataFrame(moves, schema=["reference", "date", "product", "quantity", "purchase_order"], orient="row")
    orders = pl.DataFrame(orders, schema=["reference", "date", "supplier", "product", "quantity", "unit_cost",
                                          "expected_date", "currency"], orient="row")
    return (sold, promo), orders, receipts.with_columns(pl.lit("receipt").alias("kind"))


def _lines(rng, products: pl.DataFrame, customers: pl.DataFrame, sold, days: pl.Series) -> pl.DataFrame:
    """Invoice lines: each product-day's sales go to one customer; one invoice per customer and day."""
    units, promo = sold
    product_i, day_i = np.nonzero(units)
    weights = 1 / np.arange(1, customers.height + 1) ** 1.1  # Pareto: a few customers buy most
    buyers = rng.choice(customers.height, size=len(product_i), p=weights / weights.sum())
    frame = pl.DataFrame({
        "d": day_i, "c": buyers, "p": product_i, "date": days.gather(day_i),
        "product": products.get_column("sku").gather(product_i),
        "customer": customers.get_column("code").gather(buyers),
        "quantity": units[product_i, day_i], "unit_price": products.get_column("unit_price").gather(product_i),
        "promo": promo[product_i, day_i],
    })
    discount = pl.when(pl.col("promo") > 0).then(0.15).when(pl.col("quantity") >= 20).then(0.05).otherwise(0.0)
    number = pl.struct("d", "c").rank("dense").cast(pl.Int64) + 10000
    return (frame.sort("d", "c", "p")
            .with_columns(discount.alias("discount"), pl.format("INV-{}", number).alias("invoice"))
            .select("invoice", "date", "customer", "product", "quantity", "unit_price", "discount"))


def _payments(rng, invoices: pl.DataFrame, customers: pl.DataFrame, end: date) -> pl.DataFrame:
    """Each invoice paid at due date + the customer's lateness (± noise); 3 % of the last 9 months' never
    (older bad debts are written off); no payment after ``end``."""
    joined = invoices.join(customers.select("code", "terms_days", "lateness"), left_on="customer", right_on="code",
                           maintain_order="left")
    noise = rng.normal(0, 5, joined.height)
    never = (rng.random(joined.height) < 0.03) & (joined["date"] > end - timedelta(days=270)).to_numpy()
    paid = joined.with_columns(
        (pl.col("date") + pl.duration(days=(pl.col("terms_days") + pl.col("lateness") + pl.Series(noise))
                                      .round().cast(pl.Int64).clip(0))).alias("paid_on"),
        pl.Series("never", never),
    ).filter(~pl.col("never") & (pl.col("paid_on") <= end)).sort("paid_on", "invoice")
    return paid.select(pl.format("PAY-{}", pl.col("invoice")).alias("reference"), "invoice",
                       pl.col("paid_on").alias("date"), pl.col("total").round(2).alias("amount"),
                       pl.lit(CURRENCY).alias("currency"))


def _expenses(rng, days: pl.Series, lines: pl.DataFrame) -> pl.DataFrame:
    months = days.dt.truncate("1mo").unique().sort()
    sales = (lines.group_by(pl.col("date").dt.truncate("1mo").alias("month"))
             .agg((pl.col("quantity") * pl.col("unit_price")).sum().alias("sales")))
    by_month = dict(zip(sales["month"].to_list(), sales["sales"].to_list(), strict=True))
    spike = int(rng.integers(len(months) // 2, len(months)))  # one month the maintenance bill explodes
    rows = []
    for k, month in enumerate(months.to_list()):
        for category, vendor, base, how in EXPENSES:
            amount = {
                "fixed": base, "raise": base * 1.05 ** (k // 12),
                "summer": base * (1.8 if month.month in (6, 7, 8, 9) else 1.0),
                "promo": base * rng.uniform(0.7, 1.6), "sales": base * by_month.get(month, 0.0),
                "random": base * rng.uniform(0.4, 1.4) * (9 if k == spike and category == "Maintenance" else 1),
            }[how]
            rows.append((f"EXP-{month:%Y%m}-{category[:4].upper()}", month + timedelta(days=int(rng.integers(0, 25))),
                         category, vendor, round(amount, 2), CURRENCY))
    return pl.DataFrame(rows, schema=["reference", "date", "category", "vendor", "amount", "currency"], orient="row")
