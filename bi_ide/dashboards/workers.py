"""The workers dashboard: a card per worker (green / yellow / red, resources, what it runs), the
fleet's totals, unresolved alerts with acknowledge, the command queue, and the SLO budgets.

Every tab follows the process's one ``Fleet`` state (``workers_state()``). Writes are allowed per
``control_refusal``, as on the training page.
"""

from __future__ import annotations

import html
import json

import panel as pn
import param
import polars as pl

from bi_ide.dashboards.overview import _table
from bi_ide.dashboards.poller import POLLER, dashboard_store
from bi_ide.dashboards.state import human_bytes, human_duration
from bi_ide.dashboards.template import ControlledPage, served
from bi_ide.dashboards.workers_state import Fleet
from bi_ide.errors import WorkbenchError
from bi_ide.fleet.commands import PAYLOADS

COLOURS = {"green": "#16a34a", "yellow": "#ca8a04", "red": "#dc2626"}
TITLES = {"worker_id": "worker", "opened_at": "opened (UTC)", "created_at": "queued (UTC)",
          "finished_at": "finished (UTC)", "budget_left": "budget left", "good": "good events", "total": "events"}


def workers_state() -> Fleet:
    """This process's Fleet state, kept fresh by the shared poller (the hub's own store inside the hub)."""
    return POLLER.shared("workers", _new_fleet)


def _new_fleet() -> Fleet:
    store, _, error = dashboard_store()
    return Fleet(error=error) if error else Fleet(store=store)


def cards_html(workers: pl.DataFrame | None) -> str:
    """A card per worker, its colour on the left edge."""
    if workers is None or workers.is_empty():
        return '<div class="worker-empty">No worker has registered. Start `bi-ide agent run` on a machine.</div>'
    cards = []
    for w in workers.iter_rows(named=True):
        rows = [
            ("status", f"{w['status']} · heard {human_duration(w['age_s'])} ago" if w["age_s"] is not None else w["status"]),
            ("system", f"{w['os'] or '?'} · {w['cpu_count'] or '?'} cores · {human_bytes(w['ram_bytes'] or 0)} RAM"),
            ("CPU / RAM / disk", " / ".join(_pct(w[k]) for k in ("cpu_percent", "ram_percent", "disk_percent"))),
            ("load", "—" if w["load_1m"] is None else f"{w['load_1m']:.2f}"),
            ("GPUs", str(w["gpu_count"] or 0)),
            ("running", w["runs"] or "nothing"),
            ("alerts", str(w["alerts"])),
        ]
        body = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        colour = COLOURS.get(w["status"], "#888")
        cards.append(f'<div class="worker-card worker-{w["status"]}" style="border-left-color: {colour}">'
                     f'<b>{html.escape(w["id"])}</b><span>{html.escape(w["hostname"])}</span><table>{body}</table></div>')
    return f'<div class="worker-cards">{"".join(cards)}</div>'


def _pct(value) -> str:
    return "—" if value is None else f"{value:.0f} %"


def totals_text(r: dict) -> str:
    if not r:
        return ""
    s = r["by_status"]
    util = "—" if r["gpu_utilization_mean"] is None else f"{r['gpu_utilization_mean']:.0f} %"
    return (f"**{r['workers']} workers** ({s['green']} green, {s['yellow']} yellow, {s['red']} red) · "
            f"{r['cpu_cores']} cores · RAM {human_bytes(r['ram_used_bytes'])} of {human_bytes(r['ram_bytes'])} · "
            f"{r['gpus']} GPUs, memory {human_bytes(r['gpu_memory_used_bytes'])} of "
            f"{human_bytes(r['gpu_memory_bytes'])}, mean utilisation {util}")


