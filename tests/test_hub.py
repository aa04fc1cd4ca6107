"""The hub's REST API, against a real `bi-ide serve` process on loopback."""

from __future__ import annotations

import json
import uuid

import polars as pl
import pytest
import requests

import bi_ide
from bi_ide.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    HubUnavailableError,
    NotFoundError,
    StoreLockedError,
    ValidationError,
)
from bi_ide.hub.client import HubClient
from bi_ide.hub.process import HubProcess, free_port
from bi_ide.store import Store
from bi_ide.store.migrate import load_migrations

LATEST = len(load_migrations())  # the newest schema version this checkout knows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    db = tmp_path_factory.mktemp("hub") / "workbench.duckdb"
    with Store(db) as store:
        tokens = {role: store.create_token(f"test {role}", role)[1] for role in ("viewer", "developer", "admin")}
    with HubProcess(db) as proc:
        proc.tokens = tokens
        yield proc


def call(hub, method, path, role="developer", **kwargs):
    headers = kwargs.pop("headers", {})
    if role:
        headers["Authorization"] = f"Bearer {hub.tokens[role]}"
    return requests.request(method, f"{hub.url}/api/v1{path}", headers=headers, timeout=30, **kwargs)


def new_run(hub, name="run"):
    r = call(hub, "POST", "/runs", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def points_in(hub, run_id):
    return len(call(hub, "GET", f"/runs/{run_id}/metrics", role="viewer").json()["columns"]["step"])


def test_health_needs_no_token(hub):
    r = requests.get(f"{hub.url}/api/v1/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"


@pytest.mark.parametrize(
    "headers, status, error",
    [
        ({}, 401, "missing API token"),
        ({"Authorization": "Bearer bi_wrong"}, 401, "unknown API token"),
        ({"Authorization": "Basic abc"}, 401, "missing API token"),
    ],
)
def test_bad_or_missing_token_is_401(hub, headers, status, error):
    r = call(hub, "POST", "/runs", role=None, headers=headers, json={"name": "x"})
    assert r.status_code == status and error in r.json()["message"]


def test_viewer_may_read_but_not_write(hub):
    assert call(hub, "GET", "/runs", role="viewer").status_code == 200
    r = call(hub, "POST", "/runs", role="viewer", json={"name": "x"})
    assert r.status_code == 403 and "needs developer" in r.json()["message"]
    assert call(hub, "GET", "/tokens", role="developer").status_code == 403


def test_reads_need_a_token_too(hub):
    assert call(hub, "GET", "/runs", role=None).status_code == 401


def test_create_update_list_get_run(hub):
    run_id = new_run(hub, "api-run")
    r = call(hub, "PATCH", f"/runs/{run_id}", json={"status": "running", "device": "cpu"})
    assert r.status_code == 200 and r.json()["status"] == "running"
    r = call(hub, "GET", f"/runs/{run_id}", role="viewer")
    assert r.json()["device"] == "cpu"
    listed = call(hub, "GET", "/runs?status=running", role="viewer").json()
    assert run_id in listed["columns"]["id"]
    assert call(hub, "PATCH", f"/runs/{run_id}", json={"status": "queued"}).status_code == 409
    assert call(hub, "GET", "/runs/doesnotexist", role="viewer").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (json.dumps({"name": 5}).encode(), "name"),
        (json.dumps({"name": "x", "colour": "red"}).encode(), "colour"),
        (json.dumps({"name": "x", "config": "not-an-object"}).encode(), "config"),
        (json.dumps({"name": "x", "status": "paused"}).encode(), "status"),
    ],
)
def test_malformed_or_mistyped_body_is_400_with_the_field(hub, body, field):
    before = len(call(hub, "GET", "/runs?limit=10000", role="viewer").json()["columns"]["id"])
    r = call(hub, "POST", "/runs", data=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
    assert len(call(hub, "GET", "/runs?limit=10000", role="viewer").json()["columns"]["id"]) == before


@pytest.mark.parametrize(
    "batch, field",
    [
        ({"step": [0, 1, 2], "name": ["loss"] * 3, "value": [1.0, "x", 2.0]}, "value"),
        ({"step": [0, 1.5, 2], "name": ["loss"] * 3, "value": [1.0, 1.0, 2.0]}, "step"),
        ({"step": [0, 1], "name": ["loss"] * 2}, "value"),
        ({"step": [0, 1], "name": ["loss"] * 2, "value": 3}, "value"),
        ({"step": [0, 1], "name": ["loss"] * 2, "value": [1.0]}, "value"),
    ],
)
def test_bad_metrics_batch_is_400_and_writes_nothing(hub, batch, field):
    run_id = new_run(hub)
    r = call(hub, "POST", f"/runs/{run_id}/metrics", json=batch)
    assert r.status_code == 400 and r.json()["field"] == field, r.text
    assert points_in(hub, run_id) == 0


def test_metrics_for_unknown_run_is_404(hub):
    r = call(hub, "POST", "/runs/ghost/metrics", json={"step": [0], "name": ["loss"], "value": [1.0]})
    assert r.status_code == 404


def test_retried_batch_is_stored_once(hub):
    run_id = new_run(hub)
    batch = {"step": [0, 1, 2], "name": ["loss"] * 3, "value": [3.0, 2.0, 1.0]}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = call(hub, "POST", f"/runs/{run_id}/metrics", json=batch, headers=dict(key))
    again = call(hub, "POST", f"/runs/{run_id}/metrics", json=batch, headers=dict(key))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {"rows": 3, "duplicate": True}
    assert points_in(hub, run_id) == 3


def test_body_over_the_limit_is_413(hub):
    run_id = new_run(hub)
    body = b'{"step": [' + b"0," * (9 << 20) + b'0], "name": [], "value": []}'
    r = call(hub, "POST", f"/runs/{run_id}/metrics", data=body)
    assert r.status_code == 413 and "limit" in r.json()["message"]
    assert points_in(hub, run_id) == 0


def test_rate_limit_is_429_per_token(hub):
    admin = HubClient(hub.url, hub.tokens["admin"])
    _, secret = admin.create_token("burst tester", "viewer")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {secret}"
    codes = [session.get(f"{hub.url}/api/v1/summary", timeout=10).status_code for _ in range(150)]
    assert 429 in codes and codes[0] == 200
    limited = session.get(f"{hub.url}/api/v1/summary", timeout=10)
    if limited.status_code == 429:
        assert int(limited.headers["Retry-After"]) >= 1
    # Other tokens are not affected.
    assert call(hub, "GET", "/summary", role="viewer").status_code == 200


def test_client_speaks_the_store_api(hub):
    client = bi_ide.connect(hub=hub.url, token=hub.tokens["developer"])
    assert isinstance(client, HubClient)
    run = client.create_run("through-hub", config={"preset": "tiny"})
    assert client.get_run(run["id"])["config"] == {"preset": "tiny"}
    steps = list(range(1000))
    batch = pl.DataFrame({"step": steps, "name": ["loss"] * 1000, "value": [1000.0 - s for s in steps]})
    assert client.write_metrics(batch, run_id=run["id"]) == {"rows": 1000, "duplicate": False}
    full = client.read_metrics(run["id"], ["loss"])
    assert full["step"].to_list() == steps and full["time"].dtype == pl.Datetime("us", "UTC")
    down = client.read_metrics(run["id"], ["loss"], points=10)
    assert len(down) == 10 and down["min"].min() == 1.0 and down["max"].max() == 1000.0
    assert client.update_run(run["id"], status="running")["status"] == "running"
    assert run["id"] in client.list_runs(status="running")["id"].to_list()
    assert client.summary()["runs"]["running"] >= 1


def test_client_raises_the_store_errors(hub):
    client = HubClient(hub.url, hub.tokens["developer"])
    with pytest.raises(NotFoundError):
        client.get_run("nope")
    with pytest.raises(ValidationError):
        client.create_run("x", status="paused")
    run = client.create_run("done")
    client.update_run(run["id"], status="running")
    client.update_run(run["id"], status="done")
    with pytest.raises(ConflictError):
        client.update_run(run["id"], status="running")
    with pytest.raises(ForbiddenError):
        HubClient(hub.url, hub.tokens["viewer"]).create_run("x")
    with pytest.raises(AuthError):
        HubClient(hub.url, "bi_wrong").list_runs()


def test_revoked_token_stops_working(hub):
    admin = HubClient(hub.url, hub.tokens["admin"])
    token_id, secret = admin.create_token("short-lived", "developer")
    worker = HubClient(hub.url, secret)
    worker.create_run("ok")
    admin.revoke_token(token_id)
    with pytest.raises(AuthError, match="revoked"):
        worker.create_run("refused")


def test_hub_holds_the_file(hub):
    with pytest.raises(StoreLockedError, match="bi-ide serve"):
        Store(hub.db)


def test_backup_through_the_hub(hub):
    path = HubClient(hub.url, hub.tokens["admin"]).backup("nightly.duckdb")
    assert path.name == "nightly.duckdb" and path.parent == hub.db.parent / "backups"
    with Store(path, read_only=True) as copy:
        assert copy.schema_version() == LATEST
    r = call(hub, "POST", "/admin/backup", role="admin", json={"name": "../escape.duckdb"})
    assert r.status_code == 400 and "plain file name" in r.json()["message"]


def test_unreachable_hub_is_a_clear_error():
    client = HubClient(f"http://127.0.0.1:{free_port()}", "bi_x", retries=1)
    with pytest.raises(HubUnavailableError, match="bi-ide serve"):
        client.write_metrics({"step": [0], "name": ["loss"], "value": [1.0]}, run_id="r")


def test_connect_follows_the_environment(hub, monkeypatch, tmp_path):
    monkeypatch.setenv("BI_IDE_DB", str(tmp_path / "env.duckdb"))
    embedded = bi_ide.connect()
    assert isinstance(embedded, Store) and embedded.path == tmp_path / "env.duckdb"
    assert bi_ide.connect() is embedded  # one Store per file per process
    embedded.close()
    monkeypatch.setenv("BI_IDE_HUB", hub.url)
    monkeypatch.setenv("BI_IDE_TOKEN", hub.tokens["viewer"])
    remote = bi_ide.connect()
    assert isinstance(remote, HubClient) and remote.summary()["schema_version"] == LATEST
