"""The fleet's tables in an in-memory store: samples and their keys, colours, alerts, commands,
rollups, SLOs, the thermal guard and the Prometheus text."""

from __future__ import annotations

import time

import pytest

from bi_ide.errors import ConflictError, NotFoundError, ValidationError
from bi_ide.fleet import alerts, prometheus, slo, thermal
from bi_ide.fleet.commands import check_payload, execute
from bi_ide.fleet.ingest import SampleWriter


def gpu(temp=60.0, util=95.0, used=4 << 30, total=24 << 30, index=0) -> dict:
    return {"index": index, "name": "RTX 5090", "utilization": util, "temperature_c": temp, "memory_used_bytes": used,
            "memory_total_bytes": total}


def sample(t=None, **fields) -> dict:
    return {"time": t or time.time(), "cpu_percent": 12.5, "ram_percent": 40.0, "disk_percent": 50.0, **fields}


def send(store, key, *samples, worker="rtx"):
    return store.write_samples(worker, [{"key": key, "samples": list(samples)}])


def set_age(store, worker_id, seconds):
    with store.transaction() as cur:  # as if the worker had gone quiet that long ago
        cur.execute("UPDATE workers SET last_seen_at = now() - to_microseconds(?) WHERE id = ?",
                    [round(seconds * 1e6), worker_id])


@pytest.fixture
def fleet(store):
    store.register_worker("rtx", hostname="rtx-box", os="Linux", cpu_count=32, ram_bytes=128 << 30,
                          gpus=[{"index": 0, "name": "RTX 5090"}], labels={"gpu": "rtx5090"})
    return store


def test_register_is_idempotent_and_refreshes(fleet):
    again = fleet.register_worker("rtx", hostname="rtx-box", os="Linux", cpu_count=64, labels={"room": "b"})
    assert again["cpu_count"] == 64 and again["labels"] == {"room": "b"}
    assert fleet.list_workers().height == 1


def test_register_rejects_bad_input(store):
    with pytest.raises(ValidationError, match="worker_id"):
        store.register_worker("", hostname="x")
    with pytest.raises(ValidationError, match="labels"):
        store.register_worker("w", hostname="x", labels={"a": 1})


def test_a_resent_batch_is_stored_once(fleet):
    t = time.time()
    batch = [sample(t, gpus=[gpu()]), sample(t + 1, gpus=[gpu()])]
    assert send(fleet, "boot:1", *batch) == {"batches": 1, "duplicates": 0, "samples": 2, "queued_commands": 0}
    assert send(fleet, "boot:1", *batch) == {"batches": 0, "duplicates": 1, "samples": 0, "queued_commands": 0}
    # twice in one request, and beside a new one
    r = fleet.write_samples("rtx", [{"key": "boot:2", "samples": [sample(t + 2)]},
                                    {"key": "boot:2", "samples": [sample(t + 2)]},
                                    {"key": "boot:1", "samples": batch}])
    assert r == {"batches": 1, "duplicates": 1, "samples": 1, "queued_commands": 0}
    assert fleet.count_samples("rtx") == {"machine": 3, "distinct_times": 3, "gpu": 2}


@pytest.mark.parametrize("bad, match", [
    ({"key": "k", "samples": [{"cpu_percent": 1.0}]}, r"samples\[0\]\.time"),
    ({"key": "k", "samples": [sample(cpu_percent="high")]}, "cpu_percent must be a number"),
    ({"key": "k", "samples": [sample(cpu_percent=float("nan"))]}, "cpu_percent must be a number"),
    ({"key": "k", "samples": [sample(t=time.time() + 3600)]}, "not in the future"),
    ({"key": "k", "samples": [sample(gpus=[{"utilization": 5.0}])]}, r"gpus\[0\]\.index is required"),
    ({"key": "k", "samples": [sample(fan=1)]}, "unknown field"),
    ({"key": "", "samples": []}, "key must be"),
    ({"samples": []}, "must be"),
])
def test_a_bad_batch_rejects_the_whole_request(fleet, bad, match):
    good = {"key": "good", "samples": [sample()]}
    with pytest.raises(ValidationError, match=match):
        fleet.write_samples("rtx", [good, bad])
    assert fleet.count_samples()["machine"] == 0


