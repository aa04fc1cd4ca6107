"""The pipelines dashboard: recent pipeline runs, the steps of the one selected (a failed step's
cell and error shown in red), and the schedules with pause, resume and remove.

Every tab follows the process's one ``Pipelines`` state (``pipelines_state()``); a tab only tells
it which run it shows. Writes are allowed per ``control_refusal``, as on the training page.
"""

from __future__ import annotations

import panel as pn
import param
import polars as pl

from bi_ide.dashboards.overview import _table
from bi_ide.dashboards.pipelines_state import Pipelines, failure
from bi_ide.dashboards.poller import POLLER, dashboard_store
from bi_ide.dashboards.state import human_duration
from bi_ide.dashboards.template import ControlledPage, served
from bi_ide.errors import WorkbenchError

RUN_TITLES = {"status": "status", "pipeline": "pipeline", "trigger": "trigger", "started_at": "started (UTC)",
              "duration": "duration", "id": "id"}
STEP_TITLES = {"name": "step", "status": "status", "duration": "duration", "output_path": "archived notebook",
               "failed_cell": "failed cell", "error": "error"}
SCHEDULE_TITLES = {"pipeline": "pipeline", "cron": "cron (UTC)", "next_run_at": "next run (UTC)", "paused": "paused",
                   "last_outcome": "last outcome", "skipped_runs": "skipped runs", "id": "id"}
ERROR_LINES = 40  # the alert shows the end of a long traceback; the steps table has all of it


def pipelines_state() -> Pipelines:
    """This process's Pipelines state, kept fresh by the shared poller (the hub's own store inside the hub)."""
    return POLLER.shared("pipelines", _new_pipelines)


def _new_pipelines() -> Pipelines:
    store, _, error = dashboard_store()
    return Pipelines(error=error) if error else Pipelines(store=store)


def _durations(df: pl.DataFrame) -> pl.DataFrame:
    """duration_s as text ('1 min 5 s'), blank where unknown."""
    return df.with_columns(pl.col("duration_s").map_elements(human_duration, return_dtype=pl.String)
                           .fill_null("").alias("duration")).drop("duration_s")


