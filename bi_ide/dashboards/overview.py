"""The landing page: is the hub up, how big is the store, what is in it, where to go next."""

from __future__ import annotations

from pathlib import Path

import panel as pn
import param
import polars as pl

from bi_ide.dashboards.poller import POLLER, dashboard_store
from bi_ide.dashboards.state import Overview, human_bytes, human_duration
from bi_ide.dashboards.template import dashboards
from bi_ide.store import RUN_STATUSES

STATUS_COLOR = {"running": "#15803d", "embedded": "#b45309", "error": "#b91c1c", "starting": "#6b7280"}
RUN_COLOR = {"queued": "#6b7280", "running": "#2563eb", "stopped": "#b45309", "done": "#15803d", "failed": "#b91c1c"}
# The Overview parameters the page shows (the rest configure where the numbers come from).
SHOWN = [p for p in Overview.param if p not in ("name", "store", "hub_started", "recent_limit")]
KPI = {"font_size": "26pt", "title_size": "11pt", "width": 135, "height": 90, "margin": (4, 6)}


def overview_state() -> Overview:
    """This process's Overview, kept fresh by the shared poller.

    Inside the hub (``panel serve --plugins bi_ide.hub.plugin``) it reads the hub's own store and
    reports the hub's uptime; elsewhere it reads ``bi_ide.connect()`` (the file, or BI_IDE_HUB).
    """
    return POLLER.shared("overview", _new_overview)


def _new_overview() -> Overview:
    store, started, error = dashboard_store()
    if error:
        return Overview(hub_status="error", error=error)
    return Overview(store=store, hub_started=started) if started is not None else Overview(store=store)


def _kpi(kind, title: str, key: str, **params):
    # The CSS class names the card for the browser tests and for styling.
    return kind(label=title, css_classes=[f"kpi-{key}"], **KPI, **params)


class OverviewPage(pn.viewable.Viewer):
    """KPI cards, the newest runs and links to the other dashboards, live from an Overview."""

    overview = param.ClassSelector(class_=Overview, doc="The numbers to show, usually overview_state().")

    apps_dir = param.ClassSelector(class_=Path, default=None, allow_None=True, doc="""
        Where the dashboards' app files are (default: apps/ in the workbench folder).""")

    def __init__(self, **params):
        super().__init__(**params)
        o = self.overview
        self.hub = _kpi(pn.indicators.String, "Hub", "hub")
        self.uptime = _kpi(pn.indicators.String, "Uptime", "uptime")
        self.size = _kpi(pn.indicators.String, "Store size", "size")
        self.schema = _kpi(pn.indicators.Number, "Schema version", "schema")
        self.workers = _kpi(pn.indicators.Number, "Workers", "workers", format="{value:,}")
        self.alerts = _kpi(pn.indicators.Number, "Open alerts", "alerts", format="{value:,}",
                           colors=[(0, "#15803d")], default_color="#b91c1c")  # red unless 0
        self.points = _kpi(pn.indicators.Number, "Metric points", "points", format="{value:,}")
        self.runs_total = _kpi(pn.indicators.Number, "Runs", "runs", format="{value:,}")
        self.runs = {
            s: _kpi(pn.indicators.Number, f"Runs {s}", f"runs-{s}", format="{value:,}", default_color=RUN_COLOR[s])
            for s in RUN_STATUSES
        }
        self.message = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.store_path = pn.pane.Markdown("", sizing_mode="stretch_width", margin=(0, 10))
        self.recent = pn.widgets.Tabulator(
            None, disabled=True, show_index=False, selectable=False, layout="fit_data_stretch",
            sizing_mode="stretch_width", css_classes=["recent-runs"],
            titles={"created_at": "created (UTC)", "finished_at": "finished (UTC)"},
        )
        self._show(o.param.values())
        self._watcher = o.param.watch(self._on_change, SHOWN)
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:  # let go of the shared state with the tab
            pn.state.on_session_destroyed(lambda _ctx: self.close())

    def close(self) -> None:
        """Stop following the shared state (the tab is gone)."""
        if self._watcher is not None:
            self.overview.param.unwatch(self._watcher)
            self._watcher = None

    def _on_change(self, *events: param.parameterized.Event) -> None:
        self._show({e.name: e.new for e in events})

    def _show(self, values: dict) -> None:
        """Copy the state's values onto the widgets; only the widgets whose values changed."""
        o = self.overview
        if "hub_status" in values or "error" in values:
            self.hub.value = o.hub_status
            self.hub.default_color = STATUS_COLOR[o.hub_status]
            self.message.object = f"**The store could not be read.** {o.error}" if o.error else ""
            self.message.visible = bool(o.error)
        if "uptime_s" in values:
            self.uptime.value = human_duration(o.uptime_s)
        if "size_bytes" in values:
            self.size.value = human_bytes(o.size_bytes)
        if "path" in values:
            self.store_path.object = f"Store: `{o.path}`" if o.path else ""
        if "schema_version" in values:
            self.schema.value = o.schema_version
        if "runs_total" in values:
            self.runs_total.value = o.runs_total
        if "runs_by_status" in values:
            for status, number in self.runs.items():
                number.value = o.runs_by_status.get(status, 0)
        if "workers" in values:
            self.workers.value = o.workers
        if "open_alerts" in values:
            self.alerts.value = o.open_alerts
        if "metric_points" in values:
            self.points.value = o.metric_points
        if "recent_runs" in values and o.recent_runs is not None:
            self.recent.value = _table(o.recent_runs)

    def links(self) -> pn.pane.HTML:
        from bi_ide.dashboards.template import current_theme

        theme = current_theme()
        cards = "".join(
            f'<a class="bi-card" href="{d.href(theme)}"><b>{d.title}</b><span>{d.about}</span></a>'
            for d in dashboards(self.apps_dir) if d.name != "overview"
        ) or "<p>No other dashboards yet: they appear here when their app is added to apps/.</p>"
        return pn.pane.HTML(f'<div class="bi-cards">{cards}</div>', stylesheets=[LINKS_CSS],
                            sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        section = {"sizing_mode": "stretch_width", "margin": (10, 10)}
        return pn.Column(
            self.message,
            pn.pane.Markdown("### Hub and store", margin=(0, 10)),
            pn.FlexBox(self.hub, self.uptime, self.size, self.schema, self.workers, self.alerts, self.points,
                       **section),
            self.store_path,
            pn.pane.Markdown("### Runs", margin=(0, 10)),
            pn.FlexBox(self.runs_total, *self.runs.values(), **section),
            pn.pane.Markdown("### Recent runs", margin=(0, 10)),
            self.recent,
            pn.pane.Markdown("### Dashboards", margin=(0, 10)),
            self.links(),
            sizing_mode="stretch_width",
        )


def _table(runs: pl.DataFrame):
    """The runs as Tabulator shows them: times as plain UTC text, missing values blank."""
    times = pl.col(pl.Datetime).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S")
    return runs.with_columns(times).with_columns(pl.col(pl.String).fill_null("")).to_pandas()


LINKS_CSS = """
.bi-cards { display: flex; flex-wrap: wrap; gap: 12px; }
.bi-card { display: flex; flex-direction: column; gap: 4px; width: 220px; padding: 12px 14px;
           border: 1px solid rgba(127, 127, 127, 0.35); border-radius: 8px; text-decoration: none;
           color: inherit; }
.bi-card:hover { border-color: #0f766e; }
.bi-card span { font-size: 13px; opacity: 0.75; }
"""
