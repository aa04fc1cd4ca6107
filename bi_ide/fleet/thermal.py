"""The thermal guard (seed §XIII): a run whose GPU reaches 85 °C trains at half rate until it is
back at 70 °C.

The hub decides (``guard``, every few seconds in the hub process) and records the verdict on the
run (``runs.throttle_factor`` and a row in ``run_throttles``); the trainer honours it through
``pace``, which it calls where it already polls its run for a stop request.
"""

from __future__ import annotations

import os
import socket
import threading
import time

HOT_C = 85.0
COOL_C = 70.0
THROTTLED = 0.5


def guard(store) -> list[dict]:
    """Throttle the running runs whose GPU is hot and release the ones that cooled; returns the changes."""
    changes = []
    for row in store.run_gpu_temperatures().iter_rows(named=True):
        temp, factor = row["temperature_c"], row["throttle_factor"]
        if temp is None:
            continue
        where = f"GPU {row['gpu_index']} of {row['worker_id']}"
        if temp >= HOT_C and factor >= 1.0:
            new, reason = THROTTLED, f"{where} at {temp:.0f} °C (≥ {HOT_C:.0f} °C): half rate until ≤ {COOL_C:.0f} °C"
        elif temp <= COOL_C and factor < 1.0:
            new, reason = 1.0, f"{where} cooled to {temp:.0f} °C (≤ {COOL_C:.0f} °C): full rate again"
        else:
            continue
        store.set_run_throttle(row["run_id"], new, reason, worker_id=row["worker_id"], gpu_index=row["gpu_index"],
                               temperature_c=temp)
        changes.append({"run_id": row["run_id"], "factor": new, "reason": reason})
    return changes


class Pacer:
    """The trainer's side: tells the store where the run's process lives, then stretches the time
    between two polls so the run goes at ``throttle_factor`` of its rate."""

    def __init__(self, sleep=time.sleep, clock=time.monotonic):
        self.sleep, self.clock = sleep, clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def pace(self, store, run: dict) -> float:
        """Called with the run's fresh record at each poll; sleeps while throttled; returns the sleep."""
        host, pid = socket.gethostname(), os.getpid()
        if (run.get("host"), run.get("pid")) != (host, pid) and hasattr(store, "record_run_process"):
            store.record_run_process(run["id"], host=host, pid=pid)
        now = self.clock()
        with self._lock:
            last = self._last.get(run["id"], now)
        factor = run.get("throttle_factor") or 1.0
        # Work took (now - last); at rate `factor` it must take (now - last) / factor.
        pause = (now - last) * (1.0 / factor - 1.0) if factor < 1.0 else 0.0
        if pause > 0:
            self.sleep(pause)
        with self._lock:
            self._last[run["id"]] = self.clock()
        return pause


PACER = Pacer()


def pace(store, run: dict) -> float:
    """The process's Pacer: see Pacer.pace."""
    return PACER.pace(store, run)