def test_groups_of_agents_in_one_transaction(fleet):
    fleet.register_worker("laptop", hostname="laptop")
    fleet.queue_command("laptop", "ping")
    a, bad, ghost, b = fleet.write_sample_groups([
        ("rtx", [{"key": "1", "samples": [sample()]}], None),
        ("rtx", [{"key": "2", "samples": [sample(cpu_percent="x")]}], None),
        ("ghost", [{"key": "1", "samples": [sample()]}], None),
        ("laptop", [{"key": "1", "samples": [sample(), sample(time.time() - 1)]}], {"outage_s": 5, "reconnect_s": 1}),
    ])
    assert a["samples"] == 1 and b == {"batches": 1, "duplicates": 0, "samples": 2, "queued_commands": 1}
    assert isinstance(bad, ValidationError) and isinstance(ghost, NotFoundError)  # the others are stored
    assert fleet.count_samples()["machine"] == 3


def test_samples_for_an_unknown_worker(store):
    with pytest.raises(NotFoundError, match="register it first"):
        store.write_samples("ghost", [{"key": "k", "samples": [sample()]}])


def test_status_colours(fleet):
    send(fleet, "k1", sample(gpus=[gpu()]))
    assert fleet.get_worker("rtx")["status"] == "green"
    set_age(fleet, "rtx", 15)
    assert fleet.get_worker("rtx")["status"] == "yellow"
    set_age(fleet, "rtx", 45)
    assert fleet.get_worker("rtx")["status"] == "red"
    send(fleet, "k2", sample(gpus=[gpu(temp=90.0)]))  # heard from again, but its GPU is on fire
    alerts.evaluate(fleet)
    assert fleet.get_worker("rtx")["status"] == "red"
    send(fleet, "k3", sample(gpus=[gpu(temp=60.0)]))
    alerts.evaluate(fleet)
    assert fleet.get_worker("rtx")["status"] == "green"


def test_alert_rules_open_dedupe_and_resolve(fleet):
    send(fleet, "k1", sample(disk_percent=95.0, gpus=[gpu(temp=88.0, used=23 << 30)]))
    opened = alerts.evaluate(fleet)["opened"]
    assert sorted(a["rule"] for a in opened) == ["disk_full", "gpu_hot", "gpu_memory_full"]
    hot = next(a for a in opened if a["rule"] == "gpu_hot")
    assert hot["severity"] == "critical" and hot["dedup_key"] == "gpu_hot:rtx:0" and "88 °C" in hot["message"]
    assert alerts.evaluate(fleet) == {"opened": [], "resolved": []}  # still firing: no second alert
    fleet.acknowledge_alert(hot["id"], "ops")
    send(fleet, "k2", sample(gpus=[gpu(temp=60.0)]))
    resolved = alerts.evaluate(fleet)["resolved"]
    assert sorted(a["rule"] for a in resolved) == ["disk_full", "gpu_hot", "gpu_memory_full"]
    assert fleet.list_alerts(active=True).is_empty()
    with pytest.raises(ConflictError, match="already resolved"):
        fleet.acknowledge_alert(hot["id"])
    send(fleet, "k3", sample(gpus=[gpu(temp=86.0)]))
    assert [a["rule"] for a in alerts.evaluate(fleet)["opened"]] == ["gpu_hot"]  # a new episode, a new alert


def test_silent_worker_alert(fleet):
    send(fleet, "k1", sample())
    set_age(fleet, "rtx", 31)
    (opened,) = alerts.evaluate(fleet)["opened"]
    assert opened["rule"] == "worker_silent" and opened["severity"] == "error"


def test_underused_gpu_while_training(fleet):
    run = fleet.create_run("pretrain", status="running")
    fleet.record_run_process(run["id"], host="rtx-box", pid=4242)
    t = time.time() - 40
    proc = [{"gpu_index": 0, "pid": 4242, "memory_used_bytes": 1 << 30}]
    send(fleet, "k1", *[sample(t + i, gpus=[gpu(util=35.0)], processes=proc) for i in range(40)])
    assert fleet.gpu_processes("rtx")["run_id"].to_list() == [run["id"]]  # the process is the run
    assert fleet.get_worker("rtx")["runs"] == run["id"]
    (opened,) = alerts.evaluate(fleet)["opened"]
    assert opened["rule"] == "gpu_underused" and run["id"] in opened["message"]


