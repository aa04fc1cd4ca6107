"""What an agent does with a command from the hub's queue: ping, run a pipeline, train, stop a run.

Pipelines and training run as child processes of the agent (``python -m bi_ide.cli ...``) that write
through the same hub; the command's result is their exit status and the end of their output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from bi_ide.errors import ValidationError, WorkbenchError

OUTPUT_CHARS = 4000  # the end of a child's output kept in the result
# kind -> the payload fields it takes (name -> type) and which are required
PAYLOADS = {
    "ping": ({}, ()),
    "pipeline": ({"name": str, "params": dict}, ("name",)),
    "train": ({"recipe": str, "set": dict}, ()),
    "stop_run": ({"run_id": str}, ("run_id",)),
}


def check_payload(kind: str, payload: dict | None) -> dict:
    """The payload of a ``kind`` command, checked; raises ValidationError naming the bad field."""
    if kind not in PAYLOADS:
        raise ValidationError(f"kind {kind!r} is not one of {list(PAYLOADS)}", field="kind")
    payload = payload or {}
    fields, required = PAYLOADS[kind]
    unknown = sorted(set(payload) - set(fields))
    if unknown:
        raise ValidationError(f"a {kind} command takes {sorted(fields) or 'no fields'}, not {unknown}", field=unknown[0])
    for name in required:
        if name not in payload:
            raise ValidationError(f"a {kind} command needs '{name}'", field=name)
    for name, value in payload.items():
        if not isinstance(value, fields[name]):
            raise ValidationError(f"{name} must be {fields[name].__name__}, got {type(value).__name__}", field=name)
    return payload


def execute(command: dict, store, *, worker_id: str, env: dict | None = None) -> tuple[str, dict | None, str | None]:
    """Run one command; returns (status, result, error) with status done or failed."""
    kind, payload = command["kind"], command.get("payload") or {}
    try:
        check_payload(kind, payload)
        if kind == "ping":
            return "done", {"hostname": socket.gethostname(), "pid": os.getpid(), "time": time.time()}, None
        if kind == "stop_run":
            store.update_run(payload["run_id"], stop_requested=True)
            return "done", {"run_id": payload["run_id"], "stop_requested": True}, None
        return _child(_argv(kind, payload, worker_id), env)
    except WorkbenchError as e:
        return "failed", None, str(e)


def _argv(kind: str, payload: dict, worker_id: str) -> list[str]:
    cli = [sys.executable, "-m", "bi_ide.cli"]
    if kind == "pipeline":
        return [*cli, "pipeline", "run", payload["name"], "--worker-id", worker_id,
                "--params-json", json.dumps(payload.get("params") or {})]
    sets = [arg for k, v in (payload.get("set") or {}).items() for arg in ("--set", f"{k}={v}")]
    return [*cli, "train", "run", "--recipe", payload.get("recipe", "small-cpu"), *sets, "--quiet"]


def _child(argv: list[str], env: dict | None) -> tuple[str, dict, str | None]:
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, errors="replace")
    output = (proc.stdout + proc.stderr)[-OUTPUT_CHARS:]
    result = {"returncode": proc.returncode, "duration_s": round(time.monotonic() - started, 3), "output": output}
    if proc.returncode == 0:
        return "done", result, None
    last = output.strip().splitlines()[-1] if output.strip() else ""
    return "failed", result, f"exit status {proc.returncode}: {last}"[:2000]
