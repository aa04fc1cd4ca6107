"""Cron schedules: the CLI, the scheduler's decisions under an injected clock, and one real launch."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from click.testing import CliRunner

from bi_ide.errors import ConfigError, ForbiddenError
from bi_ide.pipelines import schedule as sched
from bi_ide.pipelines.cli import pipeline as pipeline_cli
from bi_ide.pipelines.schedule import Scheduler, add_schedule, check_cron, next_run, own_url
from bi_ide.store import Store

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)  # a 03:00 cron time


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Child:
    """A launched run that is still going until ``done`` is set."""

    def __init__(self):
        self.done = False

    def poll(self):
        return 0 if self.done else None


@pytest.fixture
def launched():
    """The schedules a fake launcher was asked to start."""
    return []


@pytest.fixture
def scheduler(store, launched):
    def launch(schedule):
        launched.append(schedule)
        return Child()

    return Scheduler(store, launch, clock=Clock(T0), interval_s=30)


def nightly(store, *, at: datetime = T0, **kw) -> dict:
    return add_schedule(store, "nightly", "0 3 * * *", now=at - timedelta(minutes=1), **kw)


def test_cron_is_checked_and_read_in_utc():
    assert next_run("0 3 * * *", T0) == T0 + timedelta(days=1)
    assert next_run("*/15 * * * *", T0 + timedelta(minutes=1)) == T0 + timedelta(minutes=15)
    for bad in ("61 * * * *", "0 3 * *", "every day", "0 3 * * * *"):
        with pytest.raises(ConfigError, match='e.g. "0 3 \\* \\* \\*"'):
            check_cron(bad)


def test_a_due_schedule_launches_once_and_moves_on(store, scheduler, launched):
    s = nightly(store, params={"seed": 3})
    assert s["next_run_at"] == T0
    scheduler.clock.now = T0 - timedelta(seconds=1)
    assert scheduler.tick() == [] and launched == []
    scheduler.clock.now = T0 + timedelta(seconds=10)
    [done] = scheduler.tick()
    assert done["action"] == "launched" and launched[0]["params"] == {"seed": 3}
    s = store.get_schedule(s["id"])
    assert s["next_run_at"] == T0 + timedelta(days=1) and s["last_run_at"] == scheduler.clock.now
    assert s["last_outcome"].endswith("launched")
    assert scheduler.tick() == [] and len(launched) == 1


def test_a_paused_schedule_launches_nothing(store, scheduler, launched):
    s = nightly(store)
    store.update_schedule(s["id"], paused=True)
    scheduler.clock.now = T0 + timedelta(seconds=10)
    assert scheduler.tick() == [] and launched == []
    resumed = sched.resume_schedule(store, s["id"], now=T0 + timedelta(days=2, hours=5))
    assert not resumed["paused"] and resumed["next_run_at"] == T0 + timedelta(days=3)  # no catch-up


def test_no_second_run_while_the_launched_one_is_going(store, scheduler, launched):
    s = nightly(store)
    scheduler.clock.now = T0
    scheduler.tick()
    scheduler.clock.now = T0 + timedelta(days=1)
    [done] = scheduler.tick()
    assert done["action"] == "skipped" and "still going" in done["outcome"] and len(launched) == 1
    assert store.get_schedule(s["id"])["skipped_runs"] == 1
    scheduler.children["nightly"].done = True
    scheduler.clock.now = T0 + timedelta(days=2)
    assert scheduler.tick()[0]["action"] == "launched"


def test_no_run_while_one_is_recorded_running_and_a_dead_one_is_closed(store, scheduler, launched):
    nightly(store)
    steps = [{"name": "a", "notebook": "a.ipynb"}]
    alive = store.create_pipeline_run("nightly", steps=steps, host=scheduler.host, pid=_pid_of_running_process())
    store.update_pipeline_run(alive["id"], status="running")
    scheduler.clock.now = T0
    [done] = scheduler.tick()
    assert done["outcome"] == f"skipped: run {alive['id']} of nightly is still running" and not launched

    store.update_pipeline_run(alive["id"], status="done")
    dead = store.create_pipeline_run("nightly", steps=steps, host=scheduler.host, pid=_pid_of_finished_process())
    store.update_pipeline_run(dead["id"], status="running")
    scheduler.clock.now = T0 + timedelta(days=1)
    assert scheduler.tick()[0]["action"] == "launched"
    closed = store.get_pipeline_run(dead["id"])
    assert closed["status"] == "failed" and "is gone" in closed["error"]


def test_missed_runs_run_once_catches_up_once(store, scheduler, launched):
    s = nightly(store)  # missed defaults to run-once
    scheduler.clock.now = T0 + timedelta(days=3, hours=2)  # the hub was down over four 03:00s
    [done] = scheduler.tick()
    assert done["action"] == "launched" and "catch-up run for 4 missed" in done["outcome"] and len(launched) == 1
    assert store.get_schedule(s["id"])["next_run_at"] == T0 + timedelta(days=4)


def test_missed_runs_skip_only_moves_on(store, scheduler, launched):
    s = nightly(store, missed="skip")
    scheduler.clock.now = T0 + timedelta(days=1, minutes=5)  # 03:00 of two days passed, more than grace ago
    [done] = scheduler.tick()
    assert done["action"] == "skipped" and "missed 2 run(s)" in done["outcome"] and launched == []
    s = store.get_schedule(s["id"])
    assert s["next_run_at"] == T0 + timedelta(days=2) and s["skipped_runs"] == 2
    scheduler.clock.now = T0 + timedelta(days=2, seconds=20)  # on time again: it runs
    assert scheduler.tick()[0]["action"] == "launched"


def test_a_launch_that_fails_is_recorded(store):
    def launch(schedule):
        raise OSError("no python here")

    s = nightly(store)
    [done] = Scheduler(store, launch, clock=Clock(T0)).tick()
    assert done["action"] == "failed" and "no python here" in store.get_schedule(s["id"])["last_outcome"]


def test_start_scheduler_ticks_in_a_daemon_thread(store, monkeypatch, launched):
    monkeypatch.setattr(sched, "launch_run", lambda s, **kw: launched.append((s, kw)) or Child())
    add_schedule(store, "nightly", "* * * * *", now=datetime.now(UTC) - timedelta(minutes=1))  # due
    running = sched.start_scheduler(store, interval_s=0.05, hub_url="http://127.0.0.1:1", token="t")
    try:
        deadline = time.monotonic() + 10
        while not launched and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        running.stop()
        running.thread.join(5)
    assert running.thread.daemon and not running.thread.is_alive()
    assert launched[0][1]["hub_url"] == "http://127.0.0.1:1" and launched[0][1]["token"] == "t"


def test_the_hub_url_comes_from_the_panel_command_line():
    assert own_url(["panel", "serve", "a.py", "--address", "0.0.0.0", "--port", "5010"]) == "http://127.0.0.1:5010"
    assert own_url(["panel", "serve", "--port=7000"]) == "http://127.0.0.1:7000"
    assert own_url([]) == "http://127.0.0.1:5006"


def test_the_scheduler_token_replaces_the_previous_one(store):
    first = sched._scheduler_token(store)
    second = sched._scheduler_token(store)
    tokens = store.list_tokens()
    assert first != second and tokens.filter(tokens["revoked_at"].is_null()).height == 1


def test_cli_manages_schedules(tmp_path, monkeypatch, tmp_db):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "nb.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    (tmp_path / "pipelines" / "tiny.yaml").write_text("name: tiny\nparams: {n: 1}\nsteps: [{name: a, notebook: nb.ipynb}]\n")
    monkeypatch.chdir(tmp_path)

    def cli(*args):
        result = CliRunner().invoke(pipeline_cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "next run" in cli("schedule", "tiny", "--cron", "0 3 * * *", "-p", "n=4", "--missed", "skip")
    with Store(tmp_db) as store:
        s = store.list_schedules().row(0, named=True)
    assert s["pipeline"] == "tiny" and s["params"] == '{"n": 4}' and s["missed"] == "skip"
    assert s["id"] in cli("schedules")
    cli("pause", s["id"])
    with Store(tmp_db) as store:
        assert store.get_schedule(s["id"])["paused"]
    assert "resumed" in cli("resume", s["id"])
    cli("remove", s["id"])
    result = CliRunner().invoke(pipeline_cli, ["remove", s["id"]])
    assert result.exit_code == 1 and f"no schedule with id '{s['id']}'" in result.output


@pytest.mark.slow
def test_a_due_schedule_launches_a_run_that_writes_through_the_hub(tmp_path):
    """The real thing: a hub process, a due schedule, a child `pipeline run` recording through the hub."""
    from test_pipelines import notebook  # tests/ is on sys.path (pytest prepends it)

    from bi_ide.hub.client import HubClient
    from bi_ide.hub.process import HubProcess

    notebook(tmp_path / "notebooks" / "echo.ipynb")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "echo.yaml").write_text(
        "name: echo\nparams: {x: 1}\nsteps: [{name: a, notebook: notebooks/echo.ipynb, params: {x: '{{ x }}'}}]\n")
    db = tmp_path / "hub" / "workbench.duckdb"
    with Store(db) as store:
        _, token = store.create_token("test", "developer")
        _, viewer = store.create_token("test viewer", "viewer")
    with HubProcess(db) as hub, HubClient(hub.url, token) as client:
        s = add_schedule(client, "echo", "*/5 * * * *", params={"x": 21})
        scheduler = Scheduler(client, partial(sched.launch_run, hub_url=hub.url, token=token, root=tmp_path),
                              clock=Clock(s["next_run_at"] + timedelta(seconds=1)))
        [done] = scheduler.tick()
        assert done["action"] == "launched"
        child = scheduler.children["echo"]
        child.wait(timeout=120)
        log = (tmp_path / "data" / "runs" / "schedules" / f"{s['id']}.log").read_text()
        assert child.returncode == 0, log
        [run] = client.list_pipeline_runs(pipeline="echo").to_dicts()
        record = client.get_pipeline_run(run["id"])
        assert record["status"] == "done" and record["trigger"] == "schedule" and record["schedule_id"] == s["id"]
        assert record["params"] == {"x": 21} and record["steps"][0]["status"] == "done"
        assert isinstance(record["finished_at"], datetime)
        assert client.get_schedule(s["id"])["last_run_id"] == run["id"]
        with HubClient(hub.url, viewer) as reader:  # viewers read pipeline runs and schedules, never write
            assert reader.list_schedules().height == 1 and reader.get_pipeline_run(run["id"])["id"] == run["id"]
            with pytest.raises(ForbiddenError):
                reader.update_schedule(s["id"], paused=True)
            with pytest.raises(ForbiddenError):
                reader.create_pipeline_run("echo", steps=[{"name": "a", "notebook": "a.ipynb"}])


def _pid_of_running_process() -> int:
    import os

    return os.getpid()


def _pid_of_finished_process() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
