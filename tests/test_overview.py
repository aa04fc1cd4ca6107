"""The landing page without a browser: the Overview state, the poller, the view and the template."""

from __future__ import annotations

import asyncio
import time

import pytest

from bi_ide.dashboards.overview import OverviewPage
from bi_ide.dashboards.poller import Poller
from bi_ide.dashboards.state import Overview, human_bytes, human_duration
from bi_ide.dashboards.template import Fast, dashboards, page


def make_runs(store):
    """Five runs: queued, two running, done, failed; three loss points on the failed one."""
    ids = [store.create_run(f"run-{i}", preset="tiny", status=s)["id"]
           for i, s in enumerate(["queued", "running", "running", "running", "running"])]
    store.update_run(ids[3], status="done")
    store.update_run(ids[4], status="failed", error="out of memory")
    store.write_metrics({"step": [0, 1, 2], "name": ["loss"] * 3, "value": [3.0, 2.5, 2.1]}, run_id=ids[4])
    return ids


@pytest.fixture
def overview(store) -> Overview:
    make_runs(store)
    return Overview(store=store).refresh()


@pytest.fixture
def apps_dir(tmp_path):
    """An apps/ folder with the overview, a known dashboard and one the template does not know."""
    folder = tmp_path / "apps"
    folder.mkdir()
    for name in ("overview", "training", "my_tool", "_private"):
        (folder / f"{name}.py").write_text("")
    return folder


# -- state ------------------------------------------------------------------------------------
def test_refresh_counts_runs_by_status(overview):
    assert overview.runs_by_status == {"queued": 1, "running": 2, "stopped": 0, "done": 1, "failed": 1}
    assert overview.runs_total == 5
    assert (overview.workers, overview.open_alerts, overview.metric_points) == (0, 0, 3)
    assert overview.schema_version >= 1
    assert overview.path == ":memory:" and overview.size_bytes == 0
    assert overview.hub_status == "embedded" and overview.uptime_s is None
    assert overview.error == "" and overview.updated_at == pytest.approx(time.time(), abs=5)


def test_recent_runs_are_newest_first_and_limited(store):
    make_runs(store)
    overview = Overview(store=store, recent_limit=3).refresh()
    assert overview.recent_runs["name"].to_list() == ["run-4", "run-3", "run-2"]
    assert overview.recent_runs.columns[:3] == ["name", "kind", "status"]


def test_hub_uptime_when_this_process_is_the_hub(store):
    overview = Overview(store=store, hub_started=time.time() - 125).refresh()
    assert overview.hub_status == "running"
    assert overview.uptime_s == pytest.approx(125, abs=5)


def test_refresh_sets_only_what_changed(overview, store):
    seen = []
    overview.param.watch(lambda *events: seen.append({e.name for e in events}), ["runs_total", "recent_runs"])
    overview.refresh()
    assert seen == []  # same numbers: no watcher fires, no tab redraws
    store.create_run("new")
    overview.refresh()
    assert seen == [{"runs_total", "recent_runs"}]  # one batch, both together


def test_a_failed_read_keeps_the_numbers_and_says_why(overview, store):
    store.close()
    overview.refresh()
    assert overview.hub_status == "error"
    assert "closed" in overview.error
    assert overview.runs_total == 5  # the last good numbers stay on the page


def test_no_store_is_an_error_with_the_next_step():
    overview = Overview().refresh()
    assert overview.hub_status == "error" and "bi-ide init" in overview.error


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 << 20, "3.0 MiB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


@pytest.mark.parametrize(("s", "text"), [(None, "—"), (5.4, "5 s"), (125, "2 min 5 s"), (3725, "1 h 2 min"),
                                         (90_000, "1 d 1 h")])
def test_human_duration(s, text):
    assert human_duration(s) == text


# -- poller -----------------------------------------------------------------------------------
def test_poller_shares_one_state_and_refreshes_it(store):
    poller = Poller()
    made = []
    first = poller.shared("overview", lambda: made.append(1) or Overview(store=store))
    assert poller.shared("overview", lambda: made.append(1) or Overview(store=store)) is first
    assert made == [1] and first.runs_total == 0  # refreshed once when made
    store.create_run("late")
    asyncio.run(poller.tick())
    assert first.runs_total == 1


def test_poller_keeps_going_when_one_state_fails(store, caplog):
    class Broken(Overview):
        def read(self):
            raise RuntimeError("boom")

    poller = Poller()
    poller._states["broken"] = Broken(store=store)
    good = poller.shared("overview", lambda: Overview(store=store))
    store.create_run("late")
    asyncio.run(poller.tick())
    assert good.runs_total == 1
    assert "broken dashboard state failed" in caplog.text


# -- view -------------------------------------------------------------------------------------
def test_page_shows_the_state(overview, apps_dir):
    view = OverviewPage(overview=overview, apps_dir=apps_dir)
    assert view.runs_total.value == 5
    assert {s: n.value for s, n in view.runs.items()} == overview.runs_by_status
    assert view.hub.value == "embedded" and view.size.value == "0 B" and view.uptime.value == "—"
    assert view.alerts.value == 0 and view.points.value == 3
    assert list(view.recent.value["name"]) == ["run-4", "run-3", "run-2", "run-1", "run-0"]
    assert view.recent.value["finished_at"].iloc[0].count(":") == 2  # plain UTC text, not a timestamp
    assert view.recent.disabled  # read-only
    assert not view.message.visible


def test_page_follows_the_state(overview, store, apps_dir):
    view = OverviewPage(overview=overview, apps_dir=apps_dir)
    store.create_run("live", status="running")
    overview.refresh()
    assert view.runs["running"].value == 3 and view.runs_total.value == 6
    assert view.recent.value["name"].iloc[0] == "live"
    overview.param.update(open_alerts=2, hub_status="error", error="the store is held by PID 7")
    assert view.alerts.value == 2
    assert view.message.visible and "PID 7" in view.message.object


def test_closed_page_stops_following(overview, store, apps_dir):
    view = OverviewPage(overview=overview, apps_dir=apps_dir)
    view.close()
    store.create_run("after")
    overview.refresh()
    assert view.runs_total.value == 5


def test_page_renders_with_links_to_the_other_dashboards(overview, apps_dir):
    view = OverviewPage(overview=overview, apps_dir=apps_dir)
    html = view.links().object
    assert 'href="./training"' in html and "My Tool" in html
    assert "./overview" not in html and "_private" not in html
    view.__panel__()  # lays out without error


# -- template ---------------------------------------------------------------------------------
def test_dashboards_lists_existing_apps_known_first(apps_dir):
    assert [d.name for d in dashboards(apps_dir)] == ["overview", "training", "my_tool"]
    assert dashboards(apps_dir)[1].href("dark") == "./training?theme=dark"


def test_page_template_has_title_nav_toggle_and_no_internet_font(overview, apps_dir):
    tpl = page(OverviewPage(overview=overview, apps_dir=apps_dir), title="Overview", active="overview",
               apps_dir=apps_dir)
    assert tpl.site == "BI-IDE Workbench" and tpl.title == "Overview"
    assert tpl.theme_toggle and tpl.design is Fast
    nav = tpl.sidebar[0].object
    assert 'aria-current="page"' in nav and "./training" in nav
    resources = str(tpl.resolve_resources(cdn=False))
    assert "googleapis" not in resources and "fast_design.js" in resources
