"""Alert rules over the fleet's samples, and the hub's watch that evaluates them.

Each rule turns the latest readings into firing conditions, one per dedup key (rule, worker, GPU).
``Watch`` runs in the hub process: every few seconds it opens an alert for each new condition,
resolves the alerts whose condition cleared, tells the webhook, applies the thermal guard, and now
and then rolls old samples up into one-minute rows.

Settings (environment of the hub):
``BI_IDE_ALERT_WEBHOOK``   URL that gets a JSON POST per opened or resolved alert
``BI_IDE_FLEET_EVAL_S``    seconds between evaluations (default 5)
``BI_IDE_SAMPLES_KEEP_H``  hours of full-resolution samples kept before the rollup (default 24)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import requests

from bi_ide.errors import WorkbenchError
from bi_ide.fleet import thermal
from bi_ide.store.fleet import RED_S

log = logging.getLogger(__name__)

RULES = ("gpu_hot", "worker_silent", "gpu_underused", "disk_full", "gpu_memory_full")


@dataclass(frozen=True)
class Thresholds:
    """Where each rule fires (seed §VII and the SLOs of §X)."""

    gpu_hot_c: float = thermal.HOT_C
    silent_s: float = RED_S
    underused_percent: float = 70.0
    underused_window_s: float = 120.0
    underused_min_samples: int = 30
    disk_percent: float = 90.0
    gpu_memory_fraction: float = 0.95


def firing(store, t: Thresholds = Thresholds()) -> list[dict]:
    """Every condition that holds now, as {rule, severity, dedup_key, worker_id, message, value}."""
    out = []
    for w in store.list_workers().iter_rows(named=True):
        wid = w["id"]
        if w["age_s"] is None or w["age_s"] > t.silent_s:
            age = "never" if w["age_s"] is None else f"{w['age_s']:.0f} s"
            out.append(_fire("worker_silent", "error", wid, None, f"{wid} sent nothing for {age} (limit {t.silent_s:.0f} s)",
                             w["age_s"]))
        if w["disk_percent"] is not None and w["disk_percent"] > t.disk_percent:
            out.append(_fire("disk_full", "warning", wid, None, f"{wid}: disk {w['disk_percent']:.0f} % full "
                             f"(limit {t.disk_percent:.0f} %)", w["disk_percent"]))
    for g in store.gpu_latest().iter_rows(named=True):
        wid, i = g["worker_id"], g["gpu_index"]
        if g["temperature_c"] is not None and g["temperature_c"] >= t.gpu_hot_c:
            out.append(_fire("gpu_hot", "critical", wid, i, f"GPU {i} of {wid} at {g['temperature_c']:.0f} °C "
                             f"(limit {t.gpu_hot_c:.0f} °C)", g["temperature_c"]))
        used, total = g["memory_used_bytes"], g["memory_total_bytes"]
        if used is not None and total and used / total >= t.gpu_memory_fraction:
            out.append(_fire("gpu_memory_full", "warning", wid, i, f"GPU {i} of {wid}: memory {100 * used / total:.0f} % "
                             f"used (limit {100 * t.gpu_memory_fraction:.0f} %)", used / total))
    for u in store.gpu_training_utilization(t.underused_window_s).iter_rows(named=True):
        if u["samples"] >= t.underused_min_samples and u["utilization"] is not None \
                and u["utilization"] < t.underused_percent:
            out.append(_fire("gpu_underused", "warning", u["worker_id"], u["gpu_index"],
                             f"GPU {u['gpu_index']} of {u['worker_id']} at {u['utilization']:.0f} % while run "
                             f"{u['run_id']} trains on it (objective ≥ {t.underused_percent:.0f} %)", u["utilization"]))
    return out


def _fire(rule: str, severity: str, worker_id: str, gpu: int | None, message: str, value) -> dict:
    key = f"{rule}:{worker_id}" + (f":{gpu}" if gpu is not None else "")
    return {"rule": rule, "severity": severity, "dedup_key": key, "worker_id": worker_id, "message": message,
            "value": None if value is None else float(value)}


def evaluate(store, t: Thresholds = Thresholds(), webhook: str | None = None) -> dict:
    """Open and resolve alerts against the store now; POST each change to ``webhook``."""
    changes = store.sync_alerts(list(RULES), firing(store, t))
    if webhook:
        told = [a["id"] for event in ("opened", "resolved") for a in changes[event] if notify(webhook, event, a)]
        if told:
            store.mark_alerts_notified(told)
    return changes


def notify(url: str, event: str, alert: dict) -> bool:
    """POST {event, alert} to the webhook; a failure is logged, never raised."""
    body = {"event": event, "alert": {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in alert.items()}}
    try:
        r = requests.post(url, json=body, timeout=5)
        r.raise_for_status()
        return True
    except requests.RequestException as e:
        log.warning("alert webhook %s failed for %s: %s", url, alert["id"], e)
        return False


class Watch:
    """The hub's background fleet work on a daemon thread: alerts, thermal guard, rollups."""

    def __init__(self, store, *, interval_s: float | None = None, keep_s: float | None = None,
                 webhook: str | None = None, thresholds: Thresholds = Thresholds()):
        env = os.environ
        self.store = store
        self.interval_s = interval_s or float(env.get("BI_IDE_FLEET_EVAL_S", 5))
        self.keep_s = keep_s or float(env.get("BI_IDE_SAMPLES_KEEP_H", 24)) * 3600
        self.webhook = webhook if webhook is not None else env.get("BI_IDE_ALERT_WEBHOOK") or None
        self.thresholds = thresholds
        self.rollup_every_s = max(60.0, min(600.0, self.keep_s / 10))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bi-ide-fleet-watch", daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def tick(self) -> dict:
        """One round: alerts, thermal guard."""
        return {"alerts": evaluate(self.store, self.thresholds, self.webhook), "thermal": thermal.guard(self.store)}

    def _loop(self) -> None:
        next_rollup = time.monotonic() + self.rollup_every_s
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
                if time.monotonic() >= next_rollup:
                    self.store.rollup_samples(self.keep_s)
                    next_rollup = time.monotonic() + self.rollup_every_s
            except WorkbenchError:  # e.g. the store closed as the hub stops; try again next round
                log.exception("fleet watch round failed")
