"""The training dashboard without a browser: its state, filters, curves, progress, permissions, argv."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta

import holoviews as hv
import polars as pl
import pytest

from bi_ide.dashboards.poller import Poller
from bi_ide.dashboards.training import TrainingPage, chart
from bi_ide.dashboards.training_state import (
    ADMINS_ENV,
    CURVE_METRICS,
    DEVELOPERS_ENV,
    HUB_URL_ENV,
    RunFilter,
    Training,
    control_refusal,
    hub_url,
    run_progress,
    train_command,
)
from bi_ide.training.config import RECIPES

T0 = 1_700_000_000.0  # epoch seconds of the first metric point


def log_points(store, run_id: str, steps: range, seconds_per_step: float = 0.5, loss0: float = 4.0) -> None:
    """Training metrics every step of ``steps``, and val metrics at the last one."""
    n = len(steps)
    names = ["loss", "lr", "tokens_per_s"]
    store.write_metrics({
        "step": [s for s in steps for _ in names],
        "name": names * n,
        "value": [v for s in steps for v in (loss0 / (1 + s), 1e-3, 1000.0)],
        "time": [T0 + s * seconds_per_step for s in steps for _ in names],
    }, run_id=run_id)
    last = steps[-1]
    store.write_metrics({"step": [last] * 3, "name": ["val_loss", "val_bpb_arabic", "val_bpb_code"],
                         "value": [3.0, 1.5, 1.2], "time": [T0 + last * seconds_per_step] * 3}, run_id=run_id)


@pytest.fixture
def runs(store) -> dict[str, str]:
    """Two train runs with curves: 'alpha' done (tiny), 'beta' running at step 40 of 100 (small); a queued one."""
    alpha = store.create_run("alpha", preset="tiny", status="running")["id"]
    log_points(store, alpha, range(0, 60, 5))
    store.update_run(alpha, status="done", step=55, total_steps=55)
    beta = store.create_run("beta-long", preset="small", status="running",
                            config={"batch_size": 8, "grad_accum": 1, "seq_len": 64})["id"]
    log_points(store, beta, range(0, 41, 5), seconds_per_step=2.0)
    store.update_run(beta, step=40, total_steps=100)
    gamma = store.create_run("gamma", preset="tiny")["id"]
    store.add_checkpoint(alpha, step=55, path="/tmp/ckpt/alpha-last", kind="last", loss=0.9)
    store.register_model("bi-tiny", run_id=alpha, params_count=1000)
    return {"alpha": alpha, "beta": beta, "gamma": gamma}


@pytest.fixture
def training(store, runs) -> Training:
    return Training(store=store).refresh()


# -- state ------------------------------------------------------------------------------------
def test_refresh_lists_train_runs_with_progress_of_running_ones(training, runs):
    df = training.runs
    assert df["name"].to_list() == ["gamma", "beta-long", "alpha"]  # newest first
    beta = df.filter(pl.col("id") == runs["beta"]).row(0, named=True)
    assert (beta["step"], beta["total_steps"], beta["tokens_per_step"]) == (40, 100, 512)
    assert df.filter(pl.col("id") == runs["gamma"])["step"][0] == 0  # list_runs carries every run's step
    assert training.models["name"].to_list() == ["bi-tiny"]
    assert training.metrics == {} and training.error == ""  # no tab watches a run yet


def test_watched_runs_get_downsampled_curves_and_checkpoints(store, training, runs):
    training.watch_runs("tab", [runs["alpha"], runs["beta"]])
    alpha = training.metrics[runs["alpha"]]
    assert set(alpha["name"]) == {"loss", "lr", "tokens_per_s", "val_loss", "val_bpb_arabic", "val_bpb_code"}
    assert set(alpha["name"]) <= set(CURVE_METRICS)
    assert training.checkpoints[runs["alpha"]]["kind"].to_list() == ["last"]
    # a long running series comes back bucketed to the page's point budget, min and max kept
    log_points(store, runs["beta"], range(45, 5_000, 5))
    training.points = 50
    training.refresh()
    loss = training.metrics[runs["beta"]].filter(pl.col("name") == "loss")
    assert loss.height <= 50 and loss["max"].max() == pytest.approx(4.0)


def test_refresh_rereads_running_runs_only(store, training, runs):
    training.watch_runs("tab", [runs["alpha"], runs["beta"]])
    training.refresh()  # watched runs get their step and total_steps too
    seen = []
    training.param.watch(lambda *events: seen.append({e.name for e in events}), ["metrics", "runs"])
    training.refresh()
    assert seen == []  # nothing new: no watcher fires, no tab redraws
    log_points(store, runs["beta"], range(45, 51, 5))
    reads = []
    original = store.read_metrics
    store.read_metrics = lambda run_id, *a, **k: reads.append(run_id) or original(run_id, *a, **k)
    training.refresh()
    assert reads == [runs["beta"]]  # the finished run's curves are not read again
    assert seen == [{"metrics"}]
    assert training.metrics[runs["beta"]].filter(pl.col("name") == "loss")["step"].max() == 50


def test_unwatched_runs_are_dropped_and_tabs_share_reads(training, runs):
    training.watch_runs("tab-1", [runs["alpha"]])
    training.watch_runs("tab-2", [runs["alpha"], runs["beta"]])
    assert set(training.metrics) == {runs["alpha"], runs["beta"]}
    training.unwatch("tab-2")
    training.refresh()
    assert set(training.metrics) == {runs["alpha"]}


def test_poller_refreshes_the_shared_training_state(store, runs):
    poller = Poller()
    state = poller.shared("training", lambda: Training(store=store))
    store.create_run("late")
    asyncio.run(poller.tick())
    assert "late" in state.runs["name"].to_list()


def test_a_failed_read_keeps_the_runs_and_says_why(training, store):
    store.close()
    training.refresh()
    assert "closed" in training.error and training.runs.height == 3


def test_stop_sets_stop_requested(training, store, runs):
    training.request_stop(runs["beta"])
    assert store.get_run(runs["beta"])["stop_requested"] is True


def test_promote_deploys_and_archives_the_previous_version(training, store, runs):
    first = training.models["id"][0]
    training.promote(first)
    second = store.register_model("bi-tiny", run_id=runs["alpha"])["id"]
    training.promote(second)
    status = dict(zip(training.models["id"], training.models["status"], strict=True))
    assert status == {first: "archived", second: "deployed"}


# -- filters ----------------------------------------------------------------------------------
def test_filters_by_status_preset_and_name(training):
    f = RunFilter()
    f.presets_from(training.runs)
    assert f.param.preset.objects == ["all", "small", "tiny"]
    assert f.apply_to(training.runs).height == 3
    f.status = "running"
    assert f.apply_to(training.runs)["name"].to_list() == ["beta-long"]
    f.param.update(status="all", preset="tiny")
    assert f.apply_to(training.runs)["name"].to_list() == ["gamma", "alpha"]
    f.param.update(preset="all", search="LONG")
    assert f.apply_to(training.runs)["name"].to_list() == ["beta-long"]
    f.search = "no such run"
    assert f.apply_to(training.runs).is_empty()


# -- curves -----------------------------------------------------------------------------------
def curves(overlay: hv.Overlay, label_part: str = "") -> list[hv.Curve]:
    return [e for e in overlay if isinstance(e, hv.Curve) and label_part in e.label]


def test_two_runs_overlay_as_two_curves_per_series(training, runs):
    training.watch_runs("tab", [runs["alpha"], runs["beta"]])
    labels = {runs["alpha"]: "alpha", runs["beta"]: "beta-long"}
    loss = chart("loss", training.metrics, labels)
    train = curves(loss, "train")
    assert [c.label for c in train] == ["alpha · train", "beta-long · train"]
    assert len(train[1]) == 9 and train[1].dimension_values("step")[-1] == 40
    assert len(curves(loss, "val")) == 2
    assert len([e for e in loss if isinstance(e, hv.Area)]) == 2  # a min-max band per run
    assert [c.label for c in curves(chart("lr", training.metrics, labels))] == ["alpha", "beta-long"]
    bpb = chart("bpb", training.metrics, labels)
    assert len(curves(bpb)) == 6 and len(curves(bpb, "text")[0]) == 0  # no text domain yet: an empty curve


def test_no_selection_is_an_empty_chart():
    assert len(chart("loss", {}, {})) == 1


# -- progress and ETA --------------------------------------------------------------------------
def metric_rows(name: str, steps: list[int], seconds: list[float], values: list[float] | None = None) -> pl.DataFrame:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    return pl.DataFrame({"name": [name] * len(steps), "step": steps,
                         "value": values or [1.0] * len(steps), "min": 0.0, "max": 1.0,
                         "time": [t0 + timedelta(seconds=s) for s in seconds]})


def test_eta_from_recent_step_timing():
    # 10 s per step at first, then 2 s per step over the last window: the ETA follows the recent rate
    rows = metric_rows("loss", list(range(0, 200, 10)), [0, 100, 200] + [200 + 20 * i for i in range(1, 18)])
    p = run_progress({"status": "running", "step": 190, "total_steps": 400}, rows, window=10)
    assert p.seconds_per_step == pytest.approx(2.0)
    assert p.eta_s == pytest.approx(210 * 2.0)
    assert p.fraction == pytest.approx(190 / 400)


def test_eta_falls_back_to_throughput_and_is_none_when_not_running():
    rows = metric_rows("tokens_per_s", [10], [0.0], [256.0])
    run = {"status": "running", "step": 10, "total_steps": 110, "tokens_per_step": 512}
    assert run_progress(run, rows).eta_s == pytest.approx(100 * 2.0)
    assert run_progress({**run, "status": "done"}, rows).eta_s is None
    assert run_progress({"status": "running", "step": 0, "total_steps": None}, None).fraction is None


def test_progress_step_is_the_newer_of_run_and_metrics():
    rows = metric_rows("loss", [0, 10, 20], [0, 10, 20])
    p = run_progress({"status": "running", "step": 10, "total_steps": 20}, rows)
    assert (p.step, p.fraction, p.eta_s) == (20, 1.0, 0.0)


# -- who may start and stop ---------------------------------------------------------------------
@pytest.mark.parametrize(("user", "developers", "allowed"), [
    (None, None, True),  # loopback, no login configured
    ("ada", "ada, grace", True),
    ("grace", "ada,grace", True),
    ("bob", "ada,grace", False),
    ("guest", "", False),
    ("", "", False),
])
def test_control_refusal(user, developers, allowed):
    reason = control_refusal(user, developers)
    assert (reason == "") is allowed
    if not allowed:
        assert DEVELOPERS_ENV in reason and repr(user) in reason


@pytest.mark.parametrize(("user", "role", "allowed"), [
    (None, "admin", True),  # loopback, no login configured
    ("root", "admin", True),
    ("root", "developer", True),  # an admin may do what a developer may
    ("ada", "developer", True),
    ("ada", "admin", False),  # a developer is not an admin
    ("bob", "developer", False),
])
def test_control_refusal_by_role(user, role, allowed):
    reason = control_refusal(user, "ada", role=role, admins="root")
    assert (reason == "") is allowed
    if not allowed:
        assert (ADMINS_ENV if role == "admin" else DEVELOPERS_ENV) in reason
    with pytest.raises(ValueError, match="president"):
        control_refusal(user, role="president")


def test_control_refusal_reads_the_environment(monkeypatch):
    monkeypatch.setenv(DEVELOPERS_ENV, "ada")
    assert control_refusal("ada") == "" and control_refusal("bob") != ""


def test_page_disables_start_and_stop_for_non_developers(training, runs):
    page = TrainingPage(training=training, user="bob")
    assert page.start.disabled and page.stop.disabled and page.promote.disabled
    assert DEVELOPERS_ENV in page.start.description and page.why.visible
    page._on_stop()
    assert training.store.get_run(runs["beta"])["stop_requested"] is False


# -- starting a run ---------------------------------------------------------------------------
def test_train_command_sets_only_what_differs_from_the_recipe():
    config = RECIPES["debug"]()
    assert train_command(config, "debug") == [sys.executable, "-m", "bi_ide.cli", "train", "run", "--recipe", "debug"]
    config.param.update(max_steps=30, compile=True, run_name="my run", learning_rate=1e-3)
    argv = train_command(config, "debug")
    assert argv[7:] == ["--set", "run_name=my run", "--set", "max_steps=30", "--set", "learning_rate=0.001",
                        "--set", "compile=true"]


def test_train_command_round_trips_through_the_overrides_parser():
    from bi_ide.training.config import parse_overrides

    config = RECIPES["small-cpu"]()
    config.param.update(batch_size=4, dropout=0.1, device="cpu", compile=True)
    argv = train_command(config, "small-cpu")
    again = parse_overrides(RECIPES["small-cpu"](), argv[8::2])
    assert again.to_dict() == config.to_dict()


def test_hub_url_from_env_or_the_page_port(monkeypatch):
    assert hub_url("127.0.0.1:5123") == "http://127.0.0.1:5123"
    assert hub_url("[::1]:7000") == "http://127.0.0.1:7000"
    assert hub_url("localhost") == "http://127.0.0.1:5006"
    monkeypatch.setenv(HUB_URL_ENV, "http://hub.lan:5006/")
    assert hub_url("127.0.0.1:5123") == "http://hub.lan:5006"


# -- view -------------------------------------------------------------------------------------
def test_page_selects_the_newest_running_run_and_follows_the_state(training, store, runs):
    page = TrainingPage(training=training)
    assert list(page.runs.value["name"]) == ["gamma", "beta-long", "alpha"]
    assert page.filter.selected == [runs["beta"]] and page.runs.selection == [1]
    assert "beta-long" in page.progress.object and "step 40 / 100 (40%)" in page.progress.object
    assert "ETA" in page.progress.object
    assert not page.start.disabled and not page.stop.disabled  # loopback: no login, so allowed
    log_points(store, runs["beta"], range(45, 61, 5), seconds_per_step=2.0)
    store.update_run(runs["beta"], step=60)
    training.refresh()
    assert "step 60 / 100" in page.progress.object
    assert page._sent["loss"][runs["beta"]].filter(pl.col("name") == "loss")["step"].max() == 60
    page.__panel__()  # lays out without error


def test_page_table_selection_overlays_runs_and_filters_keep_it(training, runs):
    page = TrainingPage(training=training)
    page.runs.selection = [1, 2]
    assert page.filter.selected == [runs["beta"], runs["alpha"]]
    assert set(page._sent["loss"]) == {runs["beta"], runs["alpha"]}
    assert list(page.checkpoints.value["run"]) == ["alpha"]  # beta has none
    page.filter.status = "done"  # beta is filtered out of the table but stays overlaid
    assert list(page.runs.value["name"]) == ["alpha"] and page.runs.selection == [0]
    assert set(page.filter.selected) == {runs["beta"], runs["alpha"]}


def test_page_checkpoints_and_stop(training, store, runs):
    page = TrainingPage(training=training)
    page.runs.selection = [2]  # alpha
    assert list(page.checkpoints.value["kind"]) == ["last"]
    page.runs.selection = [1]  # beta, running
    page._on_stop()
    assert store.get_run(runs["beta"])["stop_requested"] is True
    assert page.stop.disabled and "stop requested" in page.progress.object
    assert "Stop requested for beta-long" in page.message.object


def test_page_promotes_the_selected_model(training, store):
    page = TrainingPage(training=training)
    assert page.promote.disabled  # nothing selected
    page.models.selection = [0]
    assert not page.promote.disabled
    page._on_promote()
    assert list(page.models.value["status"]) == ["deployed"] and page.promote.disabled


def test_page_recipe_switch_rebuilds_the_form(training):
    page = TrainingPage(training=training)
    page.recipe.value = "small-cpu"
    assert page.config.preset == "small" and page.form.object is page.config


def test_closed_page_stops_watching(training, runs):
    page = TrainingPage(training=training)
    page.close()
    assert training.watched == frozenset()
