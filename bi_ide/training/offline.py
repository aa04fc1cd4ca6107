"""A run on a machine without the store: its record in a file, its metrics in the spool.

A GPU box lent for an hour may have torch but not DuckDB or polars, and no way to reach the hub.
``OfflineStore`` answers the few calls the trainer makes of a store from ``RUN/run.json`` in the
run's folder: create the run, read it back, note the process that trains it (host and pid, which
the fleet uses to map GPU processes to runs). Everything else the trainer sends (metrics, status
changes, checkpoints) fails as unreachable, so its RunLog spools it to ``RUN/spool.jsonl``, in
order, exactly as when the hub is away. Back on a machine with the store::

    bi-ide train replay RUN_ID --out-dir FOLDER    # imports run.json, then sends the spool

It imports nothing beyond the standard library and bi_ide.errors.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bi_ide.errors import NotFoundError, StoreError, ValidationError

RECORD = "run.json"
OFFLINE = "no store on this machine (offline run): spooled beside the run's checkpoints"


class OfflineStore:
    """The store calls of a Trainer's rank 0, answered from run folders under ``out_dir``."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)

    # -- the run record ------------------------------------------------------------------------------
    def create_run(self, name: str | None = None, *, kind: str = "train", config: dict | None = None,
                   preset: str | None = None, worker_id: str | None = None, device: str | None = None,
                   status: str = "queued") -> dict:
        run_id = uuid.uuid4().hex[:12]
        record = {"id": run_id, "name": name or f"{kind}-{run_id[:6]}", "kind": kind, "status": status,
                  "preset": preset, "config": config, "worker_id": worker_id, "device": device,
                  "created_at": datetime.now(UTC).isoformat(), "host": None, "pid": None, "offline": True}
        self._write(record)
        return dict(record)

    def get_run(self, run_id: str) -> dict:
        return read_record(self.out_dir / run_id)

    def record_run_process(self, run_id: str, *, host: str, pid: int) -> dict:
        record = self.get_run(run_id)
        record.update(host=host, pid=pid)
        self._write(record)
        return record

    def _write(self, record: dict) -> None:
        folder = self.out_dir / record["id"]
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{RECORD}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, folder / RECORD)  # whole or not at all

    # -- what goes to the spool ----------------------------------------------------------------------
    def update_run(self, run_id: str, **fields) -> dict:
        raise StoreError(OFFLINE)

    def write_metrics(self, *args, **kwargs) -> dict:
        raise StoreError(OFFLINE)

    def add_checkpoint(self, *args, **kwargs) -> dict:
        raise StoreError(OFFLINE)

    def list_checkpoints(self, run_id: str):
        raise NotFoundError(f"an offline run resumes from a checkpoint folder, not a run id ({run_id!r}): pass "
                            f"resume_from={self.out_dir / run_id}/step-NNNNNNNN")


def read_record(run_dir: str | os.PathLike) -> dict:
    """The run.json an OfflineStore wrote in ``run_dir``."""
    path = Path(run_dir) / RECORD
    if not path.is_file():
        raise NotFoundError(f"no offline run record at {path}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValidationError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise ValidationError(f"{path} is not an offline run record (no id)")
    return record


def import_run(store, run_dir: str | os.PathLike) -> dict:
    """Create the run of ``run_dir``'s run.json in ``store`` under the same id (its spool then replays)."""
    record = read_record(run_dir)
    run = store.create_run(record.get("name"), kind=record.get("kind") or "train", config=record.get("config"),
                           preset=record.get("preset"), device=record.get("device"), id=record["id"])
    if record.get("host") and isinstance(record.get("pid"), int) and hasattr(store, "record_run_process"):
        run = store.record_run_process(record["id"], host=record["host"], pid=record["pid"])
    return run
