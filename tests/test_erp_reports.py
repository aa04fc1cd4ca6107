"""Each ERP report against a small business computed by hand."""

from __future__ import annotations

import math
from datetime import date
from statistics import NormalDist, stdev

import polars as pl
import pytest

from bi_ide.erp import reports
from bi_ide.erp.imports import import_frame
from bi_ide.errors import ValidationError

D = date.fromisoformat


def load(store, tables: dict[str, dict]) -> None:
    for table, columns in tables.items():
        import_frame(store, pl.DataFrame(columns), table)


# Two customers, two products, four invoices, two payments, one expense, two receipts. By hand:
# I1 2024-01-10 C1: P1 2 × 5 = 10, P2 1 × 4 = 4 (cost 2·2 + 3 = 7)   I2 2024-02-15 C2: P1 10 × 5 × 0.9 = 45 (cost 20)
# I3 2024-03-20 C1: P2 5 × 4 = 20 (cost 15)                          I4 2025-01-10 C1: P1 4 × 5 = 20 (cost 8)
SMALL = {
    "customers": {"code": ["C1", "C2"], "name": ["Acme", "مؤسسة النور"], "terms_days": [30, 10]},
    "products": {"sku": ["P1", "P2"], "name": ["Widget", "قهوة"], "category": ["A", "B"], "unit_cost": [2.0, 3.0],
                 "unit_price": [5.0, 4.0], "lead_time_days": [10, 20]},
    "invoices": {"invoice": ["I1", "I1", "I2", "I3", "I4"],
                 "date": ["2024-01-10", "2024-01-10", "2024-02-15", "2024-03-20", "2025-01-10"],
                 "customer": ["C1", "C1", "C2", "C1", "C1"], "product": ["P1", "P2", "P1", "P2", "P1"],
                 "quantity": [2, 1, 10, 5, 4], "unit_price": [5.0, 4.0, 5.0, 4.0, 5.0],
                 "discount": [0.0, 0.0, 0.1, 0.0, 0.0]},
    "payments": {"reference": ["PAY1", "PAY2"], "invoice": ["I1", "I2"], "date": ["2024-01-20", "2024-03-01"],
                 "amount": [14.0, 20.0]},
    "expenses": {"reference": ["E1"], "date": ["2024-01-05"], "category": ["Rent"], "vendor": ["Landlord"],
                 "amount": [10.0]},
    "stock_moves": {"reference": ["R1", "R2"], "date": ["2024-01-01", "2024-02-01"], "product": ["P1", "P2"],
                    "quantity": [20.0, 10.0]},
}


@pytest.fixture
def small(store):
    load(store, SMALL)
    return store


def test_monthly_sales_fills_gaps_and_computes_changes(small):
    df = reports.monthly_sales(small)
    assert df.height == 13  # Jan 2024 .. Jan 2025, empty months as 0
    by = {r["month"]: r for r in df.iter_rows(named=True)}
    assert [by[D(m)]["revenue"] for m in ("2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01")] == [14, 45, 20, 0]
    assert by[D("2024-01-01")]["cost"] == 7 and by[D("2024-01-01")]["gross_profit"] == 7
    assert by[D("2024-02-01")]["mom"] == pytest.approx(45 / 14 - 1)
    assert by[D("2024-04-01")]["mom"] == pytest.approx(-1)
    assert by[D("2024-05-01")]["mom"] is None  # 0 / 0
    assert by[D("2024-03-01")]["rolling_3m"] == pytest.approx((14 + 45 + 20) / 3)
    assert by[D("2025-01-01")]["yoy"] == pytest.approx(20 / 14 - 1)
    assert by[D("2024-02-01")]["margin"] == pytest.approx(25 / 45)


def test_monthly_sales_filters(small):
    coffee = reports.monthly_sales(small, category="B")
    assert coffee["revenue"].sum() == 24
    acme = reports.monthly_sales(small, customer="C1", start=D("2024-01-01"), end=D("2024-03-31"))
    assert acme["revenue"].to_list() == [14, 0, 20]
    with pytest.raises(ValidationError, match="swap"):
        reports.monthly_sales(small, start=D("2024-05-01"), end=D("2024-01-01"))


def test_gross_margin_total_and_by_category(small):
    total = reports.gross_margin(small).row(0, named=True)
    assert (total["revenue"], total["cost"], total["gross_profit"]) == (99, 50, 49)
    assert total["margin"] == pytest.approx(49 / 99)
    by = {r["key"]: r for r in reports.gross_margin(small, by="category").iter_rows(named=True)}
    assert (by["A"]["revenue"], by["A"]["cost"], by["B"]["revenue"], by["B"]["cost"]) == (75, 32, 24, 18)
    assert by["A"]["share"] == pytest.approx(75 / 99)
    with pytest.raises(ValidationError, match="by 'region'"):
        reports.gross_margin(small, by="region")


