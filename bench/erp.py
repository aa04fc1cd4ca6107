"""ERP at size: Parquet import rate, the report suite on millions of invoice lines, forecasting many products.

Prints, each against a baseline measured in the same run:
  1. importing N invoice lines (10,000,000) from one Parquet file through ``import_file`` (read,
     cast, every row rule, reference checks, one transaction) into a new store file, in rows/s
     (issue goal: >= 500,000 rows/s), against reading the same file with polars alone;
  2. the report suite on those lines: monthly_sales + gross_margin (goal: <= 1 s together) and the
     other reports, against one plain scan (sum of amount) of the lines table;
  3. forecasting P products x M months (1,000 x 36) as ``run_forecast`` does (backtest on the last
     6 months, then the forecast), its time against seasonal naive alone, and the backtest's MASE
     and sMAPE against seasonal naive's.
Ends with one JSON line of the figures.

    python bench/erp.py              # 10M lines, 1,000 products x 36 months
    python bench/erp.py --quick      # 20,000 lines, 40 products: a smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from bi_ide.erp import forecasts, reports
from bi_ide.erp.imports import import_file, import_frame
from bi_ide.store import Store

IMPORT_GOAL = 500_000  # rows/s
REPORT_GOAL_S = 1.0  # monthly_sales + gross_margin
FIRST_DAY = date(2023, 1, 1)


def invoice_lines(n: int, products: int, customers: int, seed: int = 0) -> pl.DataFrame:
    """``n`` lines of about n / 3 invoices over three years, as an ERP export would have them."""
    rng = np.random.default_rng(seed)
    invoice = np.sort(rng.integers(0, max(1, n // 3), n))
    day = (invoice * 1095 // max(1, n // 3)).astype("int64")  # invoices numbered in date order
    per_invoice_customer = rng.integers(0, customers, max(1, n // 3))
    return pl.DataFrame({
        "invoice": pl.Series(invoice).cast(pl.String),
        "date": pl.date_range(FIRST_DAY, date(2025, 12, 31), "1d", eager=True).gather(day),
        "customer": pl.Series(per_invoice_customer[invoice]).cast(pl.String),
        "product": pl.Series(rng.integers(0, products, n)).cast(pl.String),
        "quantity": rng.integers(1, 20, n).astype("float64"),
        "unit_price": rng.uniform(2, 200, n).round(2),
        "discount": np.where(rng.random(n) < 0.1, 0.1, 0.0),
    })


def master_data(store, products: int, customers: int) -> None:
    rng = np.random.default_rng(1)
    import_frame(store, pl.DataFrame({"code": [str(i) for i in range(customers)],
                                      "name": [f"Customer {i}" for i in range(customers)]}), "customers")
    price = rng.uniform(2, 200, products).round(2)
    import_frame(store, pl.DataFrame({
        "sku": [str(i) for i in range(products)], "name": [f"Product {i}" for i in range(products)],
        "category": [f"Category {i % 12}" for i in range(products)], "unit_price": price,
        "unit_cost": (price * 0.6).round(2)}), "products")


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_import_and_reports(folder: Path, lines: int, products: int) -> dict:
    path = folder / "lines.parquet"
    invoice_lines(lines, products, customers=2_000).write_parquet(path)
    read_s = best_of(lambda: pl.read_parquet(path), repeat=1)
    with Store(folder / "erp.duckdb") as store:
        master_data(store, products, 2_000)
        start = time.perf_counter()
        result = import_file(store, path, "invoices")
        import_s = time.perf_counter() - start
        assert result["rows"] == lines, result
        print(f"import: {lines:,} lines in {import_s:.2f} s = {lines / import_s:,.0f} rows/s "
              f"(goal >= {IMPORT_GOAL:,}); polars alone reads the file in {read_s:.2f} s ({import_s / read_s:.1f}x)")
        scan_s = best_of(lambda: store.sql("SELECT sum(amount) AS s FROM erp_invoice_lines"))
        suite = {name: best_of(lambda name=name: reports.REPORTS[name](store)) for name in (
            "monthly_sales", "gross_margin", "top_products", "abc_classification", "ar_aging", "dso", "cash_flow",
            "stock_status", "inventory_turnover", "kpis")}
    trend_margin = suite["monthly_sales"] + suite["gross_margin"]
    print(f"reports on {lines:,} lines: monthly_sales + gross_margin {trend_margin:.3f} s (goal <= {REPORT_GOAL_S} s), "
          f"{trend_margin / scan_s:.1f}x one plain scan ({scan_s * 1000:.0f} ms)")
    for name, seconds in suite.items():
        print(f"  {name:<20} {seconds * 1000:8.0f} ms  ({seconds / scan_s:5.1f}x the scan)")
    return {"lines": lines, "import_s": round(import_s, 3), "import_rows_per_s": round(lines / import_s),
            "read_parquet_s": round(read_s, 3), "import_vs_read_ratio": round(import_s / read_s, 2),
            "scan_s": round(scan_s, 4), "trend_plus_margin_s": round(trend_margin, 4),
            "trend_plus_margin_vs_scan_ratio": round(trend_margin / scan_s, 2),
            **{f"{name}_s": round(s, 4) for name, s in suite.items()}}


def monthly_series(products: int, months: int, seed: int = 0) -> pl.DataFrame:
    """Demand per product and month: most smooth with trend and season, a quarter intermittent."""
    rng = np.random.default_rng(seed)
    t = np.arange(months)
    rows = []
    for _ in range(products):
        if rng.random() < 0.25:
            y = rng.poisson(0.4, months) * rng.integers(1, 8, months)
        else:
            level, amplitude, phase = rng.lognormal(3.5, 0.8), rng.uniform(0, 0.5), rng.integers(0, 12)
            mean = level * (1 + rng.uniform(-0.01, 0.03) * t) * (1 + amplitude * np.cos(2 * np.pi * (t - phase) / 12))
            y = rng.poisson(np.maximum(mean, 0.1))
        rows.append(y.astype("float64"))
    months_index = pl.date_range(date(2023, 1, 1), date(2023 + (months - 1) // 12, (months - 1) % 12 + 1, 1), "1mo",
                                 eager=True)
    return pl.DataFrame({"unique_id": np.repeat([f"P{i:04d}" for i in range(products)], months),
                         "ds": pl.concat([months_index] * products), "y": np.concatenate(rows)})


def bench_forecast(products: int, months: int, jobs: int) -> dict:
    history = monthly_series(products, months)
    forecasts._seasonal_naive(history.head(months * 2), 6)  # compile numba once, outside the timings
    naive_s = best_of(lambda: forecasts._seasonal_naive(history, 6), repeat=1)
    start = time.perf_counter()
    check = forecasts.backtest(history, horizon=6, n_jobs=jobs)
    forecasts._fit_forecast(history, forecasts.classify(history), horizon=6, level=80, regular="ets", n_jobs=jobs)
    forecast_s = time.perf_counter() - start
    model, naive = check["model"], check["seasonal_naive"]
    print(f"forecast: {products:,} products x {months} months (backtest + forecast, {jobs} job(s)) in "
          f"{forecast_s:.1f} s, {forecast_s / naive_s:.0f}x seasonal naive alone ({naive_s:.2f} s)")
    print(f"  backtest MASE {model['mase']:.3f} vs seasonal naive {naive['mase']:.3f}; "
          f"sMAPE {model['smape']:.1f} % vs {naive['smape']:.1f} %")
    return {"forecast_products": products, "forecast_months": months, "forecast_s": round(forecast_s, 2),
            "seasonal_naive_s": round(naive_s, 3), "forecast_vs_naive_ratio": round(forecast_s / naive_s, 1),
            "mase": round(model["mase"], 4), "naive_mase": round(naive["mase"], 4),
            "smape_pct": round(model["smape"], 2), "naive_smape_pct": round(naive["smape"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000_000, help="invoice lines to import and report on")
    parser.add_argument("--products", type=int, default=1_000, help="products (import and forecast)")
    parser.add_argument("--months", type=int, default=36, help="months of history per forecast series")
    parser.add_argument("--jobs", type=int, default=1, help="statsforecast processes")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.products, args.months = 20_000, 40, 30
    with tempfile.TemporaryDirectory() as folder:
        figures = bench_import_and_reports(Path(folder), args.lines, args.products)
    figures.update(bench_forecast(args.products, args.months, args.jobs))
    print(json.dumps({"quick": args.quick, **figures}))


if __name__ == "__main__":
    main()
