"""What the pipelines dashboard shows and does, as a param class that knows nothing of Panel.

``Pipelines`` is shared by every tab of the process (the poller refreshes it every 2 s): the recent
pipeline runs, the schedules, and the steps of the runs some tab has selected — only those are read.
Pausing, resuming and removing a schedule write through the same store; the page checks who may.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import param
import polars as pl

from bi_ide.dashboards.state import PolledState
from bi_ide.errors import WorkbenchError
from bi_ide.pipelines.schedule import resume_schedule

RUN_COLUMNS = ("status", "pipeline", "trigger", "started_at", "duration_s", "error", "id")
STEP_COLUMNS = ("name", "status", "duration_s", "output_path", "failed_cell", "error")
SCHEDULE_COLUMNS = ("pipeline", "cron", "next_run_at", "paused", "last_outcome", "skipped_runs", "id")


class Pipelines(PolledState):
    """The recent pipeline runs, the schedules, and the steps of the runs a tab is looking at."""

    per_run = ("steps",)  # merged per watched run on apply

    store = param.Parameter(default=None, precedence=-1, doc="""
        Where the data comes from: a Store (the hub's own one inside the hub).""")

    limit = param.Integer(default=100, bounds=(1, 10_000), doc="The newest pipeline runs to list.")

    runs = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        Pipeline runs, newest first, with RUN_COLUMNS; duration_s runs on while a run is going.""")

    schedules = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        Every schedule, oldest first, with SCHEDULE_COLUMNS.""")

    steps = param.Dict(default={}, doc="Run id -> its steps in order (STEP_COLUMNS), watched runs only.")

    # -- which runs the tabs show ------------------------------------------------------------
    def watch_run(self, owner, run_id: str | None) -> None:
        """Keep ``run_id``'s steps fresh for ``owner`` (a tab); read them now if new."""
        self._watch(owner, None if run_id is None else [run_id], self.steps,
                    lambda ids: {"steps": self._read_steps(ids)})

    # -- the poller's side -------------------------------------------------------------------
    def read(self) -> dict:
        """Query the store and return the new values (no parameter is set here; any thread)."""
        if self.store is None:
            return {"error": "no store: run `bi-ide init`, then `bi-ide serve`"}
        try:
            runs = self.store.list_pipeline_runs(limit=self.limit)
            schedules = self.store.list_schedules()
            ids = set(runs["id"].to_list())
            steps = self._read_steps([r for r in self.watched if r in ids])
        except WorkbenchError as e:
            return {"error": str(e)}
        return {"runs": _with_duration(runs), "schedules": schedules.select(SCHEDULE_COLUMNS), "steps": steps,
                "updated_at": time.time(), "error": ""}

    def _read_steps(self, run_ids) -> dict[str, pl.DataFrame]:
        out = {}
        for run_id in run_ids:
            rows = self.store.get_pipeline_run(run_id)["steps"]
            out[run_id] = pl.DataFrame([{c: s.get(c) for c in STEP_COLUMNS} for s in rows], schema=STEP_SCHEMA)
        return out

    # -- actions on schedules -----------------------------------------------------------------
    def pause(self, schedule_id: str) -> dict:
        """Pause a schedule (no run starts until it is resumed) and show it now."""
        return self._after(self.store.update_schedule(schedule_id, paused=True))

    def resume(self, schedule_id: str) -> dict:
        """Resume a schedule from its next cron time (the paused period is not caught up)."""
        return self._after(resume_schedule(self.store, schedule_id))

    def remove(self, schedule_id: str) -> dict:
        """Delete a schedule (its past runs stay)."""
        record = self.store.get_schedule(schedule_id)
        self.store.delete_schedule(schedule_id)
        return self._after(record)

    def _after(self, record: dict) -> dict:
        self.apply({"schedules": self.store.list_schedules().select(SCHEDULE_COLUMNS)})
        return record


STEP_SCHEMA = {"name": pl.String, "status": pl.String, "duration_s": pl.Float64, "output_path": pl.String,
               "failed_cell": pl.Int64, "error": pl.String}


def _with_duration(runs: pl.DataFrame) -> pl.DataFrame:
    """The runs with duration_s: finished − started, or now − started while running; null before it starts."""
    end = pl.coalesce(pl.col("finished_at"), pl.lit(datetime.now(UTC)).dt.convert_time_zone("UTC"))
    duration = (end.dt.convert_time_zone("UTC") - pl.col("started_at").dt.convert_time_zone("UTC"))
    return runs.with_columns((duration.dt.total_milliseconds() / 1000).alias("duration_s")).select(RUN_COLUMNS)


def failure(steps: pl.DataFrame | None) -> dict | None:
    """The run's first failed step (name, failed_cell, error, output_path…), or None when none failed."""
    if steps is None:
        return None
    failed = steps.filter(pl.col("status") == "failed")
    return failed.row(0, named=True) if not failed.is_empty() else None