def test_commands_lifecycle(fleet):
    first = fleet.queue_command("rtx", "ping", created_by="me")
    second = fleet.queue_command("rtx", "stop_run", {"run_id": "abc"})
    taken = fleet.next_command("rtx")
    assert taken["id"] == first["id"] and taken["status"] == "running" and taken["started_at"] is not None
    done = fleet.finish_command(first["id"], "done", result={"pong": True})
    assert done["status"] == "done" and done["result"] == {"pong": True}
    with pytest.raises(ConflictError):
        fleet.finish_command(first["id"], "failed")
    assert fleet.cancel_command(second["id"])["status"] == "cancelled"
    assert fleet.next_command("rtx") is None
    with pytest.raises(ValidationError, match="kind"):
        fleet.queue_command("rtx", "rm -rf")
    with pytest.raises(NotFoundError):
        fleet.queue_command("ghost", "ping")


def test_command_payloads_are_checked():
    assert check_payload("pipeline", {"name": "nightly", "params": {"seed": 1}})["name"] == "nightly"
    with pytest.raises(ValidationError, match="needs 'name'"):
        check_payload("pipeline", {})
    with pytest.raises(ValidationError, match="not \\['shell'\\]"):
        check_payload("ping", {"shell": "ls"})


def test_stop_run_command_sets_the_flag(fleet):
    run = fleet.create_run("long", status="running")
    status, result, error = execute({"kind": "stop_run", "payload": {"run_id": run["id"]}}, fleet, worker_id="rtx")
    assert (status, error) == ("done", None) and fleet.get_run(run["id"])["stop_requested"] is True
    status, _, error = execute({"kind": "stop_run", "payload": {"run_id": "nope"}}, fleet, worker_id="rtx")
    assert status == "failed" and "no run" in error


def test_rollup_keeps_recent_samples_and_averages_old_ones(fleet):
    old = time.time() - 3 * 3600
    old -= old % 60  # the start of a minute
    send(fleet, "old", *[sample(old + i, cpu_percent=float(i), gpus=[gpu(temp=50.0 + i)]) for i in range(120)])
    send(fleet, "new", sample())
    result = fleet.rollup_samples(3600)
    assert (result["machine_rows"], result["gpu_rows"]) == (120, 120)
    rows = fleet.sql("SELECT bucket_s, count(*) AS n, avg(cpu_percent) AS cpu FROM worker_samples "
                     "GROUP BY 1 ORDER BY 1").to_dicts()
    assert rows == [{"bucket_s": 0, "n": 1, "cpu": 12.5}, {"bucket_s": 60, "n": 2, "cpu": 59.5}]
    hottest = fleet.sql("SELECT max(temperature_c) AS t FROM gpu_samples WHERE bucket_s = 60")["t"][0]
    assert hottest == 169.0  # the minute's peak survives the rollup
    assert fleet.rollup_samples(3600)["machine_rows"] == 0  # nothing left to roll up
    with pytest.raises(ValidationError):
        fleet.rollup_samples(10)


def test_gpu_series_buckets_a_window(fleet):
    t = time.time() - 100
    send(fleet, "k", *[sample(t + i, gpus=[gpu(util=float(i))]) for i in range(100)])
    series = fleet.gpu_series(600)
    assert 0 < series.height <= 100 and series["utilization"].max() <= 99
    with pytest.raises(ValidationError, match="window_s"):
        fleet.gpu_series(1)


def test_thermal_guard_throttles_and_releases(fleet):
    run = fleet.create_run("hot-run", status="running", worker_id="rtx", device="cuda:0")
    send(fleet, "k1", sample(gpus=[gpu(temp=86.0)]))
    (change,) = thermal.guard(fleet)
    assert change["factor"] == 0.5 and "86 °C" in change["reason"]
    assert fleet.get_run(run["id"])["throttle_factor"] == 0.5
    send(fleet, "k2", sample(gpus=[gpu(temp=75.0)]))
    assert thermal.guard(fleet) == []  # between 70 and 85: stays throttled
    send(fleet, "k3", sample(gpus=[gpu(temp=69.0)]))
    assert thermal.guard(fleet)[0]["factor"] == 1.0
    log = fleet.run_throttles(run["id"])
    assert log["factor"].to_list() == [0.5, 1.0] and log["temperature_c"].to_list() == [86.0, 69.0]


