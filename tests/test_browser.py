"""The landing page in a real headless Chromium, served by a real hub (`bi-ide serve`)."""

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
LIVE_S = 6.0  # a run made through the API shows within this time (poller 2 s + load headroom)


def cli(*args: str, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bi_ide.cli", *args], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=60, **kwargs)


def get_json(url: str, token: str | None = None, body: dict | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def hub(tmp_db, start_hub):
    """A hub on a store with three runs; its whole process group is killed afterwards, whatever happens."""
    cli("init", "--db", str(tmp_db))
    with Store(tmp_db) as store:  # closed before the hub starts: one process writes the file
        store.create_run("alpha", preset="tiny")
        store.create_run("beta", preset="tiny", status="running")
        done = store.create_run("gamma", preset="tiny", status="running")
        store.update_run(done["id"], status="done")
    proc = start_hub(tmp_db)
    yield {"url": proc.url, "token": (tmp_db.parent / "hub.token").read_text().strip(), "log": proc.log_path}


@pytest.fixture
def page(browser, hub):
    """A tab on the hub's index that records every request leaving 127.0.0.1."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.outside = []
    tab.on("request", lambda r: None if r.url.startswith((hub["url"], "data:", "blob:")) else tab.outside.append(r.url))
    tab.goto(hub["url"] + "/")
    tab.locator(".kpi-runs-running").wait_for(timeout=30_000)
    yield tab
    context.close()


def kpi(tab, key: str) -> str:
    """The value on a KPI card: the last div in its shadow DOM (the first is the title)."""
    return tab.locator(f".kpi-{key} div").all_inner_texts()[-1].strip()


def background_luminance(tab) -> float:
    rgb = tab.evaluate("getComputedStyle(document.body).backgroundColor")  # 'rgb(r, g, b)'
    r, g, b = (int(x) for x in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_overview_shows_counts_title_and_switches_theme(page, hub, tmp_path):
    assert page.title() == "Overview"
    assert "BI-IDE Workbench" in page.locator("#header").inner_text()
    assert kpi(page, "runs") == "3"
    assert (kpi(page, "runs-queued"), kpi(page, "runs-running"), kpi(page, "runs-done")) == ("1", "1", "1")
    assert kpi(page, "hub") == "running" and kpi(page, "schema").isdigit()
    assert page.get_by_text("gamma").first.is_visible()  # the recent-runs table
    assert page.locator(".bi-nav a", has_text="Overview").count() == 1
    page.screenshot(path=tmp_path / "overview-light.png", full_page=True)
    light = background_luminance(page)

    page.locator("#theme-switch").click()  # the template reloads the page with ?theme=dark
    page.wait_for_url("**theme=dark**", timeout=15_000)
    page.locator(".kpi-runs-running").wait_for(timeout=30_000)
    dark = background_luminance(page)
    page.screenshot(path=tmp_path / "overview-dark.png", full_page=True)
    assert light > 0.8 and dark < 0.3, (light, dark)
    assert kpi(page, "runs") == "3"
    assert page.outside == [], "the page must render offline: no request may leave the hub"
    log = hub["log"].read_text()  # two sessions so far (light, then dark): one poller, no errors
    assert "Traceback" not in log and "already scheduled" not in log, log


def test_a_run_made_through_the_api_appears_while_the_page_is_open(page, hub):
    assert kpi(page, "runs-running") == "1"
    get_json(f"{hub['url']}/api/v1/runs", hub["token"], {"name": "live-run", "status": "running"})
    started = time.monotonic()
    page.get_by_text("live-run").first.wait_for(timeout=LIVE_S * 1000)
    deadline = started + LIVE_S
    while kpi(page, "runs-running") != "2" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (kpi(page, "runs-running"), kpi(page, "runs")) == ("2", "4")
