"""What the ERP dashboard shows, as param classes that know nothing of Panel.

``Erp`` is the process's shared state (the poller refreshes it every 2 s): the row counts, the
categories and customers to filter by, and a ``version`` that changes when the data does.
``ErpView`` is one tab's filters (period, category, customer) and the reports computed for them;
it recomputes when a filter or the shared version changes, not on every poll.
"""

from __future__ import annotations

import time
from pathlib import Path

import param
import polars as pl

from bi_ide.dashboards.state import PolledState
from bi_ide.erp import forecasts, reports
from bi_ide.erp.imports import import_file, parse_mapping
from bi_ide.errors import WorkbenchError
from bi_ide.store.erp import ImportRejected

ALL = "All"
PERIODS = {"Last 3 months": 3, "Last 6 months": 6, "Last 12 months": 12, "Last 24 months": 24, "Everything": 0}
PROBLEM_SCHEMA = {"row": pl.Int64, "column": pl.String, "reason": pl.String}


class Erp(PolledState):
    """Counts, filter choices and a data version, shared by every tab of the ERP page."""

    store = param.Parameter(default=None, precedence=-1, doc="Where the data comes from: a Store or a HubClient.")

    counts = param.Dict(default={}, doc="Rows per ERP table (invoice_lines, invoices, payments, ...).")

    categories = param.List(default=[], item_type=str, doc="Product categories, sorted.")

    customers = param.Dict(default={}, doc="Customer name -> code, sorted by name (the filter's choices).")

    version = param.String(default="", doc="Changes whenever the ERP data or the latest forecast changes.")

    def read(self) -> dict:
        """The counts and the data version; the filter choices only when the version moved."""
        if self.store is None:
            return {"error": "no store: run `bi-ide init`, then `bi-ide serve`"}
        try:
            counts = self.store.erp_counts()
            run = self.store.erp_forecast_run()
            values = {"counts": counts, "version": f"{sorted(counts.items())}|{run['id'] if run else ''}",
                      "updated_at": time.time(), "error": ""}
            if values["version"] != self.version:
                values.update(self._choices(bool(counts.get("invoice_lines"))))
        except WorkbenchError as e:
            return {"error": str(e)}
        return values

    def _choices(self, any_sales: bool) -> dict:
        if not any_sales:
            return {"categories": [], "customers": {}}
        categories = reports.gross_margin(self.store, by="category")["key"].to_list()
        buyers = reports.top_customers(self.store, n=10_000).sort("name")
        return {"categories": sorted(categories), "customers": dict(zip(buyers["name"], buyers["key"], strict=True))}


class ErpView(param.Parameterized):
    """One tab's filters and the figures for them; ``refresh()`` recomputes them from the store."""

    erp = param.ClassSelector(class_=Erp, doc="The shared state this tab follows.")

    period = param.Selector(default="Last 12 months", objects=list(PERIODS), doc="How far back the sales go.")

    category = param.String(default=ALL, doc="A product category, or All.")

    customer = param.String(default=ALL, doc="A customer's name, or All.")

    kpis = param.Dict(default={}, doc="Headline figures for the filters (see ``ErpView.refresh``).")

    trend = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="monthly_sales rows.")

    forecast = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        The latest forecast of all sales (latest_forecasts rows); the filters do not apply to it.""")

    sales = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        monthly_sales rows of the period for all categories and customers: the forecast's history.""")

    aging = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="ar_aging rows.")

    alerts = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="Products out or to reorder.")

    abc = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="abc_classification rows.")

    error = param.String(default="", doc="Why the last computation failed; empty when it worked.")

    def __init__(self, **params):
        super().__init__(**params)
        self._watcher = self.erp.param.watch(lambda *_: self.refresh(), ["version"])
        self.param.watch(lambda *_: self.refresh(), ["period", "category", "customer"])
        self.refresh()

    def close(self) -> None:
        self.erp.param.unwatch(self._watcher)

    def filters(self) -> dict:
        """The store-level filters: start and end dates, category and customer code (None for All)."""
        store = self.erp.store
        as_of = reports.as_of_date(store)
        months = PERIODS[self.period]
        start = forecasts.shift_months(as_of.replace(day=1), 1 - months) if months else None
        return {"start": start, "end": as_of, "category": None if self.category == ALL else self.category,
                "customer": None if self.customer == ALL else self.erp.customers.get(self.customer, self.customer)}

    def refresh(self) -> ErpView:
        """Recompute every figure for the current filters (one batch of parameter changes)."""
        store = self.erp.store
        if store is None or not self.erp.counts.get("invoice_lines"):
            self.param.update(error=self.erp.error or "no sales yet: load the demo (`bi-ide erp demo`) or "
                              "import invoices on the Import tab", kpis={})
            return self
        try:
            values = self._compute(store, self.filters())
        except WorkbenchError as e:
            self.error = str(e)
            return self
        self.param.update(error="", **values)
        return self

    @staticmethod
    def _compute(store, f: dict) -> dict:
        sales = reports.gross_margin(store, **f)
        headline = reports.kpis(store, as_of=f["end"])
        aging = reports.ar_aging(store, as_of=f["end"])
        if f["customer"]:
            aging = aging.filter(pl.col("customer") == f["customer"])
        alerts = reports.stock_status(store, as_of=f["end"], category=f["category"]).filter(pl.col("status") != "ok")
        ahead = reports.latest_forecasts(store, target="sales")
        return {
            "kpis": {"revenue": sales["revenue"].sum(), "margin": (sales["gross_profit"].sum() / sales["revenue"].sum()
                                                                   if sales["revenue"].sum() else None),
                     "receivables": aging["total"].sum(), "overdue": aging["overdue"].sum(),
                     "dso_days": headline["dso_days"], "stock_alerts": alerts.height, "currency": headline["currency"],
                     "next_month": ahead["mean"][0] if ahead.height else None, "as_of": f["end"]},
            "trend": reports.monthly_sales(store, **f),
            "forecast": ahead,
            "sales": reports.monthly_sales(store, start=f["start"], end=f["end"]),
            "aging": aging,
            "alerts": alerts.select("product", "name", "category", "status", "on_hand", "on_order", "reorder_point",
                                    "eoq"),
            "abc": reports.abc_classification(store, start=f["start"], end=f["end"], category=f["category"]),
        }


def import_upload(erp: Erp, data: bytes, filename: str, table: str, mapping_text: str = "") -> dict:
    """Import an uploaded file; {ok, message, problems (a DataFrame of row, column, reason)}.

    ``mapping_text`` holds OURS=THEIRS pairs separated by commas or new lines.
    """
    empty = pl.DataFrame(schema=PROBLEM_SCHEMA)
    try:
        mapping = parse_mapping([p for p in mapping_text.replace(",", "\n").splitlines() if p.strip()])
        result = import_file(erp.store, data, table, mapping, fmt=Path(filename).suffix.lower().lstrip("."),
                             name=filename)
    except ImportRejected as e:
        return {"ok": False, "message": str(e), "problems": pl.DataFrame(e.problems, schema=PROBLEM_SCHEMA)}
    except WorkbenchError as e:
        return {"ok": False, "message": str(e), "problems": empty}
    erp.refresh()
    return {"ok": True, "problems": empty,
            "message": f"{filename}: {result['rows']} rows read, {result['new']} new, {result['changed']} changed"}
