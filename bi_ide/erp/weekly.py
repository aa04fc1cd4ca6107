"""The weekly predictive report: one self-contained HTML page of KPIs, trends, forecasts and actions.

``write_report`` gathers the reports at an as-of date, draws them with Bokeh (its JavaScript
inlined, so the page opens offline), writes ``data/reports/erp-weekly-<as of>.html`` atomically
and records it in the store. ``notebooks/04-erp-weekly-report.ipynb`` drives it (papermill) and
``pipelines/weekly-erp.yaml`` schedules it; the council reads the same figures as evidence.
"""

from __future__ import annotations

import hashlib
import html
import os
from datetime import date
from pathlib import Path

import polars as pl

from bi_ide import settings
from bi_ide.erp import forecasts, plots, reports

KIND = "weekly"
TABLE_ROWS = 12
STYLE = ("body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px} table{border-collapse:collapse} "
         "td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:start} h2{margin-top:28px}")


def gather(store, *, as_of: date) -> dict:
    """Every figure the weekly report shows, as DataFrames and dicts (what the council reads too)."""
    start = forecasts.shift_months(forecasts.last_full_month(as_of), -23)
    return {
        "kpis": reports.kpis(store, as_of=as_of),
        "trend": reports.monthly_sales(store, start=start, end=as_of),
        "sales_forecast": reports.latest_forecasts(store, target="sales"),
        "aging": reports.ar_aging(store, as_of=as_of),
        "chase": reports.receivables_to_chase(store, as_of=as_of, n=TABLE_ROWS),
        "stock": reports.stock_status(store, as_of=as_of).filter(pl.col("status") != "ok"),
        "reorder": forecasts.reorder_recommendations(store, as_of=as_of),
        "late_orders": reports.open_purchase_orders(store, as_of=as_of).filter(pl.col("days_late") > 0),
        "anomalies": reports.expense_anomalies(store).filter(pl.col("month") > start),
        "top_products": reports.top_products(store, n=TABLE_ROWS, start=start, end=as_of),
    }


def summary(figures: dict) -> dict:
    """The report's headline as plain numbers: what the store records and the notebook prints."""
    k = figures["kpis"]
    fc = figures["sales_forecast"]
    return {
        "as_of": k["as_of"].isoformat(), "currency": k["currency"],
        "revenue_30d": round(k["revenue"], 2), "revenue_change": _round(k["revenue_change"], 4),
        "margin": _round(k["margin"], 4), "receivables": round(k["receivables"], 2),
        "overdue": round(k["overdue"], 2), "dso_days": _round(k["dso_days"], 1),
        "stock_alerts": k["stock_alerts"], "orders_to_place": figures["reorder"].height,
        "late_supplier_orders": figures["late_orders"].height,
        "invoices_to_chase": figures["chase"].height,
        "sales_forecast_next_month": round(fc["mean"][0], 2) if fc.height else None,
        "expense_anomalies": figures["anomalies"].height,
    }


def _round(value, digits):
    return None if value is None else round(value, digits)


def render(figures: dict) -> str:
    """The report page as one HTML document: tables and cards as HTML, the plots by Bokeh (inline JS)."""
    from bokeh.embed import components
    from bokeh.resources import INLINE

    k = figures["kpis"]
    drawn = (plots.trend(figures["trend"], k["currency"]),
             plots.forecast(figures["trend"], figures["sales_forecast"], k["currency"]),
             plots.aging(figures["aging"], k["currency"]))
    script, divs = components(drawn)
    sections = [
        _section("Receivables to chase", figures["chase"], ["invoice", "name", "due_date", "days_overdue", "balance"]),
        _section("Stock alerts", figures["stock"], ["product", "name", "status", "on_hand", "on_order",
                                                    "reorder_point", "safety_stock"]),
        _section("Recommended orders", figures["reorder"], ["product", "name", "on_hand", "on_order", "lead_demand",
                                                            "order"]),
        _section("Late supplier orders", figures["late_orders"], ["reference", "supplier", "name", "expected_date",
                                                                  "days_late", "outstanding"]),
        _section("Expense anomalies", figures["anomalies"], ["category", "month", "amount", "mean", "score"]),
        _section("Top products (24 months)", figures["top_products"], ["key", "name", "revenue", "share"]),
    ]
    title = f"Weekly business report — {k['as_of']:%d %b %Y}"
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"{INLINE.render()}{script}<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{_kpi_cards(k)}{''.join(divs)}{''.join(sections)}</body></html>\n")


