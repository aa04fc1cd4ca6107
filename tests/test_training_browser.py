"""The training dashboard in a real headless Chromium, served by a real hub (`bi-ide serve`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bi_ide.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]

SCREENSHOT = "/tmp/training.png"
LIVE_S = 6.0  # a change in the store shows within this time (poller 2 s + load headroom)


def seed(store: Store) -> dict:
    """A finished run and a running one, both with curves; a checkpoint and a model of the finished one."""
    now = time.time()
    done = store.create_run("tiny-baseline", preset="tiny", status="running")["id"]
    live = store.create_run("small-live", preset="small", status="running")["id"]
    for run_id, loss0, steps, seconds_per_step in ((done, 5.0, range(0, 401, 10), 0.5),
                                                   (live, 6.0, range(0, 241, 10), 1.5)):
        n = len(steps)
        names = ["loss", "lr", "tokens_per_s"]
        store.write_metrics({
            "step": [s for s in steps for _ in names], "name": names * n,
            "value": [v for s in steps for v in (loss0 / (1 + s / 40) + 0.05 * (s % 30 == 0), 1e-3 * min(1, (s + 1) / 50),
                                                 4000 + 300 * ((s // 10) % 3))],
            "time": [now - (steps[-1] - s) * seconds_per_step for s in steps for _ in names],
        }, run_id=run_id)
        evals = list(steps)[::5]
        store.write_metrics({
            "step": [s for s in evals for _ in range(4)],
            "name": ["val_loss", "val_bpb_arabic", "val_bpb_code", "val_bpb_text"] * len(evals),
            "value": [v for s in evals for v in (loss0 / (1 + s / 40) + 0.2, 2.5 / (1 + s / 80), 2.0 / (1 + s / 80),
                                                 2.2 / (1 + s / 80))],
            "time": [now - (steps[-1] - s) * seconds_per_step for s in evals for _ in range(4)],
        }, run_id=run_id)
    store.update_run(done, step=400, total_steps=400)
    store.update_run(done, status="done")
    store.update_run(live, step=240, total_steps=600)
    checkpoint = store.add_checkpoint(done, step=400, path="/tmp/runs/tiny-baseline/best", kind="best", loss=0.45,
                                      size_bytes=12_345_678)
    store.register_model("bi-tiny", run_id=done, checkpoint_id=checkpoint["id"], params_count=1_234_567)
    return {"done": done, "live": live}


@pytest.fixture
def hub(tmp_db, start_hub):
    """A hub on a seeded store, a viewer token made before it starts; its process group is killed afterwards."""
    cli("init", "--db", str(tmp_db))
    with Store(tmp_db) as store:  # closed before the hub starts: one process writes the file
        runs = seed(store)
        _, viewer = store.create_token("browser-test", "viewer")
    proc = start_hub(tmp_db)
    yield {"url": proc.url, "viewer": viewer, "runs": runs, "log": proc.log_path}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bi_ide.cli", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True, timeout=60)


def get_json(url: str, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return json.loads(r.read())


def test_training_page_shows_runs_curves_and_stops_a_run(browser, hub):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    outside = []
    tab.on("request", lambda r: None if r.url.startswith((hub["url"], "data:", "blob:")) else outside.append(r.url))
    try:
        tab.goto(hub["url"] + "/training")
        runs = tab.locator(".training-runs")
        runs.get_by_text("tiny-baseline").wait_for(timeout=30_000)
        assert tab.title() == "Training"
        assert runs.get_by_text("small-live").is_visible() and runs.get_by_text("240/600").is_visible()
        tab.locator(".curve-loss canvas").first.wait_for(timeout=30_000)  # the newest running run is drawn
        for key in ("loss", "lr", "throughput", "bpb"):
            assert tab.locator(f".curve-{key} canvas").count() >= 1, key
        progress = tab.locator(".training-progress .bi-progress")  # the HTML lives in the pane's shadow DOM
        assert "small-live" in progress.first.inner_text() and "ETA" in progress.first.inner_text()

        # overlay the finished run: tick its row's checkbox; its checkpoint shows below the charts
        runs.locator(".tabulator-row", has_text="tiny-baseline").locator("input[type=checkbox]").click()
        tab.locator(".training-checkpoints").get_by_text("/tmp/runs/tiny-baseline/best").wait_for(timeout=10_000)
        progress.nth(1).wait_for(timeout=10_000)
        assert "tiny-baseline" in " ".join(progress.all_inner_texts())
        assert tab.locator(".training-models").get_by_text("bi-tiny").is_visible()
        tab.locator(".training-start-card").get_by_text("Start a run").click()  # the form, built from TrainConfig
        tab.locator(".training-start-card").get_by_text("Learning rate").first.wait_for(timeout=10_000)
        tab.set_viewport_size({"width": 1400, "height": 2700})  # the template scrolls inside: show it all
        tab.wait_for_timeout(1_500)  # let the overlaid curves draw before the picture
        tab.screenshot(path=SCREENSHOT, full_page=True)

        live = hub["runs"]["live"]
        assert get_json(f"{hub['url']}/api/v1/runs/{live}", hub["viewer"])["stop_requested"] is False
        tab.locator(".training-stop button").click()
        deadline = time.monotonic() + LIVE_S
        while not get_json(f"{hub['url']}/api/v1/runs/{live}", hub["viewer"])["stop_requested"]:
            assert time.monotonic() < deadline, "the Stop button did not set stop_requested"
            time.sleep(0.1)
        tab.locator(".training-progress").get_by_text("stop requested").wait_for(timeout=LIVE_S * 1000)
        assert outside == [], "the page must render offline: no request may leave the hub"
        log = hub["log"].read_text()
        assert "Traceback" not in log, log
    finally:
        context.close()
