"""Forecasts: demand classes, the scores, the backtest against seasonal naive on the demo business, reorders."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from bi_ide.erp import forecasts, reports
from bi_ide.erp.demo import demo_tables, load_demo
from bi_ide.errors import ConflictError, ValidationError

END = date(2026, 10, 31)


@pytest.fixture(scope="module")
def demo_store():
    from bi_ide.store import Store

    with Store(memory=True) as store:
        load_demo(store, months=36, seed=7, end=END)
        yield store


@pytest.fixture(scope="module")
def forecast_run(demo_store):
    return forecasts.run_forecast(demo_store, horizon=6, level=80)


def series(values: dict[str, list[float]]) -> pl.DataFrame:
    months = pl.date_range(date(2024, 1, 1), date(2024, 12, 1), "1mo", eager=True)
    return pl.concat([pl.DataFrame({"unique_id": k, "ds": months[:len(v)], "y": [float(x) for x in v]})
                      for k, v in values.items()])


def test_classify_by_adi_and_cv2():
    df = forecasts.classify(series({
        "smooth": [10, 11, 9, 10, 10, 11], "erratic": [1, 20, 2, 30, 1, 25],
        "intermittent": [0, 5, 0, 0, 5, 0], "lumpy": [0, 1, 0, 0, 30, 0],
    }))
    got = dict(zip(df["unique_id"], df["pattern"], strict=True))
    assert got == {"smooth": "smooth", "erratic": "erratic", "intermittent": "intermittent", "lumpy": "lumpy"}
    adi = dict(zip(df["unique_id"], df["adi"], strict=True))
    assert adi["intermittent"] == 3.0 and adi["smooth"] == 1.0  # 6 months / 2 with demand


def test_scores_by_hand():
    train = series({"a": [1, 2, 3, 4]})  # lag-1 differences (short history): mean |Δ| = 1
    test = pl.DataFrame({"unique_id": ["a", "a"], "ds": [date(2024, 5, 1), date(2024, 6, 1)], "y": [5.0, 6.0]})
    forecast = pl.DataFrame({"series": ["a", "a"], "month": [date(2024, 5, 1), date(2024, 6, 1)], "mean": [4.0, 6.0]})
    got = forecasts.scores(train, test, forecast)
    assert got["mase"] == pytest.approx(0.5)  # errors 1 and 0 over a scale of 1
    assert got["smape"] == pytest.approx((200 * 1 / 9 + 0) / 2)


def test_demo_is_seeded_and_believable():
    a, b = demo_tables(months=12, seed=3, end=END), demo_tables(months=12, seed=3, end=END)
    assert all(a[t].equals(b[t]) for t in a)
    assert not a["invoices"].equals(demo_tables(months=12, seed=4, end=END)["invoices"])
    names = " ".join(a["products"]["name"].to_list() + a["customers"]["name"].to_list())
    assert "تمر" in names and "مؤسسة" in names  # Arabic product and customer names
    assert a["invoices"]["date"].max() <= END and a["payments"]["date"].max() <= END
    assert (a["invoices"]["discount"] > 0).any()  # promotions


def test_demo_refuses_a_store_with_data(demo_store):
    with pytest.raises(ConflictError, match="erp clear --yes"):
        load_demo(demo_store, months=12)
    assert "skipped" in load_demo(demo_store, months=12, if_empty=True)


def test_demo_has_stockouts_late_payers_and_intermittent_products(demo_store):
    patterns = forecasts.classify(forecasts.monthly_history(demo_store))["pattern"].to_list()
    assert {"smooth", "intermittent"} <= set(patterns)
    late = demo_store.sql("SELECT count(*) AS n FROM erp_payments p JOIN erp_invoices i ON i.number = p.invoice "
                          "WHERE p.date > i.due_date + 20").item()
    assert late > 100
    stockouts = demo_store.sql(
        "SELECT count(*) AS n FROM (SELECT product, date, sum(quantity) OVER (PARTITION BY product ORDER BY date) AS "
        "q FROM (SELECT product, date, quantity FROM erp_stock_moves UNION ALL "
        "SELECT product, date, -quantity FROM erp_invoice_lines)) WHERE q <= 0").item()
    assert stockouts > 0


def test_backtest_beats_seasonal_naive_on_the_demo(forecast_run):
    for target in ("quantity", "sales"):
        check = forecast_run["backtest"][target]
        assert check["model"]["mase"] < check["seasonal_naive"]["mase"], (target, check)
    assert forecast_run["backtest"]["quantity"]["series"] == 25


def test_forecasts_are_stored_with_model_and_intervals(demo_store, forecast_run):
    df = reports.latest_forecasts(demo_store)
    assert df["run_id"].unique().to_list() == [forecast_run["id"]]
    assert df["month"].min() == date(2026, 11, 1) and df["month"].n_unique() == 6
    models = dict(zip(df["pattern"], df["model"], strict=False))
    assert models["smooth"] == "MSTL+AutoETS" and models["intermittent"] == "CrostonOptimized"
    assert (df["lo"] <= df["mean"]).all() and (df["mean"] <= df["hi"]).all() and (df["lo"] >= 0).all()
    sales = reports.latest_forecasts(demo_store, target="sales")
    assert sales["series"].unique().to_list() == ["*"] and sales.height == 6


def test_reorder_recommendations_cover_lead_time_demand_less_what_is_on_order():
    from bi_ide.erp.imports import import_frame
    from bi_ide.store import Store

    with Store(memory=True) as store:  # its own store: an order line gets closed below
        load_demo(store, months=36, seed=7, end=END)
        forecasts.run_forecast(store, horizon=6, level=80)
        # The demo's buyer already ordered some products: the order on the way covers the lowest of them.
        status = reports.stock_status(store, as_of=END)
        low = status.filter(pl.col("on_order") > 0).sort("on_hand").row(0, named=True)
        assert low["position"] == low["on_hand"] + low["on_order"] and low["status"] == "ok"
        assert low["product"] not in forecasts.reorder_recommendations(store, as_of=END)["product"].to_list()
        # The supplier cancels: the line is closed, nothing is on order any more, and the product needs an order.
        line = reports.open_purchase_orders(store, as_of=END).filter(pl.col("product") == low["product"])
        assert line.height == 1 and line["outstanding"].item() == low["on_order"]
        closed = store.sql("SELECT * EXCLUDE (status) FROM erp_purchase_orders WHERE reference = ?",
                           [line["reference"].item()]).with_columns(pl.lit("closed").alias("status"))
        assert import_frame(store, closed, "purchase_orders")["changed"] == 1
        df = forecasts.reorder_recommendations(store, as_of=END)
    row = df.filter(pl.col("product") == low["product"]).row(0, named=True)
    assert row["on_order"] == 0 and row["position"] == row["on_hand"] == low["on_hand"]
    assert row["order"] >= row["lead_demand"] + row["safety_stock"] - row["position"]
    assert row["order"] >= row["eoq"] and row["order"] == int(row["order"])
    assert forecasts._over_lead_time([30.0, 60.0], 45) == pytest.approx(30 + 60 * (45 / 30.4 - 1))


def test_forecast_arguments_are_checked(demo_store):
    with pytest.raises(ValidationError, match="horizon"):
        forecasts.run_forecast(demo_store, horizon=0)
    with pytest.raises(ValidationError, match="regular 'prophet'"):
        forecasts.run_forecast(demo_store, regular="prophet")


def test_too_little_history_says_what_to_do(store):
    with pytest.raises(ValidationError, match="bi-ide erp demo"):
        forecasts.run_forecast(store)


def test_arima_is_the_slower_choice_for_regular_series():
    history = series({"a": [10, 12, 11, 13, 12, 14, 13, 15, 14, 16, 15, 17]})
    out = forecasts._fit_forecast(history, forecasts.classify(history), horizon=2, level=80, regular="arima")
    assert out["model"].to_list() == ["AutoARIMA"] * 2 and (out["lo"] <= out["hi"]).all()
