"""The pipeline tables: runs of notebook pipelines (bi_ide.pipelines), their steps, cron schedules.

A mixin of Store: the methods use its cursor and transactions, and live here so store.py stays
readable in one sitting.
"""

from __future__ import annotations

import json

import polars as pl

from bi_ide.errors import ConflictError, NotFoundError, ValidationError
from bi_ide.store.values import check_text, new_id, to_json

# -- pipelines: the values the Store's pipeline methods accept ------------------------------------
PIPELINE_RUN_STATUSES = ("queued", "running", "done", "failed", "stopped")
PIPELINE_RUN_TRANSITIONS = {
    "queued": {"running", "failed", "stopped"},
    "running": {"done", "failed", "stopped"},
    "done": set(), "failed": set(), "stopped": set(),
}
PIPELINE_RUN_FIELDS = ("archive_path", "error", "worker_id", "host", "pid")
PIPELINE_STEP_STATUSES = ("pending", "running", "done", "failed", "skipped")
PIPELINE_STEP_FIELDS = ("duration_s", "output_path", "failed_cell", "error")
PIPELINE_TRIGGERS = ("manual", "schedule", "worker")
SCHEDULE_MISSED = ("run-once", "skip")
SCHEDULE_FIELDS = ("paused", "cron", "params", "missed", "next_run_at", "last_run_at", "last_run_id", "last_outcome",
                   "skipped_runs")


