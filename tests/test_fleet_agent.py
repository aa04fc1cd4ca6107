"""Real agent processes against a real hub on loopback: registration, samples, colours, alerts with
the webhook, commands, and buffering across a hub restart with nothing lost or stored twice.

The agents' GPU is FakeNvml (tests/test_fleet_nvml.py), a stand-in for pynvml: no GPU here. Its
temperature comes from a file, so a test heats and cools the GPU while everything else is real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest
import requests

from bi_ide.hub.client import HubClient
from bi_ide.hub.process import HubProcess
from bi_ide.store import Store

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
STAND_IN = ROOT / "tests" / "test_fleet_nvml.py"


class Webhook:
    """A tiny HTTP server on loopback that records the JSON bodies POSTed to it."""

    def __init__(self):
        self.bodies: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, rule: str) -> list[str]:
        return [b["event"] for b in self.bodies if b["alert"]["rule"] == rule]


def until(check, timeout_s: float = 30.0, what: str = "the condition"):
    """Poll ``check`` until it returns something other than None or False; fail with ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class AgentProcess:
    """``python tests/test_fleet_nvml.py``: a real agent with a stand-in GPU, in its own process."""

    def __init__(self, hub_url: str, token_file: Path, worker_id: str, folder: Path, temp: int = 60):
        self.temp_file = folder / f"{worker_id}.temp"
        self.counters_file = folder / f"{worker_id}.counters.json"
        self.log = folder / f"{worker_id}.log"
        self.set_temp(temp)
        cmd = [sys.executable, str(STAND_IN), "--hub", hub_url, "--token-file", str(token_file),
               "--worker-id", worker_id, "--temp-file", str(self.temp_file), "--counters", str(self.counters_file)]
        self._out = open(self.log, "wb")  # noqa: SIM115 - the child writes to it until stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BI_IDE_")}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT, env=env)

    def set_temp(self, celsius: int) -> None:
        tmp = self.temp_file.with_suffix(".tmp")
        tmp.write_text(str(celsius))
        os.replace(tmp, self.temp_file)

    def stop(self) -> dict:
        """SIGTERM, as a service manager stops it; returns the agent's counters."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self._out.close()
        assert code == 0, self.log.read_text()[-2000:]
        return json.loads(self.counters_file.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


def make_store(db: Path) -> dict[str, str]:
    with Store(db) as store:
        tokens = {role: store.create_token(f"test {role}", role)[1] for role in ("viewer", "developer", "admin")}
    (db.parent / "agent.token").write_text(tokens["developer"])
    return tokens


@pytest.fixture(scope="module")
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, webhook):
    """A hub evaluating its rules every 0.5 s and telling the webhook; two agents reporting to it.

    Yields a dict (hub, client, agents, ...): the last test restarts the hub and puts the new one in it.
    """
    folder = tmp_path_factory.mktemp("fleet")
    db = folder / "workbench.duckdb"
    tokens = make_store(db)
    env = dict(os.environ, BI_IDE_FLEET_EVAL_S="0.5", BI_IDE_ALERT_WEBHOOK=webhook.url)
    ctx = {"db": db, "env": env, "folder": folder, "hub": HubProcess(db, env=env).start()}
    ctx["agents"] = {w: AgentProcess(ctx["hub"].url, folder / "agent.token", w, folder) for w in ("rtx-box", "laptop")}
    ctx["client"] = HubClient(ctx["hub"].url, tokens["admin"], retries=0)
    try:
        yield ctx
    finally:
        ctx["client"].close()
        for a in ctx["agents"].values():
            a.kill()
        ctx["hub"].stop()


def test_agents_register_and_report(fleet):
    hub, client = fleet["hub"], fleet["client"]

    def both_green():
        df = client.list_workers()
        return df.height == 2 and set(df["status"]) == {"green"} and df["cpu_percent"].null_count() == 0 and df

    workers = until(both_green, 60, "two green workers with samples")
    assert sorted(workers["id"]) == ["laptop", "rtx-box"] and workers["cpu_count"].min() >= 1
    gpus = until(lambda: (g := client.gpu_latest()).height == 2 and g, 30, "both stand-in GPUs")
    assert set(gpus["name"]) == {"NVIDIA GeForce RTX 5090"} and gpus["throttle_reasons"][0] == "sw_power_cap,sw_thermal"
    detail = client.get_worker("rtx-box")
    assert detail["gpus"][0]["temperature_c"] == 60.0 and detail["alerts"] == []
    assert client.resources()["gpus"] == 2
    text = requests.get(hub.url + "/metrics", timeout=10).text  # open on loopback
    assert 'bi_ide_worker_up{worker="laptop"' in text


def test_hot_gpu_opens_and_resolves_an_alert_and_tells_the_webhook(fleet, webhook):
    client, agents = fleet["client"], fleet["agents"]
    agents["rtx-box"].set_temp(91)
    alert = until(lambda: next(iter(client.list_alerts(active=True).filter(
        pl.col("rule") == "gpu_hot").to_dicts()), None), 30, "the gpu_hot alert")
    assert alert["worker_id"] == "rtx-box" and alert["severity"] == "critical" and "91 °C" in alert["message"]
    until(lambda: client.get_worker("rtx-box")["status"] == "red", 10, "rtx-box red")
    assert client.get_worker("laptop")["status"] == "green"
    assert client.acknowledge_alert(alert["id"])["acknowledged_by"] == "test admin"
    until(lambda: webhook.events("gpu_hot") == ["opened"], 10, "the webhook's opened event")
    agents["rtx-box"].set_temp(65)
    until(lambda: client.list_alerts(active=True).is_empty(), 30, "the alert to resolve")
    until(lambda: webhook.events("gpu_hot") == ["opened", "resolved"], 10, "the webhook's resolved event")
    assert client.list_alerts().filter(pl.col("id") == alert["id"])["status"].to_list() == ["resolved"]


def test_commands_run_on_the_agent(fleet):
    client = fleet["client"]
    ping = client.queue_command("laptop", "ping")
    bad = client.queue_command("laptop", "pipeline", {"name": "no-such-pipeline"})
    done = until(lambda: (c := client.get_command(ping["id"]))["status"] == "done" and c, 30, "the ping")
    assert done["result"]["hostname"] and done["result"]["pid"] > 0
    failed = until(lambda: (c := client.get_command(bad["id"]))["status"] in ("done", "failed") and c, 90,
                   "the pipeline command")
    assert failed["status"] == "failed" and failed["result"]["returncode"] != 0 and "no-such-pipeline" in failed["error"]


def test_viewer_cannot_queue_and_bad_payload_is_refused(fleet):
    hub, client = fleet["hub"], fleet["client"]
    r = requests.post(f"{hub.url}/api/v1/workers/laptop/commands", json={"kind": "ping"}, timeout=10)
    assert r.status_code == 401
    r = requests.post(f"{hub.url}/api/v1/workers/laptop/commands", json={"kind": "pipeline", "payload": {}},
                      headers=client.session.headers, timeout=10)
    assert r.status_code == 400 and "needs 'name'" in r.json()["message"]
    r = requests.post(f"{hub.url}/api/v1/workers/laptop/samples", json={"batches": []}, timeout=10,
                      headers={"Authorization": "Bearer bi_wrong"})
    assert r.status_code == 401 and "unknown API token" in r.json()["message"]
    r = requests.post(f"{hub.url}/api/v1/workers/laptop/samples", json={"batches": []}, timeout=10)
    assert r.status_code == 401


def test_the_cli_agent_reports_this_machine_and_exits_cleanly(fleet):
    client, folder = fleet["client"], fleet["folder"]
    cmd = [sys.executable, "-m", "bi_ide.cli", "agent", "run", "--hub", fleet["hub"].url, "--token-file",
           str(folder / "agent.token"), "--worker-id", "this-machine", "--label", "role=test", "--interval", "0.5"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BI_IDE_")}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        worker = until(lambda: next(iter(client.list_workers().filter(
            pl.col("id") == "this-machine").to_dicts()), None), 60, "the CLI agent's registration")
        until(lambda: client.count_samples("this-machine")["machine"] >= 2, 30, "its samples")
        detail = client.get_worker("this-machine")
        assert detail["labels"] == {"role": "test"} and detail["cpu_count"] >= 1
        assert detail["ram_percent"] is not None and detail["gpus"] == []  # psutil readings; no GPU here
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "agent stopped" in output and "0 unsent" in output, output[-2000:]
    assert worker["hostname"]


def test_buffering_across_a_hub_restart_loses_and_doubles_nothing(fleet):
    client, agent = fleet["client"], fleet["agents"]["laptop"]
    until(lambda: client.count_samples("laptop")["machine"] >= 4, 60, "the first samples")
    fleet["hub"].stop()
    time.sleep(4)  # the agents sample on into their buffers
    fleet["hub"] = HubProcess(fleet["db"], port=fleet["hub"].port, env=fleet["env"],
                              log=fleet["folder"] / "hub-again.log").start()
    until(lambda: client.slos()[2]["total"] >= 1, 60, "an agent's reconnection")
    counters = agent.stop()
    stored = client.count_samples("laptop")
    reconnect = client.slos()[2]
    assert counters["failed_attempts"] >= 1 and counters["dropped_batches"] == 0 and counters["unsent"] == 0
    assert stored["machine"] == counters["samples"]  # every sample taken is stored ...
    assert stored["distinct_times"] == stored["machine"]  # ... once
    assert reconnect["objective"] == "worker_reconnect" and reconnect["good"] >= 1  # back within 30 s
