"""The store: migrations, runs, metric batches, downsampling, tokens, lock errors, backup."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import polars as pl
import pyarrow as pa
import pytest

from bi_ide.errors import (
    AuthError,
    ConflictError,
    MigrationError,
    NotFoundError,
    SchemaVersionError,
    StoreLockedError,
    ValidationError,
)
from bi_ide.store import Store
from bi_ide.store.migrate import load_migrations

LATEST = len(load_migrations())  # the newest schema version this checkout knows


@pytest.fixture
def mem():
    with Store(memory=True) as s:
        yield s


@pytest.fixture
def run(mem):
    return mem.create_run("tiny")


def points(n, name="loss", start=0):
    return {"step": list(range(start, start + n)), "name": [name] * n, "value": [float(i) for i in range(n)]}


def count(store, table="metric_points"):
    return store.sql(f"SELECT count(*) AS n FROM {table}")["n"][0]


# -- migrations ----------------------------------------------------------------------------
def test_fresh_store_has_every_table(mem):
    assert mem.schema_version() == LATEST
    for table in ("runs", "metric_points", "metric_series", "metrics", "checkpoints", "models", "workers",
                  "worker_samples", "gpu_samples", "alerts", "worker_commands", "pipeline_runs",
                  "pipeline_steps", "schedules", "council_members", "council_decisions", "council_votes",
                  "learning_log", "api_tokens", "users", "schema_migrations"):
        assert table in mem.tables()


def test_migrations_upgrade_an_existing_file_and_keep_its_data(tmp_path):
    path = tmp_path / "old.duckdb"
    with Store(path, migrate=False) as old:
        assert old.migrate(target=1) == [1]
        run_id = old.create_run("before-upgrade")["id"]
        old.write_metrics(points(5), run_id=run_id)
    with Store(path, migrate=False) as s:
        assert s.migrate() == list(range(2, LATEST + 1))
        assert s.migrate() == []
        assert s.get_run(run_id)["name"] == "before-upgrade"
        assert len(s.read_metrics(run_id)) == 5
        versions = s.sql("SELECT version, name FROM schema_migrations ORDER BY version")
        assert versions["version"].to_list() == list(range(1, LATEST + 1))


def _write_migrations(folder, files):
    folder.mkdir()
    for name, sql in files.items():
        (folder / name).write_text(textwrap.dedent(sql))


def test_failed_migration_rolls_back_whole(tmp_path):
    folder = tmp_path / "migrations"
    _write_migrations(folder, {
        "0001_a.sql": "CREATE TABLE a (x INTEGER);",
        "0002_b.sql": "CREATE TABLE b (x INTEGER); INSERT INTO a VALUES (1); CREATE TABLE oops (;",
    })
    with Store(memory=True, migrate=False) as s:
        with pytest.raises(MigrationError, match="0002_b.sql failed and was rolled back"):
            s.migrate(folder=folder)
        assert s.schema_version() == 1
        assert "b" not in s.tables()
        assert count(s, "a") == 0


def test_edited_migration_is_refused(tmp_path):
    folder = tmp_path / "migrations"
    _write_migrations(folder, {"0001_a.sql": "CREATE TABLE a (x INTEGER);"})
    with Store(memory=True, migrate=False) as s:
        s.migrate(folder=folder)
        (folder / "0001_a.sql").write_text("CREATE TABLE a (x BIGINT);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            s.migrate(folder=folder)


def test_gap_in_migration_numbers_is_refused(tmp_path):
    folder = tmp_path / "migrations"
    _write_migrations(folder, {"0001_a.sql": "SELECT 1;", "0003_c.sql": "SELECT 1;"})
    with Store(memory=True, migrate=False) as s, pytest.raises(MigrationError, match="without gaps"):
        s.migrate(folder=folder)


def test_store_from_a_newer_workbench_is_refused(tmp_path):
    path = tmp_path / "new.duckdb"
    with Store(path) as s, s.transaction() as cur:
        cur.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x', now())")
    with pytest.raises(SchemaVersionError, match="schema version 99.*update this workbench"):
        Store(path)


# -- runs ---------------------------------------------------------------------------------
def test_run_lifecycle(mem, run):
    assert run["status"] == "queued" and run["started_at"] is None
    running = mem.update_run(run["id"], status="running", device="cpu")
    assert running["started_at"] is not None and running["device"] == "cpu"
    done = mem.update_run(run["id"], status="done")
    assert done["finished_at"] is not None
    with pytest.raises(ConflictError, match="is done and cannot become running"):
        mem.update_run(run["id"], status="running")


def test_list_runs_filters(mem):
    a = mem.create_run("a")
    mem.create_run("b")
    mem.update_run(a["id"], status="running")
    assert mem.list_runs(status="running")["name"].to_list() == ["a"]
    assert len(mem.list_runs()) == 2


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda s, r: s.update_run(r, colour="red"), ValidationError, "cannot update run field"),
        (lambda s, r: s.update_run(r, status="paused"), ValidationError, "not one of"),
        (lambda s, r: s.update_run("nope", status="running"), NotFoundError, "no run with id 'nope'"),
        (lambda s, r: s.create_run("x" * 201), ValidationError, "1 to 200 characters"),
        (lambda s, r: s.create_run("x", config={"f": object()}), ValidationError, "not JSON"),
        (lambda s, r: s.list_runs(limit=0), ValidationError, "limit"),
    ],
)
def test_bad_run_input_is_refused(mem, run, call, error, match):
    with pytest.raises(error, match=match):
        call(mem, run["id"])


def test_config_round_trips_as_json(mem):
    run = mem.create_run("cfg", config={"preset": "tiny", "lr": 3e-4})
    assert mem.get_run(run["id"])["config"] == {"lr": 3e-4, "preset": "tiny"}


# -- metrics ------------------------------------------------------------------------------
def test_write_and_read_metrics(mem, run):
    assert mem.write_metrics(points(10), run_id=run["id"]) == {"rows": 10, "duplicate": False}
    mem.write_metrics(points(10, "lr"), run_id=run["id"])
    df = mem.read_metrics(run["id"], ["loss"])
    assert df["step"].to_list() == list(range(10))
    assert df["value"].to_list() == [float(i) for i in range(10)]
    assert mem.metric_names(run["id"]) == ["loss", "lr"]


def test_polars_and_arrow_batches(mem, run):
    df = pl.DataFrame({"run_id": [run["id"]] * 3, "step": [0, 1, 2], "name": ["acc"] * 3,
                       "value": [0.1, 0.2, 0.3], "time": [1.7e9, 1.7e9 + 1, 1.7e9 + 2]})
    mem.write_metrics(df)
    mem.write_metrics(df.to_arrow(), idempotency_key="arrow")
    assert count(mem) == 6
    first = mem.read_metrics(run["id"])["time"][0]
    assert first.timestamp() == pytest.approx(1.7e9)


def test_downsampling_keeps_min_max_and_last(mem, run):
    values = [5.0, 1.0, 9.0, 2.0, 3.0, 8.0, 0.0, 4.0]
    mem.write_metrics({"step": list(range(8)), "name": ["loss"] * 8, "value": values}, run_id=run["id"])
    df = mem.read_metrics(run["id"], ["loss"], points=2)
    # Two buckets of four steps: [5, 1, 9, 2] and [3, 8, 0, 4].
    assert df.select("step", "value", "min", "max").rows() == [(3, 2.0, 1.0, 9.0), (7, 4.0, 0.0, 8.0)]


def test_downsampling_caps_points_per_series(mem, run):
    n = 10_000
    mem.write_metrics(points(n), run_id=run["id"])
    mem.write_metrics(points(n, "lr"), run_id=run["id"])
    df = mem.read_metrics(run["id"], points=100)
    assert df.group_by("name").len()["len"].to_list() == [100, 100]
    assert df.filter(pl.col("name") == "loss")["max"].max() == n - 1


def test_retried_batch_is_stored_once(mem, run):
    first = mem.write_metrics(points(5), run_id=run["id"], idempotency_key="batch-1")
    again = mem.write_metrics(points(5), run_id=run["id"], idempotency_key="batch-1")
    assert first == {"rows": 5, "duplicate": False}
    assert again == {"rows": 5, "duplicate": True}
    assert count(mem) == 5


@pytest.mark.parametrize(
    "batch, field",
    [
        ({"step": [0, 1, True], "name": ["loss"] * 3, "value": [1.0] * 3}, "step"),
        ({"step": [0, 1, 2], "name": ["loss"] * 3, "value": [1.0, "2", 3.0]}, "value"),
        ({"step": [0, 1, 2], "name": ["loss", 5, "loss"], "value": [1.0] * 3}, "name"),
        ({"step": [0, 1, 2], "name": ["loss"] * 3, "value": [1.0, float("nan"), 3.0]}, "value"),
        ({"step": [0, -1, 2], "name": ["loss"] * 3, "value": [1.0] * 3}, "step"),
        ({"step": [0, 1, 2], "name": ["loss", "", "loss"], "value": [1.0] * 3}, "name"),
        ({"step": [0, 1, 2], "name": ["loss"] * 3, "value": [1.0] * 2}, "value"),
        ({"step": [0, 1], "name": ["loss"] * 2, "value": [1.0] * 2, "colour": ["red"] * 2}, "colour"),
        ({"name": ["loss"], "value": [1.0]}, "step"),
    ],
)
def test_bad_batch_is_rejected_whole(mem, run, batch, field):
    with pytest.raises(ValidationError) as e:
        mem.write_metrics(batch, run_id=run["id"], idempotency_key="k")
    assert e.value.field == field
    assert count(mem) == 0
    assert count(mem, "write_batches") == 0  # the key is free for a corrected retry


def test_batch_for_unknown_run_writes_nothing(mem, run):
    batch = pa.table({"run_id": [run["id"], "ghost"], "step": [0, 0], "name": ["loss"] * 2, "value": [1.0, 2.0]})
    with pytest.raises(NotFoundError, match="ghost"):
        mem.write_metrics(batch)
    assert count(mem) == 0 and count(mem, "metric_series") == 0


# -- tokens -------------------------------------------------------------------------------
def test_tokens_are_stored_hashed_and_revocable(tmp_path):
    path = tmp_path / "t.duckdb"
    with Store(path) as s:
        token_id, secret = s.create_token("agent", "developer")
        assert s.verify_token(secret) == {"id": token_id, "name": "agent", "role": "developer"}
        assert secret not in s.sql("SELECT token_hash FROM api_tokens")["token_hash"][0]
        s.revoke_token(token_id)
        with pytest.raises(AuthError, match="revoked"):
            s.verify_token(secret)
        with pytest.raises(AuthError, match="unknown"):
            s.verify_token("bi_nothing")
        with pytest.raises(ValidationError, match="role"):
            s.create_token("x", "root")
    assert secret.encode() not in path.read_bytes()


# -- one process owns the file ----------------------------------------------------------
HOLD = "import sys, time; from bi_ide.store import Store; s = Store(sys.argv[1]); print('held', flush=True); time.sleep(60)"


def test_second_process_gets_a_clear_lock_error(tmp_path):
    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(StoreLockedError) as e:
            Store(path)
        assert time.monotonic() - started < 5  # an error, not a hang
        message = str(e.value)
        assert str(path) in message and f"PID {holder.pid}" in message
        assert "bi-ide serve" in message and "BI_IDE_HUB" in message
    finally:
        holder.kill()
        holder.wait()


# -- backup and restore -------------------------------------------------------------------
def test_backup_and_restore(tmp_path):
    path, copy = tmp_path / "w.duckdb", tmp_path / "backups" / "b.duckdb"
    with Store(path) as s:
        run_id = s.create_run("kept")["id"]
        s.write_metrics(points(100), run_id=run_id)
        s.backup(copy)
        s.create_run("after-backup")
    Store.restore(copy, path)
    with Store(path) as s:
        assert s.list_runs()["name"].to_list() == ["kept"]
        assert len(s.read_metrics(run_id)) == 100
        assert s.schema_version() == LATEST


def test_restore_refuses_a_file_that_is_not_a_store(tmp_path):
    other = tmp_path / "other.duckdb"
    with Store(other, migrate=False) as s, s.transaction() as cur:
        cur.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(ValidationError, match="not a workbench store"):
        Store.restore(other, tmp_path / "w.duckdb")
    assert not (tmp_path / "w.duckdb").exists()


def test_restore_refuses_a_store_held_by_another_process(tmp_path):
    path, copy = tmp_path / "w.duckdb", tmp_path / "b.duckdb"
    with Store(path) as s:
        s.backup(copy)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError):
            Store.restore(copy, path)
    finally:
        holder.kill()
        holder.wait()


def test_points_of_many_runs_and_names_land_in_their_own_series(mem):
    runs = [mem.create_run(f"r{i}")["id"] for i in range(3)]
    names = ["loss", "lr", "grad_norm", "val_bpb"]
    # Interleaved in the batch; each value encodes its run, name and step.
    rows = [(r, s, n, 100.0 * ri + 10.0 * ni + s) for s in range(5) for ri, r in enumerate(runs)
            for ni, n in enumerate(reversed(names))]
    batch = pl.DataFrame(rows, schema=["run_id", "step", "name", "value"], orient="row")
    mem.write_metrics(batch.head(30))
    mem.write_metrics(batch.tail(30))  # some series exist now, some are new
    for ri, r in enumerate(runs):
        df = mem.read_metrics(r)
        assert sorted(set(df["name"])) == sorted(names)
        for ni, n in enumerate(reversed(names)):
            got = df.filter(pl.col("name") == n)
            assert got["step"].to_list() == list(range(5))
            assert got["value"].to_list() == [100.0 * ri + 10.0 * ni + s for s in range(5)]
