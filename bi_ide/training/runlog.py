"""A run's metrics and status on their way to the store — spooled locally when it cannot be reached.

Points are buffered and written in batches. Each batch carries an idempotency key made of the run,
its step range and a hash of its content, so a batch that reached the store before a failure is
never stored twice when it is sent again. When the store (or the hub) is away, batches and status changes go to a JSON-lines
spool file beside the run's checkpoints, and are replayed, in order, at the next successful flush.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from bi_ide.errors import ConflictError, HubUnavailableError, RateLimitError, StoreError

# What "the store cannot be reached" looks like; anything else is a bug and propagates.
UNREACHABLE = (HubUnavailableError, RateLimitError, StoreError)


class RunLog:
    """Buffered metric writes and status updates for one run, with a spool for outages."""

    def __init__(self, store, run_id: str, spool: Path, *, flush_points: int = 5000):
        self.store, self.run_id = store, run_id
        self.spool = Path(spool)
        self.flush_points = flush_points
        self._steps: list[int] = []
        self._names: list[str] = []
        self._values: list[float] = []
        self._times: list[float] = []
        self.spooled = 0  # records written to the spool by this RunLog (for tests and the CLI)

    def log(self, step: int, time_s: float, values: dict[str, float]) -> None:
        for name, value in values.items():
            if value is None:
                continue
            self._steps.append(step)
            self._names.append(name)
            self._values.append(float(value))
            self._times.append(time_s)
        if len(self._steps) >= self.flush_points:
            self.flush()

    def flush(self) -> bool:
        """Send what is buffered (after any spooled backlog); True when all of it reached the store."""
        if self._steps:
            batch = {"step": self._steps, "name": self._names, "value": self._values, "time": self._times}
            # Content-addressed: the same points sent again are a duplicate, any other batch is not.
            digest = hashlib.blake2b(json.dumps(batch).encode(), digest_size=8).hexdigest()
            key = f"{self.run_id}:{self._steps[0]}-{self._steps[-1]}:{digest}"
            self._steps, self._names, self._values, self._times = [], [], [], []
            self._send({"kind": "metrics", "key": key, "batch": batch})
        return self.replay()

    def status(self, **fields) -> None:
        """Change the run's status or fields; spooled (in order) when the store is away."""
        self._send({"kind": "run", "fields": fields})

    def checkpoint(self, **fields) -> None:
        """Record a checkpoint the trainer wrote; spooled (in order) when the store is away."""
        self._send({"kind": "checkpoint", "fields": fields})

    def _send(self, record: dict) -> None:
        if self.spool.exists():  # keep order: nothing jumps the queue
            self._append(record)
            return
        try:
            apply(self.store, self.run_id, record)
        except UNREACHABLE:
            self._append(record)

    def _append(self, record: dict) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spool, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.spooled += 1

    def replay(self) -> bool:
        """Send the spool's records in order; True when the spool is empty afterwards."""
        return replay(self.store, self.run_id, self.spool)


def apply(store, run_id: str, record: dict) -> None:
    if record["kind"] == "metrics":
        store.write_metrics(record["batch"], run_id=run_id, idempotency_key=record["key"])
    elif record["kind"] == "checkpoint":
        store.add_checkpoint(run_id, **record["fields"])
    else:
        try:
            store.update_run(run_id, **record["fields"])
        except ConflictError:
            pass  # the status change was applied before the outage cut the answer off


def replay(store, run_id: str, spool: Path) -> bool:
    """Apply a spool file's records in order; keep the rest (atomically) if the store goes away again."""
    spool = Path(spool)
    if not spool.exists():
        return True
    lines = [line for line in spool.read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash while it was written: nothing to send
        try:
            apply(store, run_id, record)
        except UNREACHABLE:
            tmp = spool.with_name(spool.name + ".tmp")
            tmp.write_text("".join(rest + "\n" for rest in lines[i:]), encoding="utf-8")
            os.replace(tmp, spool)
            return False
    spool.unlink()
    return True
