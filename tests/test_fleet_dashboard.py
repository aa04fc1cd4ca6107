"""The GPU and workers dashboards: their states and views without a browser, then both pages in
Chromium with several real agent processes (stand-in GPUs, see test_fleet_nvml.py) reporting."""

from __future__ import annotations

import time

import pytest

from bi_ide.dashboards.gpu import GpuPage, cards_html
from bi_ide.dashboards.gpu_state import Gpus, within
from bi_ide.dashboards.training_state import DEVELOPERS_ENV
from bi_ide.dashboards.workers import WorkersPage
from bi_ide.dashboards.workers_state import Fleet
from bi_ide.fleet import alerts


def seed(store) -> None:
    """Two workers: rtx with a hot GPU (an alert), laptop with a cool one."""
    t = time.time()
    for wid, temp in (("rtx", 88.0), ("laptop", 50.0)):
        store.register_worker(wid, hostname=f"{wid}-host", os="Linux", cpu_count=8, ram_bytes=32 << 30)
        gpu = {"index": 0, "name": f"GPU of {wid}", "utilization": 80.0, "temperature_c": temp,
               "memory_used_bytes": 2 << 30, "memory_total_bytes": 8 << 30, "throttle_reasons": "sw_thermal"}
        samples = [{"time": t - 60 + i, "cpu_percent": 10.0, "gpus": [gpu]} for i in range(60)]
        store.write_samples(wid, [{"key": "k", "samples": samples}])
    alerts.evaluate(store)


@pytest.fixture
def seeded(store):
    seed(store)
    return store


def test_gpu_state_and_page(seeded):
    gpus = Gpus(store=seeded).refresh()
    assert gpus.latest.height == 2 and gpus.error == ""
    page = GpuPage(gpus=gpus)
    assert "rtx · GPU 0" in page.cards.object and "gpu-hot" in page.cards.object  # 88 °C: a red card
    assert "2 GPU(s) reporting" in page.status.object
    page.window = "24 h"
    assert gpus.window_s == 86_400  # the longest window a tab shows is read
    assert within(gpus.series, 300)["gpu"].unique().sort().to_list() == ["laptop / GPU 0", "rtx / GPU 0"]
    page.close()
    assert gpus._wanted() == 900


def test_gpu_cards_without_gpus():
    assert "No GPU is reporting" in cards_html(None)


def test_workers_state_and_page(seeded):
    fleet = Fleet(store=seeded).refresh()
    assert fleet.workers["status"].to_list() == ["green", "red"]  # laptop, rtx (its GPU is hot)
    assert fleet.alerts["rule"].to_list() == ["gpu_hot"] and fleet.resources["gpus"] == 2
    page = WorkersPage(fleet=fleet)
    assert page.cards.object.count('class="worker-card ') == 2 and "worker-red" in page.cards.object
    assert "2 workers" in page.totals.object and list(page.slos.value["objective"])[0] == "api_availability"
    page.alerts.selection = [0]
    page.ack.clicks += 1
    assert seeded.list_alerts(active=True)["status"].to_list() == ["acknowledged"]
    page.worker.value, page.kind.value, page.payload.value = "laptop", "pipeline", '{"name": "quickstart"}'
    page.queue.clicks += 1
    assert fleet.commands["kind"].to_list() == ["pipeline"] and "Queued" in page.message.object
    page.payload.value = "{not json"
    page.queue.clicks += 1
    assert "not JSON" in page.message.object
    page.commands.selection = [0]
    page.cancel.clicks += 1
    assert seeded.list_commands()["status"].to_list() == ["cancelled"]


def test_workers_page_refuses_writes_to_non_developers(seeded, monkeypatch):
    monkeypatch.setenv(DEVELOPERS_ENV, "alice")
    page = WorkersPage(fleet=Fleet(store=seeded).refresh(), user="bob")
    assert page.ack.disabled and page.queue.disabled and page.why.visible
    page.worker.value = "laptop"
    page._act(page._queue, "queued")
    assert seeded.list_commands().is_empty() and "not a developer" in page.message.object


def test_no_store_says_so():
    assert "bi-ide init" in Fleet().refresh().error and "bi-ide init" in Gpus().refresh().error


# -- in a real browser, served by a real hub, with real agents ------------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_gpu_and_workers_pages_with_three_agents(browser, tmp_path):
    from test_fleet_agent import AgentProcess, make_store, until

    from bi_ide.hub.client import HubClient
    from bi_ide.hub.process import HubProcess

    db = tmp_path / "workbench.duckdb"
    tokens = make_store(db)
    names = ("rtx-box", "win-laptop", "vps")
    with HubProcess(db, log=tmp_path / "hub.log") as hub:
        agents = [AgentProcess(hub.url, tmp_path / "agent.token", w, tmp_path, temp=t)
                  for w, t in zip(names, (62, 89, 55), strict=True)]
        context = browser.new_context(viewport={"width": 1400, "height": 1300})
        tab = context.new_page()
        try:
            with HubClient(hub.url, tokens["viewer"], retries=0) as c:
                until(lambda: c.list_workers().height == 3 and c.gpu_latest().height == 3, 60, "three agents")
                until(lambda: not c.list_alerts(active=True).is_empty(), 30, "the hot GPU's alert")
            tab.goto(hub.url + "/workers")
            cards = tab.locator(".worker-card")
            until(lambda: cards.count() == 3, 30, "three worker cards")
            assert tab.locator(".worker-red").count() == 1  # win-laptop's GPU is at 89 °C
            tab.locator(".fleet-alerts").get_by_text("gpu_hot").wait_for(timeout=10_000)
            tab.locator(".fleet-slos").get_by_text("worker_reconnect").wait_for(timeout=10_000)
            tab.wait_for_timeout(1000)
            tab.screenshot(path=str(tmp_path / "workers.png"), full_page=True)
            tab.screenshot(path="/tmp/fleet-workers.png", full_page=True)
            tab.goto(hub.url + "/gpu")
            until(lambda: tab.locator(".gpu-card").count() == 3, 30, "three GPU cards")
            assert tab.locator(".gpu-hot").count() == 1
            tab.locator(".gpu-chart-temperature_c canvas").first.wait_for(timeout=20_000)
            agents[0].set_temp(77)  # the page follows without a reload
            started = time.monotonic()
            tab.locator(".gpu-card", has_text="rtx-box").get_by_text("77 °C").wait_for(timeout=15_000)
            assert time.monotonic() - started < 10  # a sample (0.5 s) + a poll (2 s) + the browser's update
            tab.wait_for_timeout(1500)
            tab.screenshot(path="/tmp/fleet-gpu.png", full_page=True)
            assert "Traceback" not in hub.log_tail(100_000)
        finally:
            context.close()
            for a in agents:
                a.kill()
