"""What the dashboards show, as param classes that know nothing of Panel.

The views in this package watch these objects; one process-wide poller
(``bi_ide.dashboards.poller``) refreshes them. ``read()`` does the store work and may run on any
thread; ``apply()`` publishes the result, so watchers fire once per refresh with fresh values.
"""

from __future__ import annotations

import threading
import time

import param
import polars as pl

from bi_ide.errors import WorkbenchError
from bi_ide.store import RUN_STATUSES

HUB_STATUSES = ("starting", "running", "embedded", "error")
RECENT_RUN_COLUMNS = ("name", "kind", "status", "preset", "device", "created_at", "finished_at", "id")


class PolledState(param.Parameterized):
    """A dashboard's shared state: the poller calls read() off the event loop, then apply() on it.

    ``per_run`` names dict parameters holding one entry per watched run (``self.watched``): a read
    brings only some runs, so the new entries are merged into the old ones for the runs still watched.
    """

    per_run: tuple[str, ...] = ()

    updated_at = param.Number(default=None, allow_None=True, doc="""
        Epoch seconds of the last successful refresh.""")

    error = param.String(default="", doc="""
        Why the last refresh failed, with what to do next; empty when it worked.""")

    def __init__(self, **params):
        super().__init__(**params)
        self._watching: dict = {}  # tab -> what it shows (run or decision ids; the GPU page: its window)
        self._lock = threading.Lock()

    def unwatch(self, owner) -> None:
        """A tab closed: stop reading what it showed."""
        with self._lock:
            self._watching.pop(owner, None)

    @property
    def watched(self) -> frozenset[str]:
        """The runs some open tab is looking at."""
        with self._lock:
            return frozenset().union(*self._watching.values())

    def _watch(self, owner, keys, have: dict, read) -> None:
        """Record that ``owner`` (a tab) shows ``keys`` (None: nothing any more); the ones not in
        ``have`` yet are read now with ``read(missing) -> values``, so a pick shows without waiting."""
        with self._lock:
            if keys is None:
                self._watching.pop(owner, None)
            else:
                self._watching[owner] = frozenset(keys)
        missing = [k for k in keys or () if k not in have]
        if missing and self.store is not None:
            try:
                self.apply(read(missing))
            except WorkbenchError as e:
                self.error = str(e)

    def read(self) -> dict:
        raise NotImplementedError

    def apply(self, values: dict) -> None:
        """Set the parameters that changed, in one batch (watchers see them together)."""
        values = dict(values)
        for key in self.per_run:
            if key in values:
                old = getattr(self, key)
                values[key] = {r: values[key].get(r, old.get(r)) for r in self.watched
                               if r in values[key] or r in old}
        changed = {k: v for k, v in values.items() if not _same(getattr(self, k), v)}
        if changed:
            self.param.update(changed)

    def refresh(self):
        """Read the store now and publish the values."""
        self.apply(self.read())
        return self


class Overview(PolledState):
    """The landing page's numbers: the hub's health, the store's size and the counts in it."""

    store = param.Parameter(default=None, precedence=-1, doc="""
        Where the numbers come from: a Store, or a HubClient (anything with summary() and list_runs()).""")

    hub_started = param.Number(default=None, allow_None=True, bounds=(0, None), precedence=-1, doc="""
        Epoch seconds at which the hub in this process started; None when this process is not the hub.""")

    recent_limit = param.Integer(default=10, bounds=(1, 100), doc="""
        How many of the newest runs to keep in recent_runs.""")

    hub_status = param.Selector(default="starting", objects=list(HUB_STATUSES), doc="""
        running: served by the hub; embedded: reading the store file with no hub;
        error: the last read failed (see error); starting: nothing read yet.""")

    uptime_s = param.Number(default=None, allow_None=True, bounds=(0, None), doc="""
        Seconds since the hub started; None when there is no hub.""")

    size_bytes = param.Integer(default=0, bounds=(0, None), doc="""
        Size of the store file and its write-ahead log, in bytes (0 for an in-memory store).""")

    schema_version = param.Integer(default=0, bounds=(0, None), doc="""
        The newest schema migration applied to the store.""")

    path = param.String(default="", doc="""
        The store file, or ':memory:'.""")

    runs_by_status = param.Dict(default={}, doc="""
        Number of runs in each status: queued, running, stopped, done, failed.""")

    runs_total = param.Integer(default=0, bounds=(0, None), doc="""
        Number of runs of every status.""")

    workers = param.Integer(default=0, bounds=(0, None), doc="""
        Number of registered workers (fleet machines).""")

    open_alerts = param.Integer(default=0, bounds=(0, None), doc="""
        Alerts that are not resolved yet.""")

    metric_points = param.Integer(default=0, bounds=(0, None), doc="""
        Metric points stored, over all runs.""")

    recent_runs = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        The newest runs (at most recent_limit), newest first, with RECENT_RUN_COLUMNS.""")

    def read(self) -> dict:
        """Query the store and return the new parameter values (no parameter is set here)."""
        if self.store is None:
            return {"hub_status": "error", "error": "no store: run `bi-ide init`, then `bi-ide serve`"}
        try:
            summary = self.store.summary()
            runs = self.store.list_runs(limit=self.recent_limit)
            uptime = self._uptime()
        except WorkbenchError as e:
            return {"hub_status": "error", "error": str(e)}
        by_status = summary["runs"]
        return {
            "hub_status": "running" if uptime is not None else "embedded",
            "uptime_s": uptime,
            "size_bytes": int(summary["size_bytes"]),
            "schema_version": int(summary["schema_version"]),
            "path": str(summary["path"]),
            "runs_by_status": {s: int(by_status.get(s, 0)) for s in RUN_STATUSES},
            "runs_total": int(summary["runs_total"]),
            "workers": int(summary["workers"]),
            "open_alerts": int(summary["open_alerts"]),
            "metric_points": int(summary["metric_points"]),
            "recent_runs": runs.select([c for c in RECENT_RUN_COLUMNS if c in runs.columns]),
            "updated_at": time.time(),
            "error": "",
        }

    def _uptime(self) -> float | None:
        if self.hub_started is not None:
            return max(0.0, time.time() - self.hub_started)
        health = getattr(self.store, "health", None)  # a HubClient: the hub is elsewhere
        return float(health()["uptime_s"]) if health else None


def _same(old, new) -> bool:
    if isinstance(old, pl.DataFrame) or isinstance(new, pl.DataFrame):
        return isinstance(old, pl.DataFrame) and isinstance(new, pl.DataFrame) and old.equals(new)
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(_same(old[k], new[k]) for k in new)
    return old == new


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    """3725 -> '1 h 2 min'; None -> '—'."""
    if seconds is None:
        return "—"
    s = int(seconds)
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {s} s"
    return f"{s} s"
