"""``bi-ide pipeline``: run notebook pipelines and schedule them. A thin click layer over bi_ide.pipelines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import polars as pl

from bi_ide import settings
from bi_ide.clikit import Group, db_option, open_store
from bi_ide.errors import ConfigError
from bi_ide.pipelines.runner import StoreFile, failure_line, run_pipeline
from bi_ide.pipelines.schedule import MISSED_POLICIES, add_schedule, resume_schedule
from bi_ide.pipelines.spec import load_pipeline, parse_assignments

PARAM = click.option("-p", "--param", "pairs", multiple=True, metavar="KEY=VALUE",
                     help="Set a pipeline parameter (typed like its default). Repeat for several.")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def pipeline():
    """Notebook pipelines (pipelines/*.yaml): run them, list their runs, schedule them.

    \b
    Example:
      bi-ide pipeline run quickstart -p seed=1
    """


@pipeline.command()
@click.argument("name")
@PARAM
@db_option
@click.option("--worker-id", default=None, help="Record the run as executed by this worker.")
@click.option("--trigger", type=click.Choice(["manual", "schedule", "worker"]), default=None, hidden=True)
@click.option("--schedule-id", default=None, hidden=True)
@click.option("--params-json", default=None, hidden=True, help="Parameters as one JSON object (the scheduler's).")
def run(name, pairs, db, worker_id, trigger, schedule_id, params_json):
    """Run pipeline NAME (pipelines/NAME.yaml, or a path to a YAML file), step by step.

    Each notebook runs with papermill from the project folder; its executed copy is kept in
    data/runs/<run id>/<step>.ipynb. Exits 1 when a step fails, naming the cell and the error.
    Without BI_IDE_HUB the store file is opened only to record, so the notebooks can use it too.

    \b
    Example:
      bi-ide pipeline run quickstart -p seed=1
      bi-ide pipeline run pipelines/nightly.yaml
    """
    spec = load_pipeline(name)
    params = parse_assignments(pairs, spec)
    if params_json:
        params.update(_json_params(params_json))
    click.echo(f"pipeline {spec.name}: {len(spec.steps)} step(s): {', '.join(s.name for s in spec.steps)}", err=True)
    with _recorder(db) as store:
        record = run_pipeline(spec, params, store, trigger=trigger or ("worker" if worker_id else "manual"),
                              worker_id=worker_id, schedule_id=schedule_id, on_step=_progress)
    click.echo(f"run {record['id']} {record['status']} — notebooks in {record['archive_path']}", err=True)
    if record["status"] != "done":
        failed = next(s for s in record["steps"] if s["status"] == "failed")
        raise click.ClickException(f"{failure_line(failed)}\n  notebook: {failed['output_path']}")
    click.echo(record["id"])


def _recorder(db):
    """The hub's client when BI_IDE_HUB is set (and no --db); else the store file, opened per write."""
    if db is None and settings.hub_url():
        return open_store(None)
    path = (db or settings.db_path()).resolve()
    os.environ["BI_IDE_DB"] = str(path)  # the notebooks' kernels inherit it: they record to the same file
    return StoreFile(path)


def _progress(step: dict) -> None:
    took = f"{step['duration_s']:8.1f} s" if step.get("duration_s") is not None else " " * 10
    line = f"  {step['name']:<20} {step['status']:<8} {took}"
    if step["status"] == "failed":
        line += f"  cell {step['failed_cell']}: {step['error']}" if step.get("failed_cell") is not None \
            else f"  {step['error']}"
    click.echo(line.splitlines()[0], err=True)


def _json_params(text: str) -> dict:
    try:
        values = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"--params-json is not JSON: {e}") from e
    if not isinstance(values, dict):
        raise ConfigError("--params-json must be a JSON object of name: value")
    return values


@pipeline.command("runs")
@click.option("--pipeline", "name", default=None, help="Only runs of this pipeline.")
@click.option("--status", type=click.Choice(["queued", "running", "done", "failed", "stopped"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_(name, status, limit, db, as_json):
    """List pipeline runs, newest first.

    \b
    Example:
      bi-ide pipeline runs --pipeline nightly --status failed
    """
    with open_store(db) as store:
        df = store.list_pipeline_runs(pipeline=name, status=status, limit=limit)
    _show(df.select("id", "pipeline", "status", "trigger", "error", "created_at", "finished_at"), as_json)


@pipeline.command()
@click.argument("run_id")
@db_option
def show(run_id, db):
    """Show one pipeline run and its steps.

    \b
    Example:
      bi-ide pipeline show 3f9a0c1d2e4b
    """
    with open_store(db) as store:
        record = store.get_pipeline_run(run_id)
    click.echo(f"{record['pipeline']} {record['id']}: {record['status']} ({record['trigger']}) "
               f"params {json.dumps(record['params'])}")
    if record["error"]:
        click.echo(f"  {record['error']}")
    for step in record["steps"]:
        _progress(step)
        if step["output_path"]:
            click.echo(f"  {'':<20} {step['output_path']}")


@pipeline.command()
@click.argument("name")
@click.option("--cron", required=True, help='Five cron fields in UTC, e.g. "0 3 * * *" (03:00 every day).')
@PARAM
@click.option("--missed", type=click.Choice(MISSED_POLICIES), default="run-once", show_default=True,
              help="After the hub was down: run one catch-up run, or skip the missed times.")
@db_option
def schedule(name, cron, pairs, missed, db):
    """Run pipeline NAME on a cron schedule; the hub (bi-ide serve) launches the runs.

    \b
    Example:
      bi-ide pipeline schedule nightly --cron "0 3 * * *" -p seed=7
    """
    spec = load_pipeline(name)
    params = parse_assignments(pairs, spec)
    by_name = Path(name).name == name and not name.endswith((".yaml", ".yml"))
    stored = name if by_name else spec.source  # the hub runs it from the project folder, by name or path
    with open_store(db) as store:
        record = add_schedule(store, stored, cron, params=params, missed=missed)
    click.echo(f"schedule {record['id']}: {spec.name} at {cron!r} (UTC), next run {record['next_run_at']:%Y-%m-%d %H:%M} UTC")


@pipeline.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def schedules(db, as_json):
    """List the schedules with their next run and what happened last time.

    \b
    Example:
      bi-ide pipeline schedules
    """
    with open_store(db) as store:
        df = store.list_schedules()
    _show(df.select("id", "pipeline", "cron", "params", "paused", "missed", "next_run_at", "last_outcome",
                    "skipped_runs"), as_json)


@pipeline.command()
@click.argument("schedule_id")
@db_option
def pause(schedule_id, db):
    """Pause a schedule: the hub launches nothing for it until resumed.

    \b
    Example:
      bi-ide pipeline pause 3f9a0c1d2e4b
    """
    with open_store(db) as store:
        store.update_schedule(schedule_id, paused=True)
    click.echo(f"paused {schedule_id}")


@pipeline.command()
@click.argument("schedule_id")
@db_option
def resume(schedule_id, db):
    """Resume a paused schedule from its next cron time (the paused period is not caught up).

    \b
    Example:
      bi-ide pipeline resume 3f9a0c1d2e4b
    """
    with open_store(db) as store:
        record = resume_schedule(store, schedule_id)
    click.echo(f"resumed {schedule_id}, next run {record['next_run_at']:%Y-%m-%d %H:%M} UTC")


@pipeline.command()
@click.argument("schedule_id")
@db_option
def remove(schedule_id, db):
    """Delete a schedule (its runs stay recorded).

    \b
    Example:
      bi-ide pipeline remove 3f9a0c1d2e4b
    """
    with open_store(db) as store:
        store.delete_schedule(schedule_id)
    click.echo(f"removed {schedule_id}")


def _show(df: pl.DataFrame, as_json: bool) -> None:
    if as_json:
        click.echo(df.write_json())
        return
    with pl.Config(tbl_rows=200, tbl_cols=20, fmt_str_lengths=60, tbl_width_chars=240, tbl_hide_dataframe_shape=True):
        click.echo(df)


if __name__ == "__main__":  # the scheduler's children: python -m bi_ide.pipelines.cli run NAME ...
    pipeline()
