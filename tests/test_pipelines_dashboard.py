"""The pipelines dashboard without a browser: its state, the selected run's steps and failure, schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bi_ide.dashboards.pipelines import PipelinesPage
from bi_ide.dashboards.pipelines_state import Pipelines, failure
from bi_ide.dashboards.poller import Poller
from bi_ide.dashboards.training_state import DEVELOPERS_ENV

STEPS = [{"name": "extract", "notebook": "nb/extract.ipynb"}, {"name": "train", "notebook": "nb/train.ipynb"},
         {"name": "report", "notebook": "nb/report.ipynb"}]


def seed(store) -> dict[str, str]:
    """A done run; a failed one (train fails at cell 7, report skipped); a schedule."""
    done = store.create_pipeline_run("nightly", steps=STEPS[:1])["id"]
    store.update_pipeline_run(done, status="running")
    store.update_pipeline_step(done, "extract", status="done", duration_s=12.5, output_path="/tmp/arch/ok.ipynb")
    store.update_pipeline_run(done, status="done")
    failed = store.create_pipeline_run("nightly", steps=STEPS, trigger="schedule")["id"]
    store.update_pipeline_run(failed, status="running")
    store.update_pipeline_step(failed, "extract", status="done", duration_s=3.0, output_path="/tmp/arch/1.ipynb")
    store.update_pipeline_step(failed, "train", status="failed", duration_s=65.0, output_path="/tmp/arch/2.ipynb",
                               failed_cell=7, error="ZeroDivisionError: division by zero")
    store.update_pipeline_step(failed, "report", status="skipped")
    store.update_pipeline_run(failed, status="failed", error="step train failed")
    schedule = store.create_schedule("nightly", "0 3 * * *", next_run_at=datetime.now(UTC) + timedelta(hours=5))
    return {"done": done, "failed": failed, "schedule": schedule["id"]}


@pytest.fixture
def seeded(store) -> dict[str, str]:
    return seed(store)


@pytest.fixture
def pipelines(store, seeded) -> Pipelines:
    return Pipelines(store=store).refresh()


def test_refresh_lists_runs_with_durations_and_schedules(pipelines, seeded):
    runs = pipelines.runs
    assert runs["id"].to_list() == [seeded["failed"], seeded["done"]]  # newest first
    assert runs["status"].to_list() == ["failed", "done"] and runs["trigger"].to_list() == ["schedule", "manual"]
    assert all(d is not None and d >= 0 for d in runs["duration_s"].to_list())
    s = pipelines.schedules.row(0, named=True)
    assert (s["pipeline"], s["cron"], s["paused"], s["skipped_runs"]) == ("nightly", "0 3 * * *", False, 0)
    assert pipelines.steps == {} and pipelines.error == ""  # no tab watches a run yet


def test_watched_run_steps_and_its_failure(pipelines, seeded):
    pipelines.watch_run("tab", seeded["failed"])
    steps = pipelines.steps[seeded["failed"]]
    assert steps["name"].to_list() == ["extract", "train", "report"]
    assert steps["status"].to_list() == ["done", "failed", "skipped"]
    failed = failure(steps)
    assert (failed["name"], failed["failed_cell"], failed["output_path"]) == ("train", 7, "/tmp/arch/2.ipynb")
    assert "ZeroDivisionError" in failed["error"]
    assert failure(steps.head(1)) is None
    pipelines.unwatch("tab")
    pipelines.refresh()
    assert pipelines.steps == {}  # nobody looks at it: not kept


def test_refresh_is_quiet_when_nothing_changed(pipelines):
    seen = []
    pipelines.param.watch(lambda e: seen.append(e.name), ["runs", "schedules", "steps"])
    pipelines.refresh()
    assert seen == []


def test_pause_resume_remove(pipelines, seeded, store):
    sid = seeded["schedule"]
    assert pipelines.pause(sid)["paused"] is True
    assert pipelines.schedules["paused"].to_list() == [True]  # shown at once, not after a beat
    resumed = pipelines.resume(sid)
    assert resumed["paused"] is False and resumed["next_run_at"] > datetime.now(UTC)
    pipelines.remove(sid)
    assert store.list_schedules().is_empty() and pipelines.schedules.is_empty()


def test_no_store_says_so():
    assert "bi-ide init" in Pipelines().refresh().error


def test_poller_shares_one_state(store, seeded):
    poller = Poller()
    made = []

    def factory():
        made.append(1)
        return Pipelines(store=store)

    a, b = poller.shared("pipelines", factory), poller.shared("pipelines", factory)
    assert a is b and made == [1] and a.runs.height == 2


# -- the view -----------------------------------------------------------------------------------
def test_page_selects_newest_run_and_shows_failure(pipelines, seeded):
    page = PipelinesPage(pipelines=pipelines)
    assert page.selected == seeded["failed"] and list(page.runs.selection) == [0]
    assert list(page.steps.value["name"]) == ["extract", "train", "report"]
    assert list(page.steps.value["duration"]) == ["3 s", "1 min 5 s", ""]
    assert list(page.steps.value["failed_cell"]) == ["", "7", ""]
    assert page.failure.visible and page.failure.alert_type == "danger"
    assert "cell 7" in page.failure.object and "ZeroDivisionError: division by zero" in page.failure.object
    assert "/tmp/arch/2.ipynb" in page.failure.object
    page.runs.selection = [1]  # the user picks the done run
    assert page.selected == seeded["done"]
    assert list(page.steps.value["name"]) == ["extract"] and not page.failure.visible
    page.close()
    assert pipelines.watched == frozenset()


def test_page_pause_and_resume_buttons(pipelines, seeded, store):
    page = PipelinesPage(pipelines=pipelines)
    assert page.pause.disabled and page.resume.disabled  # no schedule selected
    page.schedules.selection = [0]
    assert not page.pause.disabled and page.resume.disabled
    page.pause.clicks += 1
    assert store.get_schedule(seeded["schedule"])["paused"] is True
    assert page.pause.disabled and not page.resume.disabled and "paused" in page.message.object
    page.resume.clicks += 1
    assert store.get_schedule(seeded["schedule"])["paused"] is False


def test_page_refuses_writes_to_non_developers(pipelines, seeded, store, monkeypatch):
    monkeypatch.setenv(DEVELOPERS_ENV, "alice")
    page = PipelinesPage(pipelines=pipelines, user="bob")
    page.schedules.selection = [0]
    assert page.pause.disabled and page.remove.disabled and page.why.visible
    page._act("pause")
    assert store.get_schedule(seeded["schedule"])["paused"] is False and "not a developer" in page.message.object
    assert not PipelinesPage(pipelines=pipelines, user="alice").refusal


# -- in a real browser, served by a real hub ------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_pipelines_page_in_browser_shows_failed_step(browser, tmp_db, start_hub):
    import subprocess
    import sys
    from pathlib import Path

    from bi_ide.store import Store

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "bi_ide.cli", "init", "--db", str(tmp_db)], cwd=root, check=True,
                   capture_output=True, timeout=60)
    with Store(tmp_db) as s:  # closed before the hub starts: one process writes the file
        ids = seed(s)
    hub = start_hub(tmp_db)
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    tab = context.new_page()
    try:
        tab.goto(hub.url + "/pipelines")
        runs = tab.locator(".pipeline-runs")
        runs.get_by_text(ids["failed"]).wait_for(timeout=30_000)
        assert tab.title() == "Pipelines"
        runs.locator(".tabulator-row", has_text=ids["done"]).click()  # another run, then the failed one
        tab.locator(".pipeline-steps").get_by_text("/tmp/arch/ok.ipynb").wait_for(timeout=10_000)
        runs.locator(".tabulator-row", has_text=ids["failed"]).click()
        alert = tab.locator(".pipeline-failure")
        alert.get_by_text("ZeroDivisionError: division by zero").wait_for(timeout=10_000)
        assert alert.get_by_text("failed at cell 7").is_visible()  # the alert's text lives in its shadow DOM
        assert tab.locator(".pipeline-steps").get_by_text("skipped").is_visible()
        assert tab.locator(".pipeline-schedules").get_by_text("0 3 * * *").is_visible()
        tab.wait_for_timeout(500)
        tab.screenshot(path="/tmp/pipelines.png", full_page=True)
        assert "Traceback" not in hub.log_path.read_text()
    finally:
        context.close()