def test_pareto_and_abc(small):
    top = reports.top_products(small)
    assert top["key"].to_list() == ["P1", "P2"] and top["name"].to_list() == ["Widget", "قهوة"]
    assert top["cumulative_share"].to_list() == pytest.approx([75 / 99, 1.0])
    customers = reports.top_customers(small, n=1)
    assert customers.rows() == [("C1", "Acme", 54.0, pytest.approx(54 / 99), pytest.approx(54 / 99))]
    # P2 starts at 75/99 = 0.76 of revenue: A under a = 0.8, B under a = 0.7.
    assert reports.abc_classification(small)["class"].to_list() == ["A", "A"]
    assert reports.abc_classification(small, a=0.7)["class"].to_list() == ["A", "B"]


def test_ar_aging_chase_and_dso(small):
    as_of = D("2024-04-30")
    aging = reports.ar_aging(small, as_of=as_of)
    # I2: 45 − 20 paid = 25 open, 75 days old, due 02-25; I3: 20 open, 41 days old, due 04-19; I4 not yet issued.
    assert aging["customer"].to_list() == ["C2", "C1"]
    c2, c1 = aging.rows(named=True)
    assert (c2["61-90"], c2["total"], c2["overdue"], c2["0-30"]) == (25, 25, 25, 0)
    assert (c1["31-60"], c1["total"], c1["overdue"]) == (20, 20, 20)
    chase = reports.receivables_to_chase(small, as_of=as_of)
    assert chase["invoice"].to_list() == ["I2", "I3"] and chase["days_overdue"].to_list() == [65, 11]
    before_due = reports.ar_aging(small, as_of=D("2024-03-21"))
    assert before_due.filter(pl.col("customer") == "C1")["overdue"].item() == 0
    dso = reports.dso(small, as_of=as_of, days=90)
    assert dso["receivables"] == 45 and dso["sales"] == 65  # I2 + I3 in (Jan 31, Apr 30]
    assert dso["dso_days"] == pytest.approx(45 / 65 * 90)


def test_payments_take_their_invoices_currency(small):
    assert small.sql("SELECT DISTINCT currency FROM erp_payments").item() == "USD"  # C1 and C2 bill in USD
    load(small, {"customers": {"code": ["C9"], "name": ["Riyadh Co"], "currency": ["SAR"]},
                 "invoices": {"invoice": ["S1"], "date": ["2024-01-11"], "customer": ["C9"], "product": ["P1"],
                              "quantity": [1], "unit_price": [5.0]},
                 "payments": {"reference": ["PAY9"], "invoice": ["S1"], "date": ["2024-01-12"], "amount": [5.0]}})
    assert small.sql("SELECT currency FROM erp_payments WHERE reference = 'PAY9'").item() == "SAR"


def test_cash_flow(small):
    df = reports.cash_flow(small, start=D("2024-01-01"), end=D("2024-03-31"))
    # Jan: +14 received, −10 rent, −40 bought (20 × 2); Feb: −30 bought (10 × 3); Mar: +20.
    assert df["net"].to_list() == [-36, -30, 20]
    assert df["cumulative"].to_list() == [-36, -66, -46]
    assert df["purchases"].to_list() == [40, 30, 0]


def test_inventory_turnover(small):
    df = reports.inventory_turnover(small, as_of=D("2024-03-31"), days=90)
    p1, p2 = df.filter(pl.col("product") == "P1").row(0, named=True), df.filter(pl.col("product") == "P2").row(0, named=True)
    # P1: on hand 20 on Jan 1, 8 on Mar 31; COGS 12 × 2 = 24; average inventory (20 + 8) / 2 × 2 = 28.
    assert (p1["cogs"], p1["avg_inventory"]) == (24, 28)
    assert p1["turnover"] == pytest.approx(24 / 28) and p1["days_of_inventory"] == pytest.approx(90 / (24 / 28))
    # P2: 0 then 4 on hand; COGS 6 × 3 = 18; average (0 + 4) / 2 × 3 = 6; turnover 3; 30 days.
    assert p2["turnover"] == pytest.approx(3) and p2["days_of_inventory"] == pytest.approx(30)


