"""The bi-ide command: set-up, the store commands, tokens, runs, and serve's refusals."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from bi_ide.cli import main
from bi_ide.store import Store
from bi_ide.store.migrate import load_migrations

LATEST = len(load_migrations())  # the newest schema version this checkout knows


@pytest.fixture
def db(tmp_path):
    return tmp_path / "data" / "workbench.duckdb"


def bi(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_init_is_idempotent_and_writes_a_private_token(db):
    first = bi("init", "--db", db)
    assert "new admin token" in first.output
    token_file = db.parent / "hub.token"
    secret = token_file.read_text().strip()
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    second = bi("init", "--db", db)
    assert "(kept)" in second.output and token_file.read_text().strip() == secret
    with Store(db) as s:
        assert s.verify_token(secret)["role"] == "admin"
        assert len(s.list_tokens()) == 1
    assert secret not in first.output + second.output  # never printed


def test_db_migrate_and_info(db):
    assert f"schema version {LATEST}" in bi("db", "migrate", "--db", db).output
    assert "applied nothing" in bi("db", "migrate", "--db", db).output
    info = json.loads(bi("db", "info", "--db", db, "--json").output)
    assert info["schema_version"] == LATEST and info["runs_total"] == 0


def test_backup_and_restore_commands(db, tmp_path):
    with Store(db) as s:
        s.create_run("keep-me")
    backup = tmp_path / "b.duckdb"
    assert str(backup) in bi("db", "backup", backup, "--db", db).output
    with Store(db) as s:
        s.create_run("lost-on-restore")
    bi("db", "restore", backup, "--db", db, "--yes")
    assert "keep-me" in bi("runs", "list", "--db", db).output
    assert "lost-on-restore" not in bi("runs", "list", "--db", db).output


def test_restore_of_a_non_store_is_one_line_error(db, tmp_path):
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"not a database")
    result = bi("db", "restore", junk, "--db", db, "--yes", ok=False)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "Traceback" not in result.output


def test_token_create_list_revoke(db):
    created = bi("token", "create", "--name", "laptop agent", "--role", "viewer", "--db", db)
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("bi_")
    listed = json.loads(bi("token", "list", "--db", db, "--json").output)
    assert [t["name"] for t in listed] == ["laptop agent"] and "token_hash" not in listed[0]
    bi("token", "revoke", listed[0]["id"], "--db", db)
    assert "no active token" in bi("token", "revoke", listed[0]["id"], "--db", db, ok=False).output


@pytest.mark.parametrize(
    "args, message",
    [
        (["token", "create", "--name", "x", "--role", "root"], "'root' is not one of"),
        (["token", "create"], "Missing option '--name'"),
        (["runs", "list", "--status", "paused"], "'paused' is not one of"),
        (["runs", "list", "--limit", "0"], "0 is not in the range"),
        (["serve", "--port", "70000"], "70000 is not in the range"),
        (["db", "restore", "/no/such/file.duckdb"], "does not exist"),
    ],
)
def test_wrong_arguments_are_usage_errors(args, message):
    result = bi(*args, ok=False)
    assert result.exit_code == 2 and message in result.output


def test_serve_refuses_a_network_address_without_tokens_and_auth(db):
    bi("db", "migrate", "--db", db)
    no_tokens = bi("serve", "--db", db, "--address", "0.0.0.0", "--dry-run", ok=False)
    assert no_tokens.exit_code == 1 and "no API tokens exist" in no_tokens.output
    bi("token", "create", "--name", "fleet", "--db", db)
    no_auth = bi("serve", "--db", db, "--address", "0.0.0.0", "--dry-run", ok=False)
    assert "--basic-auth or --oauth-provider" in no_auth.output
    no_secret = bi("serve", "--db", db, "--address", "0.0.0.0", "--basic-auth", "pw", "--dry-run", ok=False)
    assert "--cookie-secret" in no_secret.output
    ok = bi("serve", "--db", db, "--address", "0.0.0.0", "--basic-auth", "pw", "--cookie-secret", "s" * 32,
            "--dry-run")
    assert "--plugins bi_ide.hub.plugin" in ok.output and "--basic-auth" in ok.output
    assert "s" * 32 not in ok.output  # the cookie secret travels in the environment, not argv


def test_serve_on_loopback_needs_no_auth(db):
    out = bi("serve", "--db", db, "--port", "5999", "--dry-run").output
    assert "--address 127.0.0.1 --port 5999" in out and "apps/overview.py" in out


@pytest.mark.slow
def test_serve_with_agent_shows_this_machine_and_stops_both(db, free_port):
    """`make up`'s serve: the hub, then (once it answers) this machine's agent; SIGTERM ends all three."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import requests

    from bi_ide.hub.wire import frame_from_json

    bi("init", "--db", db)
    token = (db.parent / "hub.token").read_text().strip()
    serve = subprocess.Popen([sys.executable, "-m", "bi_ide.cli", "serve", "--db", str(db), "--port", str(free_port),
                              "--with-agent"], stderr=subprocess.PIPE, text=True)
    try:
        workers, deadline = [], time.monotonic() + 120
        while not workers and time.monotonic() < deadline:
            time.sleep(1)
            try:
                r = requests.get(f"http://127.0.0.1:{free_port}/api/v1/workers",
                                 headers={"Authorization": f"Bearer {token}"}, timeout=5)
            except requests.ConnectionError:
                continue
            workers = frame_from_json(r.json())["hostname"].to_list() if r.ok else []
        assert socket.gethostname() in workers
        # the agent started once the hub answered: none of its requests went unanswered. The
        # worker registers before its first sample batch lands, so wait for a batch.
        availability = {"total": 0}
        while not availability["total"] and time.monotonic() < deadline:
            slos = requests.get(f"http://127.0.0.1:{free_port}/api/v1/slos",
                                headers={"Authorization": f"Bearer {token}"}, timeout=5).json()["objectives"]
            availability = next(o for o in slos if o["objective"] == "api_availability")
            time.sleep(0.5)
        assert availability["good"] == availability["total"] > 0
    finally:
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=60)
    assert serve.returncode is not None and "agent   this machine reports to the hub" in err
    with Store(db) as s:  # the hub let go of the file: nobody holds it any more
        assert s.schema_version() == LATEST