def test_pacer_halves_the_rate_and_records_the_process(fleet):
    run = fleet.create_run("paced", status="running")
    slept, clock = [], [100.0]
    pacer = thermal.Pacer(sleep=slept.append, clock=lambda: clock[0])
    pacer.pace(fleet, fleet.get_run(run["id"]))
    assert fleet.get_run(run["id"])["pid"] is not None  # the run now maps to this process
    clock[0] += 3.0
    assert pacer.pace(fleet, fleet.get_run(run["id"])) == 0.0  # full rate: no pause
    fleet.set_run_throttle(run["id"], 0.5, "test")
    clock[0] += 3.0
    assert pacer.pace(fleet, fleet.get_run(run["id"])) == pytest.approx(3.0)  # work 3 s, pause 3 s: half rate
    assert slept == [pytest.approx(3.0)]


def test_slo_budgets(fleet):
    for status in ("done",) * 19 + ("failed",):
        fleet.update_run(fleet.create_run(status="running")["id"], status=status)
    fleet.write_samples("rtx", [{"key": "k", "samples": [sample()]}],
                        reconnect={"outage_s": 60.0, "reconnect_s": 4.0, "failed_attempts": 9})
    rows = {r["objective"]: r for r in slo.report(fleet)}
    done = rows["training_completion"]
    assert (done["good"], done["total"], done["current"]) == (19, 20, 0.95)
    assert done["budget_left"] == pytest.approx(0.0) and done["met"]
    assert rows["worker_reconnect"]["current"] == 1.0
    assert rows["api_availability"]["total"] == 10 and rows["api_availability"]["budget_left"] < 0
    assert rows["gpu_utilization"]["current"] is None  # no training on a GPU yet: no value, nothing spent


def test_prometheus_text(fleet):
    send(fleet, "k", sample(gpus=[gpu(temp=66.0)]))
    text = prometheus.exposition(fleet)
    assert 'bi_ide_worker_up{worker="rtx",hostname="rtx-box"} 1' in text
    assert 'bi_ide_gpu_temperature_celsius{worker="rtx",gpu="0",name="RTX 5090"} 66' in text
    assert "# TYPE bi_ide_alerts_active gauge" in text and text.endswith("\n")


def test_sample_writer_answers_each_request_and_counts(fleet):
    writer = SampleWriter(fleet)
    ok = writer.submit("rtx", [{"key": "w1", "samples": [sample()]}], None)
    ghost = writer.submit("ghost", [{"key": "w1", "samples": [sample()]}], None)
    assert ok.result(timeout=30)["samples"] == 1
    with pytest.raises(NotFoundError):
        ghost.result(timeout=30)
    text = prometheus.exposition(fleet, writer)
    assert "bi_ide_sample_write_requests_total 2" in text and "# TYPE bi_ide_sample_write_rounds_total counter" in text


def test_remove_worker(fleet):
    send(fleet, "k", sample(gpus=[gpu(temp=99.0)]))
    alerts.evaluate(fleet)
    fleet.queue_command("rtx", "ping")
    fleet.remove_worker("rtx")
    assert fleet.list_workers().is_empty() and fleet.count_samples()["machine"] == 0
    assert fleet.list_alerts(active=True).is_empty()
    assert fleet.list_commands()["status"].to_list() == ["cancelled"]
    with pytest.raises(NotFoundError):
        fleet.remove_worker("rtx")


def test_resources_totals(fleet):
    send(fleet, "k", sample(ram_used_bytes=8 << 30, gpus=[gpu(), gpu(index=1, util=55.0)]))
    r = fleet.resources()
    assert r["workers"] == 1 and r["by_status"]["green"] == 1 and r["cpu_cores"] == 32 and r["gpus"] == 2
    assert r["gpu_memory_bytes"] == 48 << 30 and r["gpu_utilization_mean"] == 75.0
