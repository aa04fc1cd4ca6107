"""The ERP dashboard: KPI cards, the sales trend, the sales forecast with its interval, AR aging,
stock alerts and ABC classes, filtered by period, category and customer; and an Import tab that
shows a file's validation report (rows and reasons) or what it added.

Every tab follows the process's one ``Erp`` state (``erp_state()``); each keeps its own filters
in an ``ErpView``. Names are shown as they are: Arabic text runs right to left in its cell.
"""

from __future__ import annotations

import panel as pn
import param
import polars as pl

from bi_ide.dashboards.erp_state import ALL, Erp, ErpView, import_upload
from bi_ide.dashboards.overview import KPI
from bi_ide.dashboards.poller import POLLER, dashboard_store
from bi_ide.dashboards.template import ControlledPage, served
from bi_ide.erp import plots
from bi_ide.erp.imports import COLUMNS

# Each cell's text takes its direction from its first strong letter: Arabic names read right to left.
BIDI_CSS = ".tabulator-cell, .tabulator-col-title { unicode-bidi: plaintext; text-align: start; }"
TABLE = {"disabled": True, "show_index": False, "layout": "fit_data_stretch", "sizing_mode": "stretch_width",
         "stylesheets": [BIDI_CSS], "max_height": 320}


def erp_state() -> Erp:
    """This process's Erp state, kept fresh by the shared poller (the hub's own store inside the hub)."""
    return POLLER.shared("erp", _new_erp)


def _new_erp() -> Erp:
    store, _, error = dashboard_store()
    return Erp(error=error) if error else Erp(store=store)


def _money(value, currency: str | None) -> str:
    return "—" if value is None else f"{value:,.0f} {currency or ''}".strip()


def _rounded(df: pl.DataFrame):
    return df.with_columns(pl.col(pl.Float64).round(2)).to_pandas()