class PipelineTables:
    """Store methods for pipeline_runs, pipeline_steps and schedules."""

    # -- pipelines ---------------------------------------------------------------------
    # Runs of notebook pipelines (bi_ide.pipelines), their steps, and cron schedules.
    def create_pipeline_run(self, pipeline: str, *, steps: list[dict], params: dict | None = None,
                            trigger: str = "manual", worker_id: str | None = None, schedule_id: str | None = None,
                            archive_path: str | None = None, host: str | None = None,
                            pid: int | None = None) -> dict:
        """Record a queued pipeline run with its steps (each {name, notebook, params}) pending."""
        check_text("pipeline", pipeline)
        if trigger not in PIPELINE_TRIGGERS:
            raise ValidationError(f"trigger {trigger!r} is not one of {list(PIPELINE_TRIGGERS)}", field="trigger")
        if not steps:
            raise ValidationError("a pipeline run needs at least one step", field="steps")
        for step in steps:
            if not isinstance(step, dict) or set(step) - {"name", "notebook", "params"}:
                raise ValidationError(f"a step is {{name, notebook, params}}, got {step!r:.80}", field="steps")
            check_text("step name", step.get("name"), 100)
            check_text("notebook", step.get("notebook"), 4096)
        run_id = new_id()
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO pipeline_runs (id, pipeline, params, trigger, worker_id, schedule_id, archive_path, "
                "host, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, pipeline, to_json(params), trigger, worker_id, schedule_id, archive_path, host, pid],
            )
            for position, step in enumerate(steps):
                cur.execute(
                    "INSERT INTO pipeline_steps (pipeline_run_id, position, name, notebook, params) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [run_id, position, step["name"], step["notebook"], to_json(step.get("params"))],
                )
        return self.get_pipeline_run(run_id)

    def get_pipeline_run(self, run_id: str) -> dict:
        """A pipeline run with its decoded params and its steps (in the order they were recorded)."""
        df = self.sql("SELECT * FROM pipeline_runs WHERE id = ?", [run_id])
        if df.is_empty():
            raise NotFoundError(f"no pipeline run with id {run_id!r}; `bi-ide pipeline runs` lists them")
        row = df.row(0, named=True)
        row["params"] = json.loads(row["params"]) if row["params"] else None
        steps = self.sql("SELECT * EXCLUDE (pipeline_run_id, position) FROM pipeline_steps "
                         "WHERE pipeline_run_id = ? ORDER BY position", [run_id]).to_dicts()
        for step in steps:
            step["params"] = json.loads(step["params"]) if step["params"] else None
        row["steps"] = steps
        return row

    def list_pipeline_runs(self, *, pipeline: str | None = None, status: str | None = None,
                           limit: int = 100) -> pl.DataFrame:
        """Pipeline runs, newest first, optionally of one pipeline and status."""
        if status is not None and status not in PIPELINE_RUN_STATUSES:
            raise ValidationError(f"status {status!r} is not one of {list(PIPELINE_RUN_STATUSES)}", field="status")
        if not 1 <= limit <= 10_000:
            raise ValidationError(f"limit must be 1..10000, got {limit}", field="limit")
        return self.sql(
            "SELECT id, pipeline, status, trigger, worker_id, schedule_id, host, pid, archive_path, error, params, "
            "created_at, started_at, finished_at FROM pipeline_runs "
            "WHERE (? IS NULL OR pipeline = ?) AND (? IS NULL OR status = ?) ORDER BY created_at DESC, id LIMIT ?",
            [pipeline, pipeline, status, status, limit],
        )

    def update_pipeline_run(self, run_id: str, *, status: str | None = None, **fields) -> dict:
        """Move a pipeline run along PIPELINE_RUN_TRANSITIONS and/or set its archive_path, error, worker."""
        unknown = set(fields) - set(PIPELINE_RUN_FIELDS)
        if unknown:
            raise ValidationError(f"cannot update pipeline run field(s) {sorted(unknown)}; allowed: "
                                  f"{list(PIPELINE_RUN_FIELDS)} and status", field=sorted(unknown)[0])
        sets, params = [f"{k} = ?" for k in fields], list(fields.values())
        with self.transaction() as cur:
            found = cur.execute("SELECT status FROM pipeline_runs WHERE id = ?", [run_id]).fetchall()
            if not found:
                raise NotFoundError(f"no pipeline run with id {run_id!r}; `bi-ide pipeline runs` lists them")
            if status is not None:
                current = found[0][0]
                if status not in PIPELINE_RUN_STATUSES:
                    raise ValidationError(f"status {status!r} is not one of {list(PIPELINE_RUN_STATUSES)}",
                                          field="status")
                if status not in PIPELINE_RUN_TRANSITIONS[current]:
                    allowed = sorted(PIPELINE_RUN_TRANSITIONS[current]) or "none (it is final)"
                    raise ConflictError(f"pipeline run {run_id} is {current} and cannot become {status}; "
                                        f"allowed: {allowed}")
                sets.append("status = ?")
                params.append(status)
                if status == "running":
                    sets.append("started_at = coalesce(started_at, now())")
                if status in ("done", "failed", "stopped"):
                    sets.append("finished_at = now()")
            if sets:
                cur.execute(f"UPDATE pipeline_runs SET {', '.join(sets)} WHERE id = ?", [*params, run_id])
        return self.get_pipeline_run(run_id)

    def update_pipeline_step(self, run_id: str, name: str, *, status: str | None = None, **fields) -> dict:
        """Set a step's status (running stamps started_at; done/failed/skipped stamp finished_at) and fields."""
        unknown = set(fields) - set(PIPELINE_STEP_FIELDS)
        if unknown:
            raise ValidationError(f"cannot update pipeline step field(s) {sorted(unknown)}; allowed: "
                                  f"{list(PIPELINE_STEP_FIELDS)} and status", field=sorted(unknown)[0])
        sets, params = [f"{k} = ?" for k in fields], list(fields.values())
        if status is not None:
            if status not in PIPELINE_STEP_STATUSES:
                raise ValidationError(f"status {status!r} is not one of {list(PIPELINE_STEP_STATUSES)}",
                                      field="status")
            sets.append("status = ?")
            params.append(status)
            if status == "running":
                sets.append("started_at = now()")
            if status in ("done", "failed", "skipped"):
                sets.append("finished_at = now()")
        with self.transaction() as cur:
            hit = cur.execute(
                f"UPDATE pipeline_steps SET {', '.join(sets) or 'name = name'} "
                "WHERE pipeline_run_id = ? AND name = ? RETURNING name", [*params, run_id, name],
            ).fetchall()
        if not hit:
            raise NotFoundError(f"pipeline run {run_id!r} has no step {name!r}")
        return next(s for s in self.get_pipeline_run(run_id)["steps"] if s["name"] == name)

    def create_schedule(self, pipeline: str, cron: str, *, next_run_at, params: dict | None = None,
                        missed: str = "run-once") -> dict:
        """Record a cron schedule; the caller checked ``cron`` and computed ``next_run_at`` from it."""
        check_text("pipeline", pipeline)
        check_text("cron", cron, 100)
        if missed not in SCHEDULE_MISSED:
            raise ValidationError(f"missed {missed!r} is not one of {list(SCHEDULE_MISSED)}", field="missed")
        schedule_id = new_id()
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO schedules (id, pipeline, cron, params, missed, next_run_at) VALUES (?, ?, ?, ?, ?, ?)",
                [schedule_id, pipeline, cron, to_json(params), missed, next_run_at],
            )
        return self.get_schedule(schedule_id)

    def get_schedule(self, schedule_id: str) -> dict:
        df = self.sql("SELECT * FROM schedules WHERE id = ?", [schedule_id])
        if df.is_empty():
            raise NotFoundError(f"no schedule with id {schedule_id!r}; `bi-ide pipeline schedules` lists them")
        row = df.row(0, named=True)
        row["params"] = json.loads(row["params"]) if row["params"] else None
        return row

    def list_schedules(self) -> pl.DataFrame:
        """Every schedule, oldest first (params as JSON text)."""
        return self.sql(
            "SELECT id, pipeline, cron, params, paused, missed, next_run_at, last_run_at, last_run_id, "
            "last_outcome, skipped_runs, created_at FROM schedules ORDER BY created_at, id"
        )

    def update_schedule(self, schedule_id: str, **fields) -> dict:
        """Pause or resume a schedule, or record what the scheduler did (SCHEDULE_FIELDS)."""
        unknown = set(fields) - set(SCHEDULE_FIELDS)
        if unknown:
            raise ValidationError(f"cannot update schedule field(s) {sorted(unknown)}; allowed: "
                                  f"{list(SCHEDULE_FIELDS)}", field=sorted(unknown)[0])
        if "params" in fields:
            fields["params"] = to_json(fields["params"])
        if fields.get("missed", "run-once") not in SCHEDULE_MISSED:
            raise ValidationError(f"missed {fields['missed']!r} is not one of {list(SCHEDULE_MISSED)}",
                                  field="missed")
        if fields:
            with self.transaction() as cur:
                hit = cur.execute(
                    f"UPDATE schedules SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ? RETURNING id",
                    [*fields.values(), schedule_id],
                ).fetchall()
            if not hit:
                raise NotFoundError(f"no schedule with id {schedule_id!r}; `bi-ide pipeline schedules` lists them")
        return self.get_schedule(schedule_id)

    def delete_schedule(self, schedule_id: str) -> None:
        with self.transaction() as cur:
            hit = cur.execute("DELETE FROM schedules WHERE id = ? RETURNING id", [schedule_id]).fetchall()
        if not hit:
            raise NotFoundError(f"no schedule with id {schedule_id!r}; `bi-ide pipeline schedules` lists them")