class WorkersPage(ControlledPage):
    """The worker cards, alerts with acknowledge, the command queue and the SLO budgets."""

    fleet = param.ClassSelector(class_=Fleet, doc="The shared state, usually workers_state().")

    def __init__(self, **params):
        super().__init__(**params)
        table = {"disabled": True, "show_index": False, "layout": "fit_data_stretch", "sizing_mode": "stretch_width",
                 "titles": TITLES}
        self.totals = pn.pane.Markdown("", margin=(0, 10), css_classes=["fleet-totals"])
        self.cards = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[CARDS_CSS])
        self.alerts = pn.widgets.Tabulator(None, selectable=1, max_height=260, css_classes=["fleet-alerts"], **table)
        self.ack = pn.widgets.Button(label="Acknowledge", color="warning", css_classes=["alert-ack"])
        self.worker = pn.widgets.Select(label="worker", options=[], width=200, css_classes=["command-worker"])
        self.kind = pn.widgets.Select(label="command", options=list(PAYLOADS), value="ping", width=140)
        self.payload = pn.widgets.TextInput(label="payload (JSON)", value="{}", width=320)
        self.queue = pn.widgets.Button(label="Queue", color="primary", css_classes=["command-queue"])
        self.commands = pn.widgets.Tabulator(None, selectable=1, max_height=300, css_classes=["fleet-commands"], **table)
        self.cancel = pn.widgets.Button(label="Cancel", color="danger", css_classes=["command-cancel"])
        self.slos = pn.widgets.Tabulator(None, selectable=False, css_classes=["fleet-slos"], **table)
        self.message = pn.pane.Alert("", alert_type="info", visible=False, sizing_mode="stretch_width")
        self.why = pn.pane.Markdown(f"*Acknowledge, queue and cancel are off: {self.refusal}*" if self.refusal else "",
                                    visible=bool(self.refusal), margin=(0, 10))
        for button in (self.ack, self.queue, self.cancel):
            button.disabled = bool(self.refusal)
        self.ack.on_click(lambda _e: self._act(lambda: self.fleet.acknowledge(self._picked(self.alerts), self.user),
                                               "acknowledged the alert"))
        self.queue.on_click(lambda _e: self._act(self._queue, "queued the command"))
        self.cancel.on_click(lambda _e: self._act(lambda: self.fleet.cancel(self._picked(self.commands)),
                                                  "cancelled the command"))
        self._watchers = [self.fleet.param.watch(lambda *_: self._show(), ["workers", "alerts", "commands", "slos",
                                                                            "resources", "error"])]
        self._show()
        if served():
            pn.state.on_session_destroyed(lambda _ctx: self.close())

    def close(self) -> None:
        for w in self._watchers:
            self.fleet.param.unwatch(w)
        self._watchers = []

    # -- following the state ---------------------------------------------------------------------
    def _show(self) -> None:
        f = self.fleet
        if f.error:
            self._say(f"**The store could not be read.** {f.error}", "danger")
        self.totals.object = totals_text(f.resources)
        text = cards_html(f.workers)
        if text != self.cards.object:
            self.cards.object = text
        if f.workers is not None:
            ids = f.workers["id"].to_list()
            if self.worker.options != ids:
                self.worker.options = ids
                if self.worker.value not in ids and ids:
                    self.worker.value = ids[0]
        for widget, frame in ((self.alerts, f.alerts), (self.commands, f.commands), (self.slos, f.slos)):
            if frame is None:
                continue
            value = _table(frame)
            if widget.value is None or not value.equals(widget.value):
                widget.value = value

    # -- actions ------------------------------------------------------------------------------
    def _picked(self, table: pn.widgets.Tabulator) -> str:
        if table.value is None or not table.selection or table.selection[0] >= len(table.value):
            raise WorkbenchError("select a row first")
        return table.value["id"].iloc[table.selection[0]]

    def _queue(self) -> dict:
        if not self.worker.value:
            raise WorkbenchError("pick a worker first")
        try:
            payload = json.loads(self.payload.value or "{}")
        except ValueError as e:
            raise WorkbenchError(f"the payload is not JSON: {e}") from e
        if not isinstance(payload, dict):
            raise WorkbenchError('the payload must be a JSON object, e.g. {"name": "quickstart"}')
        return self.fleet.queue(self.worker.value, self.kind.value, payload, self.user)

    def _act(self, action, done: str) -> None:
        if self.refusal:
            return self._say(self.refusal, "warning")
        try:
            record = action()
        except WorkbenchError as e:
            return self._say(f"**Not done.** {e}", "danger")
        self._say(f"{done.capitalize()} `{record['id']}`.", "success")

    def __panel__(self) -> pn.viewable.Viewable:
        title = {"margin": (0, 10)}
        return pn.Column(
            self.message,
            pn.pane.Markdown("### Workers", **title),
            self.totals,
            self.cards,
            pn.pane.Markdown("### Alerts", **title),
            self.why,
            self.ack,
            self.alerts,
            pn.pane.Markdown("### Commands", **title),
            pn.Row(self.worker, self.kind, self.payload, self.queue, self.cancel),
            self.commands,
            pn.pane.Markdown("### Service level objectives (30 days)", **title),
            self.slos,
            sizing_mode="stretch_width",
        )


CARDS_CSS = """
.worker-cards { display: flex; flex-wrap: wrap; gap: 12px; }
.worker-card { display: flex; flex-direction: column; gap: 2px; min-width: 280px; padding: 10px 14px;
               border: 1px solid rgba(127, 127, 127, 0.35); border-left: 8px solid #888; border-radius: 8px; }
.worker-card span { font-size: 13px; opacity: 0.75; }
.worker-card th { text-align: left; font-weight: 500; opacity: 0.75; padding-right: 12px; }
.worker-card td, .worker-card th { font-size: 13px; }
.worker-empty { opacity: 0.75; padding: 8px; }
"""