class ErpPage(ControlledPage):
    """The Overview and Import tabs of the ERP page for one browser tab."""

    erp = param.ClassSelector(class_=Erp, doc="The shared state, usually erp_state().")

    def __init__(self, **params):
        super().__init__(**params)
        self.view = ErpView(erp=self.erp)
        self._build_filters()
        self._build_figures()
        self._build_import()
        self.view.param.watch(lambda *_: self._show(), ["kpis", "trend", "forecast", "sales", "aging", "alerts", "abc",
                                                        "error"])
        self._watcher = self.erp.param.watch(lambda *_: self._choices(), ["categories", "customers"])
        self._choices()
        self._show()
        if served():
            pn.state.on_session_destroyed(lambda _ctx: self.close())

    def close(self) -> None:
        self.erp.param.unwatch(self._watcher)
        self.view.close()

    # -- widgets -----------------------------------------------------------------------------
    def _build_filters(self) -> None:
        self.period = pn.widgets.Select.from_param(self.view.param.period, label="Period", width=170)
        self.category = pn.widgets.Select(label="Category", width=170, css_classes=["erp-category"])
        self.customer = pn.widgets.Select(label="Customer", width=240, css_classes=["erp-customer"])
        self.category.link(self.view, value="category")
        self.customer.link(self.view, value="customer")

    def _build_figures(self) -> None:
        self.cards = {key: pn.indicators.String(label=label, css_classes=[f"kpi-{key}"], **{**KPI, "width": 175,
                                                                                            "font_size": "20pt"})
                      for key, label in (("revenue", "Revenue"), ("margin", "Gross margin"),
                                         ("receivables", "Receivables"), ("overdue", "Overdue"), ("dso", "DSO"),
                                         ("alerts", "Stock alerts"), ("forecast", "Next month, all (forecast)"))}
        self.trend = pn.pane.Bokeh(sizing_mode="stretch_width", css_classes=["erp-trend"])
        self.forecast = pn.pane.Bokeh(sizing_mode="stretch_width", css_classes=["erp-forecast"])
        self.aging_plot = pn.pane.Bokeh(sizing_mode="stretch_width")
        self.aging = pn.widgets.Tabulator(None, css_classes=["erp-aging"], **TABLE)
        self.alerts = pn.widgets.Tabulator(None, css_classes=["erp-alerts"], **TABLE)
        self.abc = pn.widgets.Tabulator(None, css_classes=["erp-abc"], **TABLE)
        self.notice = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width")

    def _build_import(self) -> None:
        self.upload = pn.widgets.FileInput(accept=".csv,.parquet,.xlsx", css_classes=["erp-upload"])
        self.table = pn.widgets.Select(label="Table", options=sorted(COLUMNS), value="invoices", width=170)
        self.mapping = pn.widgets.TextAreaInput(label="Column mapping (ours=theirs, one a line)", height=90,
                                                placeholder="invoice=InvoiceNo\nquantity=Qty", width=320)
        self.run_import = pn.widgets.Button(label="Import", color="primary", disabled=bool(self.refusal),
                                            css_classes=["erp-import"])
        self.run_import.on_click(lambda _e: self.do_import())
        self.result = pn.pane.Alert("", visible=False, sizing_mode="stretch_width", css_classes=["erp-import-result"])
        self.problems = pn.widgets.Tabulator(None, visible=False, css_classes=["erp-problems"], **TABLE)
        self.columns_help = pn.pane.Markdown(self._columns_text(), margin=(0, 10))
        self.table.param.watch(lambda _e: setattr(self.columns_help, "object", self._columns_text()), "value")

    def _columns_text(self) -> str:
        cols = COLUMNS[self.table.value]
        required = ", ".join(f"`{c.name}`" for c in cols if c.required)
        optional = ", ".join(f"`{c.name}`" for c in cols if not c.required)
        return f"**{self.table.value}** needs {required}; may have {optional}."

    # -- following the state -------------------------------------------------------------------
    def _choices(self) -> None:
        for widget, choices in ((self.category, self.erp.categories), (self.customer, list(self.erp.customers))):
            value = widget.value if widget.value in choices else ALL
            widget.param.update(options=[ALL, *choices], value=value)

    def _show(self) -> None:
        v = self.view
        self.notice.param.update(object=v.error, visible=bool(v.error))
        if not v.kpis:
            return
        k, cur = v.kpis, v.kpis["currency"]
        texts = {"revenue": _money(k["revenue"], cur), "margin": "—" if k["margin"] is None else f"{k['margin']:.1%}",
                 "receivables": _money(k["receivables"], cur), "overdue": _money(k["overdue"], cur),
                 "dso": "—" if k["dso_days"] is None else f"{k['dso_days']:.0f} days",
                 "alerts": str(k["stock_alerts"]), "forecast": _money(k["next_month"], cur)}
        for key, text in texts.items():
            self.cards[key].value = text
        self.trend.object = plots.trend(v.trend, cur)
        self.forecast.object = plots.forecast(v.sales, v.forecast, cur)
        self.aging_plot.object = plots.aging(v.aging, cur)
        self.aging.value = _rounded(v.aging)
        self.alerts.value = _rounded(v.alerts)
        self.abc.value = _rounded(v.abc.select("key", "name", "revenue", "share", "class"))

    # -- importing -----------------------------------------------------------------------------
    def do_import(self) -> dict | None:
        """Import the uploaded file; show what it added, or its problems row by row."""
        if self.refusal:
            self.result.param.update(object=self.refusal, alert_type="warning", visible=True)
            return None
        if not self.upload.value:
            self.result.param.update(object="Choose a CSV, Parquet or Excel file first.", alert_type="warning",
                                     visible=True)
            return None
        outcome = import_upload(self.erp, self.upload.value, self.upload.filename, self.table.value,
                                self.mapping.value or "")
        self.result.param.update(object=outcome["message"], alert_type="success" if outcome["ok"] else "danger",
                                 visible=True)
        self.problems.param.update(value=outcome["problems"].to_pandas(), visible=not outcome["problems"].is_empty())
        return outcome

    # -- layout ------------------------------------------------------------------------------
    def __panel__(self) -> pn.viewable.Viewable:
        h = {"margin": (0, 10)}
        overview = pn.Column(
            pn.Row(self.period, self.category, self.customer),
            self.notice,
            pn.FlexBox(*self.cards.values()),
            self.trend,
            self.forecast,
            pn.Row(pn.Column(pn.pane.Markdown("### Receivables by customer", **h), self.aging_plot, self.aging),
                   pn.Column(pn.pane.Markdown("### Stock alerts", **h), self.alerts,
                             pn.pane.Markdown("### ABC classes", **h), self.abc)),
            sizing_mode="stretch_width",
        )
        why = pn.pane.Markdown(f"*Import is off: {self.refusal}*" if self.refusal else "", visible=bool(self.refusal))
        upload = pn.Column(
            pn.pane.Markdown("### Import a file\nA file is imported whole or not at all; importing it again "
                             "changes nothing.", **h),
            pn.Row(self.upload, self.table, self.mapping), self.columns_help, why, self.run_import, self.result,
            self.problems, sizing_mode="stretch_width",
        )
        return pn.Tabs(("Overview", overview), ("Import", upload), dynamic=False, sizing_mode="stretch_width")

