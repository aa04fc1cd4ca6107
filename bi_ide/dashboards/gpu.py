"""The GPU dashboard: a card per GPU of every worker (utilisation, memory, temperature, power,
clocks, throttle reasons, the runs on it) and their time series over a window the tab picks.

Every tab follows the process's one ``Gpus`` state (``gpu_state()``); a refresh sends new columns
to the charts already in the browser through a HoloViews Pipe.
"""

from __future__ import annotations

import html

import holoviews as hv
import panel as pn
import param
import polars as pl
from holoviews.streams import Pipe

from bi_ide.dashboards.gpu_state import DEFAULT_WINDOW, WINDOWS, Gpus, within
from bi_ide.dashboards.poller import POLLER, dashboard_store
from bi_ide.fleet.thermal import HOT_C

hv.renderer("bokeh")

CHARTS = {"utilization": "utilisation (%)", "temperature_c": "temperature (°C)", "memory_gib": "memory (GiB)",
          "power_w": "power (W)"}
GIB = 1 << 30


def gpu_state() -> Gpus:
    """This process's Gpus state, kept fresh by the shared poller (the hub's own store inside the hub)."""
    return POLLER.shared("gpu", _new_gpus)


def _new_gpus() -> Gpus:
    store, _, error = dashboard_store()
    return Gpus(error=error) if error else Gpus(store=store)


def chart(key: str, data: pl.DataFrame | None) -> hv.NdOverlay:
    """One line per GPU of ``key`` over time."""
    curves = {}
    if data is not None and not data.is_empty():
        frame = data.with_columns((pl.col("memory_used_bytes") / GIB).alias("memory_gib")).to_pandas()
        for label, part in frame.groupby("gpu", sort=True):
            curves[label] = hv.Curve(part, "time", (key, CHARTS[key]))
    if not curves:
        curves["no GPU samples"] = hv.Curve([], "time", (key, CHARTS[key]))
    return hv.NdOverlay(curves, kdims="gpu").opts(
        hv.opts.Curve(responsive=True, height=210, tools=["hover"], line_width=2),
        hv.opts.NdOverlay(legend_position="right", title=CHARTS[key]))


def cards_html(latest: pl.DataFrame | None) -> str:
    """Every GPU as a small card; a hot one has a red border."""
    if latest is None or latest.is_empty():
        return '<div class="gpu-empty">No GPU is reporting. Start `bi-ide agent run` on a machine with an NVIDIA GPU.</div>'
    cards = []
    for g in latest.iter_rows(named=True):
        hot = g["temperature_c"] is not None and g["temperature_c"] >= HOT_C
        rows = [
            ("utilisation", _num(g["utilization"], "%")),
            ("memory", f"{_num(_gib(g['memory_used_bytes']), '')} / {_num(_gib(g['memory_total_bytes']), 'GiB')}"),
            ("temperature", _num(g["temperature_c"], "°C")),
            ("power", f"{_num(g['power_w'], '')} / {_num(g['power_limit_w'], 'W')}"),
            ("clocks", f"SM {_num(g['sm_clock_mhz'], '')} · mem {_num(g['mem_clock_mhz'], 'MHz')}"),
            ("throttle", g["throttle_reasons"] or "none"),
            ("runs", g["runs"] or "—"),
        ]
        body = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        title = html.escape(f"{g['worker_id']} · GPU {g['gpu_index']}")
        name = html.escape(g["name"] or "")
        cards.append(f'<div class="gpu-card{" gpu-hot" if hot else ""}"><b>{title}</b><span>{name}</span>'
                     f"<table>{body}</table></div>")
    return f'<div class="gpu-cards">{"".join(cards)}</div>'


def _gib(n):
    return None if n is None else n / GIB


def _num(value, unit: str) -> str:
    if value is None:
        return "—"
    text = f"{value:.1f}" if isinstance(value, float) and value % 1 else f"{value:.0f}"
    return f"{text} {unit}".strip()


class GpuPage(pn.viewable.Viewer):
    """The cards and the charts of every GPU, with a window picker."""

    gpus = param.ClassSelector(class_=Gpus, doc="The shared state, usually gpu_state().")

    window = param.Selector(default="15 min", objects=list(WINDOWS), doc="How far back the charts go.")

    def __init__(self, **params):
        super().__init__(**params)
        self.picker = pn.widgets.RadioButtonGroup.from_param(self.param.window, color="primary",
                                                             css_classes=["gpu-window"])
        self.cards = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[CARDS_CSS], css_classes=["gpu-cards-pane"])
        self.status = pn.pane.Markdown("", margin=(0, 10), css_classes=["gpu-status"])
        self.pipes = {key: Pipe(data=None) for key in CHARTS}
        self.plots = {key: pn.pane.HoloViews(hv.DynamicMap(lambda data, k=key: chart(k, data), streams=[self.pipes[key]]),
                                             sizing_mode="stretch_width", css_classes=[f"gpu-chart-{key}"])
                      for key in CHARTS}
        self.gpus.watch_window(self, WINDOWS[self.window])
        self._watchers = [self.gpus.param.watch(lambda *_: self._show(), ["latest", "series", "error"])]
        self.param.watch(self._on_window, ["window"])
        self._show()
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda _ctx: self.close())

    def close(self) -> None:
        for w in self._watchers:
            self.gpus.param.unwatch(w)
        self._watchers = []
        self.gpus.unwatch(self)

    def _on_window(self, *_events) -> None:
        self.gpus.watch_window(self, WINDOWS[self.window])
        self._show()

    def _show(self) -> None:
        g = self.gpus
        text = cards_html(g.latest)
        if text != self.cards.object:
            self.cards.object = text
        data = within(g.series, WINDOWS.get(self.window, DEFAULT_WINDOW))
        for pipe in self.pipes.values():
            pipe.send(data)
        count = 0 if g.latest is None else g.latest.height
        self.status.object = f"**The store could not be read.** {g.error}" if g.error else \
            f"{count} GPU(s) reporting · refreshed every 2 s"

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(pn.pane.Markdown("### GPUs", margin=(0, 10)), self.picker),
            self.status,
            self.cards,
            *self.plots.values(),
            sizing_mode="stretch_width",
        )


CARDS_CSS = """
.gpu-cards { display: flex; flex-wrap: wrap; gap: 12px; }
.gpu-card { display: flex; flex-direction: column; gap: 2px; min-width: 250px; padding: 10px 14px;
            border: 2px solid rgba(127, 127, 127, 0.35); border-radius: 8px; }
.gpu-card.gpu-hot { border-color: #dc2626; }
.gpu-card span { font-size: 13px; opacity: 0.75; }
.gpu-card th { text-align: left; font-weight: 500; opacity: 0.75; padding-right: 12px; }
.gpu-card td, .gpu-card th { font-size: 13px; }
.gpu-empty { opacity: 0.75; padding: 8px; }
"""
