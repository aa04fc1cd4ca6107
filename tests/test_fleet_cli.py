"""`bi-ide agent install-service`, `workers`, `alerts`, `commands` and `slo` on a store file."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from bi_ide.cli import main
from bi_ide.fleet import alerts
from bi_ide.store import Store


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "agent token"  # a space, to check the quoting
    path.write_text("bi_secret\n")
    return path


@pytest.mark.parametrize("platform, check", [
    ("linux", lambda text: "Restart=always" in text and "ExecStart=" in text and "WantedBy=default.target" in text),
    ("macos", lambda text: "<key>KeepAlive</key>" in text and "<string>run</string>" in text),
    ("windows", lambda text: "<BootTrigger>" in text and "<RestartOnFailure>" in text),
])
def test_install_service_writes_a_definition(runner, tmp_path, token_file, platform, check):
    out = tmp_path / f"agent.{platform}"
    r = runner.invoke(main, ["agent", "install-service", "--platform", platform, "--hub", "http://rtx-box:5006",
                             "--token-file", str(token_file), "--worker-id", "rtx", "--label", "gpu=rtx5090",
                             "--output", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-16" if platform == "windows" else "utf-8")
    assert check(text) and "bi_secret" not in text  # the token stays in its file
    assert "http://rtx-box:5006" in text and "gpu=rtx5090" in text and "turn it on with" in r.output
    if platform != "linux":
        ET.fromstring(text.encode("utf-16" if platform == "windows" else "utf-8"))  # well-formed XML
    else:
        assert f'"{token_file}"' in text  # the path with a space is quoted for systemd


def test_install_service_needs_the_token_file(runner, tmp_path):
    r = runner.invoke(main, ["agent", "install-service", "--platform", "linux", "--token-file",
                             str(tmp_path / "missing"), "--output", str(tmp_path / "x")])
    assert r.exit_code == 1 and "no token file" in r.output and not (tmp_path / "x").exists()


def test_agent_run_needs_a_token(runner, tmp_path):
    r = runner.invoke(main, ["agent", "run", "--hub", "http://127.0.0.1:9", "--token-file", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no token file" in r.output


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "fleet.duckdb"
    with Store(path) as store:
        store.register_worker("rtx", hostname="rtx-box", os="Linux", cpu_count=32)
        store.write_samples("rtx", [{"key": "k", "samples": [{"time": time.time(), "cpu_percent": 5.0, "gpus": [
            {"index": 0, "temperature_c": 90.0}]}]}])
        alerts.evaluate(store)
    return path


def test_workers_alerts_commands_and_slo(runner, db):
    r = runner.invoke(main, ["workers", "list", "--db", str(db), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)[0]["status"] == "red"  # its GPU is at 90 °C
    r = runner.invoke(main, ["workers", "show", "rtx", "--db", str(db)])
    assert json.loads(r.output)["gpus"][0]["temperature_c"] == 90.0
    r = runner.invoke(main, ["alerts", "list", "--active", "--db", str(db), "--json"])
    (alert,) = json.loads(r.output)
    assert alert["rule"] == "gpu_hot"
    r = runner.invoke(main, ["alerts", "ack", alert["id"], "--db", str(db)])
    assert r.exit_code == 0 and "acknowledged" in r.output
    r = runner.invoke(main, ["commands", "queue", "rtx", "pipeline", "--payload", '{"name": "quickstart"}', "--db", str(db)])
    assert r.exit_code == 0 and "queued" in r.output
    command_id = r.output.split()[1].rstrip(":")
    r = runner.invoke(main, ["commands", "list", "--db", str(db), "--json"])
    assert json.loads(r.output)[0]["status"] == "queued"
    assert runner.invoke(main, ["commands", "cancel", command_id, "--db", str(db)]).exit_code == 0
    r = runner.invoke(main, ["slo", "--db", str(db), "--json"])
    assert [row["objective"] for row in json.loads(r.output)][:2] == ["api_availability", "training_completion"]
    r = runner.invoke(main, ["workers", "resources", "--db", str(db)])
    assert json.loads(r.output)["workers"] == 1
    assert runner.invoke(main, ["workers", "remove", "rtx", "--db", str(db)]).exit_code == 0


def test_bad_input_is_one_line(runner, db):
    r = runner.invoke(main, ["commands", "queue", "rtx", "pipeline", "--payload", "{}", "--db", str(db)])
    assert r.exit_code == 1 and "needs 'name'" in r.output
    r = runner.invoke(main, ["commands", "queue", "rtx", "ping", "--payload", "[1]", "--db", str(db)])
    assert r.exit_code == 2 and "JSON object" in r.output
    r = runner.invoke(main, ["workers", "remove", "ghost", "--db", str(db)])
    assert r.exit_code == 1 and "no worker with id 'ghost'" in r.output