class PipelinesPage(ControlledPage):
    """The runs table, the selected run's steps and failure, and the schedules with their buttons."""

    pipelines = param.ClassSelector(class_=Pipelines, doc="The shared state, usually pipelines_state().")

    selected = param.String(default=None, allow_None=True, doc="The id of the run whose steps this tab shows.")

    def __init__(self, **params):
        super().__init__(**params)
        self._run_ids: list[str] = []
        self._schedule_ids: list[str] = []
        self._syncing = False
        self._build_widgets()
        self._show_runs()
        self._show_schedules()
        p = self.pipelines
        self._watchers = [
            p.param.watch(lambda *_: self._show_runs(), ["runs"]),
            p.param.watch(lambda *_: self._show_steps(), ["steps"]),
            p.param.watch(lambda *_: self._show_schedules(), ["schedules"]),
            p.param.watch(lambda *_: self._on_error(), ["error"]),
        ]
        self.param.watch(self._on_selected, ["selected"])
        self._on_error()
        if self.selected is None and self._run_ids:
            self.selected = self._run_ids[0]
        else:
            self._on_selected()
        if served():  # let go of the shared state with the tab
            pn.state.on_session_destroyed(lambda _ctx: self.close())

    def close(self) -> None:
        """Stop following the shared state and stop its reading of this tab's run."""
        for w in self._watchers:
            self.pipelines.param.unwatch(w)
        self._watchers = []
        self.pipelines.unwatch(self)

    # -- widgets -----------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        table = {"disabled": True, "show_index": False, "layout": "fit_data_stretch", "sizing_mode": "stretch_width"}
        self.runs = pn.widgets.Tabulator(None, selectable=1, max_height=360, titles=RUN_TITLES,
                                         css_classes=["pipeline-runs"], **table)
        self.runs.param.watch(self._on_run_row, "selection")
        self.run_title = pn.pane.Markdown("### Steps", margin=(0, 10))
        self.failure = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width",
                                     css_classes=["pipeline-failure"])
        self.steps = pn.widgets.Tabulator(None, selectable=False, titles=STEP_TITLES, css_classes=["pipeline-steps"],
                                          formatters={"error": {"type": "textarea"}}, **table)
        self.schedules = pn.widgets.Tabulator(None, selectable=1, max_height=300, titles=SCHEDULE_TITLES,
                                              css_classes=["pipeline-schedules"], **table)
        self.schedules.param.watch(lambda _e: self._enable_buttons(), "selection")
        self.pause = pn.widgets.Button(label="Pause", color="warning", disabled=True, css_classes=["schedule-pause"])
        self.resume = pn.widgets.Button(label="Resume", color="success", disabled=True, css_classes=["schedule-resume"])
        self.remove = pn.widgets.Button(label="Remove", color="danger", disabled=True, css_classes=["schedule-remove"])
        self.pause.on_click(lambda _e: self._act("pause"))
        self.resume.on_click(lambda _e: self._act("resume"))
        self.remove.on_click(lambda _e: self._act("remove"))
        self.message = pn.pane.Alert("", alert_type="info", visible=False, sizing_mode="stretch_width")
        self.why = pn.pane.Markdown(f"*Pause, resume and remove are off: {self.refusal}*" if self.refusal else "",
                                    visible=bool(self.refusal), margin=(0, 10))
        if self.refusal:
            for button in (self.pause, self.resume, self.remove):
                button.description = self.refusal

    # -- following the state ---------------------------------------------------------------------
    def _show_runs(self) -> None:
        runs = self.pipelines.runs
        if runs is None:
            return
        shown = _durations(runs).select([c for c in RUN_TITLES if c in runs.columns or c == "duration"])
        self._run_ids = shown["id"].to_list()
        table = _table(shown)
        self._syncing = True  # a new value clears Tabulator's selection: that is not the user's doing
        try:
            if self.runs.value is None or not table.equals(self.runs.value):
                self.runs.value = table
            wanted = [self._run_ids.index(self.selected)] if self.selected in self._run_ids else []
            if list(self.runs.selection) != wanted:
                self.runs.selection = wanted
        finally:
            self._syncing = False

    def _on_run_row(self, event) -> None:
        if self._syncing or not event.new:
            return
        if event.new[0] < len(self._run_ids):
            self.selected = self._run_ids[event.new[0]]

    def _on_selected(self, *_events) -> None:
        self.pipelines.watch_run(self, self.selected)
        self._show_runs()
        self._show_steps()

    def _show_steps(self) -> None:
        steps = self.pipelines.steps.get(self.selected) if self.selected else None
        run = self._run()
        self.run_title.object = (f"### Steps of {run['pipeline']} · {run['status']} · `{run['id']}`" if run
                                 else "### Steps (select a run)")
        table = None
        if steps is not None:  # the cell number as text: a blank, not pandas' NaN and "7.0", where none failed
            table = _table(_durations(steps).select(list(STEP_TITLES)).with_columns(pl.col("failed_cell").cast(pl.String)))
        old = self.steps.value
        if (table is None) != (old is None) or (table is not None and not table.equals(old)):
            self.steps.value = table
        failed = failure(steps)
        if failed is not None:
            cell = f"cell {failed['failed_cell']}" if failed["failed_cell"] is not None else "an unknown cell"
            error = "\n".join((failed["error"] or "no error text was recorded").splitlines()[-ERROR_LINES:])
            where = f"\n\nArchived notebook: `{failed['output_path']}`" if failed["output_path"] else ""
            text = f"**Step {failed['name']} failed at {cell}.**\n\n```\n{error}\n```{where}"
        elif run and run["status"] == "failed" and run["error"]:
            text = f"**The run failed.**\n\n```\n{run['error']}\n```"
        else:
            text = ""
        if text != self.failure.object:
            self.failure.object = text
        self.failure.visible = bool(text)

    def _run(self) -> dict | None:
        runs = self.pipelines.runs
        if runs is None or self.selected is None:
            return None
        rows = runs.filter(pl.col("id") == self.selected)
        return rows.row(0, named=True) if not rows.is_empty() else None

    def _show_schedules(self) -> None:
        schedules = self.pipelines.schedules
        if schedules is None:
            return
        table = _table(schedules.select(list(SCHEDULE_TITLES)))
        if self.schedules.value is None or not table.equals(self.schedules.value):
            selected = self.selected_schedule()
            self.schedules.value = table
            self._schedule_ids = list(table["id"])
            self.schedules.selection = [self._schedule_ids.index(selected)] if selected in self._schedule_ids else []
        self._enable_buttons()

    def _on_error(self) -> None:
        if self.pipelines.error:
            self._say(f"**The store could not be read.** {self.pipelines.error}", "danger")

    # -- actions on schedules -----------------------------------------------------------------
    def selected_schedule(self) -> str | None:
        value, picked = self.schedules.value, self.schedules.selection
        if value is None or not picked or picked[0] >= len(value):
            return None
        return value["id"].iloc[picked[0]]

    def _enable_buttons(self) -> None:
        schedule_id = self.selected_schedule()
        paused = None
        if schedule_id is not None:
            paused = bool(self.schedules.value["paused"].iloc[self.schedules.selection[0]])
        allowed = not self.refusal and schedule_id is not None
        self.pause.disabled = not (allowed and paused is False)
        self.resume.disabled = not (allowed and paused is True)
        self.remove.disabled = not allowed

    def _act(self, action: str) -> None:
        if self.refusal:
            return self._say(self.refusal, "warning")
        schedule_id = self.selected_schedule()
        if schedule_id is None:
            return None
        try:
            record = getattr(self.pipelines, action)(schedule_id)
        except WorkbenchError as e:
            return self._say(f"**{action.title()} failed.** {e}", "danger")
        done = {"pause": "paused", "resume": "resumed", "remove": "removed"}[action]
        self._say(f"Schedule of {record['pipeline']} (`{record['cron']}`) {done}.", "success")

    # -- layout ------------------------------------------------------------------------------
    def __panel__(self) -> pn.viewable.Viewable:
        title = {"margin": (0, 10)}
        return pn.Column(
            self.message,
            pn.pane.Markdown("### Pipeline runs", **title),
            self.runs,
            self.run_title,
            self.failure,
            self.steps,
            pn.pane.Markdown("### Schedules", **title),
            self.why,
            pn.Row(self.pause, self.resume, self.remove),
            self.schedules,
            sizing_mode="stretch_width",
        )