def test_stock_status_safety_stock_reorder_point_eoq(small):
    df = reports.stock_status(small, as_of=D("2024-03-31"), days=90, service_level=0.95)
    p1 = df.filter(pl.col("product") == "P1").row(0, named=True)
    daily = [0.0] * 90
    daily[0], daily[1] = 2.0, 10.0  # the two days P1 sold in the window, the rest zero
    d, sd = sum(daily) / 90, stdev(daily)
    z = NormalDist().inv_cdf(0.95)
    assert p1["on_hand"] == 8 and p1["daily_demand"] == pytest.approx(d) and p1["daily_sd"] == pytest.approx(sd)
    assert p1["safety_stock"] == pytest.approx(z * sd * math.sqrt(10))
    assert p1["reorder_point"] == pytest.approx(d * 10 + z * sd * math.sqrt(10))
    assert p1["eoq"] == pytest.approx(math.sqrt(2 * 365 * d * 50 / (0.25 * 2)))
    assert p1["status"] == "ok"  # 8 on hand > 1.33 + 5.3
    p2 = df.filter(pl.col("product") == "P2").row(0, named=True)
    assert p2["on_hand"] == 4 and p2["status"] == "reorder"
    assert df["product"].to_list()[0] == "P2"  # alerts first
    with pytest.raises(ValidationError, match="service_level"):
        reports.stock_status(small, service_level=1.0)


def test_open_orders_count_toward_the_reorder_decision(small):
    load(small, {
        "purchase_orders": {"reference": ["PO1", "PO2", "PO3"], "date": ["2024-03-25", "2024-03-26", "2024-04-02"],
                            "supplier": ["S", "S", "S"], "product": ["P2", "P2", "P2"], "quantity": [30.0, 50.0, 9.0],
                            "unit_cost": [2.5, 3.0, 3.0], "status": ["open", "closed", "open"]},
        "stock_moves": {"reference": ["R3", "R4"], "date": ["2024-03-28", "2024-04-05"], "product": ["P2", "P2"],
                        "quantity": [10.0, 5.0], "purchase_order": ["PO1", "PO1"]},
    })
    # On Mar 31: PO1 had 10 of 30 received (the Apr 5 receipt is later), PO2 is closed, PO3 not placed yet.
    orders = reports.open_purchase_orders(small, as_of=D("2024-03-31"))
    assert orders.select("reference", "outstanding", "value", "days_late").rows() == [("PO1", 20.0, 50.0, 0)]
    p2 = reports.stock_status(small, as_of=D("2024-03-31"), days=90).filter(pl.col("product") == "P2").row(0, named=True)
    assert (p2["on_hand"], p2["on_order"], p2["position"]) == (14, 20, 34)
    assert p2["status"] == "ok"  # 4 on hand alone was 'reorder'; with what is coming it is covered
    # Late: PO1 was expected on Apr 14 (Mar 25 + P2's 20 days); on May 1, 15 of 30 still to come.
    late = reports.open_purchase_orders(small, as_of=D("2024-05-01"))
    assert late.select("reference", "outstanding", "days_late").rows() == [("PO1", 15.0, 17), ("PO3", 9.0, 9)]
    # Cash: the March receipt against PO1 is bought at the order's price, 10 × 2.5.
    assert reports.cash_flow(small, start=D("2024-03-01"), end=D("2024-03-31"))["purchases"].to_list() == [25.0]


def test_expense_anomalies(store):
    months = ["2024-01-03", "2024-02-03", "2024-03-03", "2024-04-03", "2024-05-03"]
    load(store, {"expenses": {"reference": [f"E{i}" for i in range(5)], "date": months, "category": ["Rent"] * 5,
                              "vendor": ["Landlord"] * 5, "amount": [100.0, 110.0, 90.0, 100.0, 400.0]}})
    df = reports.expense_anomalies(store, z=3)
    assert df.height == 1  # April: mean 100, sd 10, score 0; May: 300 over a mean of 100
    row = df.row(0, named=True)
    assert row["month"] == D("2024-05-01")
    assert row["score"] == pytest.approx((400 - 100) / stdev([100, 110, 90, 100]))


def test_kpis_agree_with_the_reports(small):
    k = reports.kpis(small, as_of=D("2024-03-31"), days=30)
    assert (k["revenue"], k["previous_revenue"], k["currency"]) == (20, 45, "USD")
    assert k["revenue_change"] == pytest.approx(20 / 45 - 1) and k["margin"] == pytest.approx(5 / 20)
    assert k["receivables"] == 45 and k["overdue"] == 25
    assert k["stock_alerts"] == reports.stock_status(small, as_of=D("2024-03-31")).filter(
        pl.col("status") != "ok").height


def test_reports_on_an_empty_store_are_empty_not_errors(store):
    assert reports.monthly_sales(store).height == 1  # the current month, with 0
    assert reports.ar_aging(store).is_empty() and reports.latest_forecasts(store).is_empty()
    assert reports.kpis(store)["revenue"] == 0


def test_several_currencies_are_refused(small):
    load(small, {"customers": {"code": ["C9"], "name": ["Euro GmbH"], "currency": ["EUR"]},
                 "invoices": {"invoice": ["E1"], "date": ["2024-01-11"], "customer": ["C9"], "product": ["P1"],
                              "quantity": [1], "unit_price": [5.0]}})
    with pytest.raises(ValidationError, match="several currencies"):
        reports.gross_margin(small)