def write_report(store, *, as_of: date | None = None, horizon: int = 6, forecast: bool = True,
                 folder: Path | None = None) -> dict:
    """Forecast (unless ``forecast`` is False), render and save the report; returns its record.

    The file is written to a temporary name and renamed, so a reader never sees half a page;
    a second report for the same as-of date replaces the first (file and record).
    """
    as_of = reports.as_of_date(store, as_of)
    if forecast:
        forecasts.run_forecast(store, as_of=as_of, horizon=horizon)
    figures = gather(store, as_of=as_of)
    page = render(figures).encode()
    folder = folder or settings.data_dir() / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"erp-{KIND}-{as_of.isoformat()}.html"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(page)
    os.replace(tmp, path)
    return store.erp_record_report(KIND, as_of=as_of, path=str(path), sha256=hashlib.sha256(page).hexdigest(),
                                   size_bytes=len(page), summary=summary(figures))


# -- the page's parts ----------------------------------------------------------------------------------
def _money(value, currency: str | None = "") -> str:
    return "—" if value is None else f"{value:,.0f} {currency or ''}".strip()


def _kpi_cards(k: dict) -> str:
    change = "—" if k["revenue_change"] is None else f"{k['revenue_change']:+.1%}"
    cards = [("Revenue, last 30 days", _money(k["revenue"], k["currency"]), f"{change} on the 30 days before"),
             ("Gross margin", "—" if k["margin"] is None else f"{k['margin']:.1%}", _money(k["gross_profit"], k["currency"])),
             ("Receivables", _money(k["receivables"], k["currency"]), f"{_money(k['overdue'], k['currency'])} overdue"),
             ("DSO", "—" if k["dso_days"] is None else f"{k['dso_days']:.0f} days", "days sales outstanding"),
             ("Stock alerts", str(k["stock_alerts"]), "products out or below reorder point"),
             ("Net cash, 30 days", _money(k["net_cash"], k["currency"]), "receipts − expenses − purchases")]
    cells = "".join(f"<div style='border:1px solid #ccc;border-radius:6px;padding:8px 12px;min-width:170px'>"
                    f"<div style='color:#666;font-size:12px'>{html.escape(t)}</div>"
                    f"<div style='font-size:22px;font-weight:600'>{html.escape(v)}</div>"
                    f"<div style='color:#666;font-size:12px'>{html.escape(n)}</div></div>" for t, v, n in cards)
    return f"<div style='display:flex;gap:10px;flex-wrap:wrap'>{cells}</div>"


def _section(title: str, df: pl.DataFrame, columns: list[str]) -> str:
    if df.is_empty():
        return f"<h2>{html.escape(title)}</h2><p>Nothing this week.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td dir='auto'>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in df.head(TABLE_ROWS).select(columns).iter_rows()
    )
    more = f"<p>… and {df.height - TABLE_ROWS} more.</p>" if df.height > TABLE_ROWS else ""
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>{more}"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return "" if value is None else str(value)


def backtest_table(run: dict | None) -> pl.DataFrame:
    """A forecast run's backtest as rows: target, series, MASE and sMAPE of the models and of seasonal naive."""
    rows = [{"target": target, "series": check["series"],
             "mase": round(check["model"]["mase"], 3), "naive_mase": round(check["seasonal_naive"]["mase"], 3),
             "smape": round(check["model"]["smape"], 1), "naive_smape": round(check["seasonal_naive"]["smape"], 1)}
            for target, check in ((run or {}).get("backtest") or {}).items()]
    return pl.DataFrame(rows, schema={"target": pl.String, "series": pl.Int64, "mase": pl.Float64,
                                      "naive_mase": pl.Float64, "smape": pl.Float64, "naive_smape": pl.Float64})
