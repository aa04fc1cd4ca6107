"""What the GPU dashboard shows, as a param class that knows nothing of Panel.

``Gpus`` is shared by every tab of the process (the poller refreshes it every 2 s): the newest
reading of every GPU of every worker, and their time series over the longest window a tab asks for
(each tab cuts it down to its own window).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import param
import polars as pl

from bi_ide.dashboards.state import PolledState
from bi_ide.errors import WorkbenchError

WINDOWS = {"5 min": 300, "15 min": 900, "1 h": 3600, "6 h": 21_600, "24 h": 86_400, "7 d": 604_800}
DEFAULT_WINDOW = 900


class Gpus(PolledState):
    """Every GPU's newest reading and its recent history."""

    store = param.Parameter(default=None, precedence=-1, doc="""
        Where the data comes from: a Store (the hub's own one inside the hub) or a HubClient.""")

    latest = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        One row per GPU (worker_id, gpu_index, name, utilization, memory, temperature, power, clocks,
        throttle_reasons, the runs on it), ordered by worker and index.""")

    series = param.ClassSelector(class_=pl.DataFrame, default=None, allow_None=True, doc="""
        Per GPU and time bucket: utilisation, memory, temperature (the bucket's max) and power,
        over the longest window any tab shows.""")

    window_s = param.Integer(default=DEFAULT_WINDOW, bounds=(10, None), doc="""
        The window series covers: the longest one a tab asked for.""")

    def watch_window(self, owner, window_s: int | None) -> None:
        """Tell the state which window ``owner`` (a tab) shows; a longer one than before is read now."""
        with self._lock:
            if window_s is None:
                self._watching.pop(owner, None)
            else:
                self._watching[owner] = window_s
        if self._wanted() > self.window_s and self.store is not None:
            self.refresh()

    def unwatch(self, owner) -> None:
        self.watch_window(owner, None)

    def _wanted(self) -> int:
        with self._lock:
            return max(self._watching.values(), default=DEFAULT_WINDOW)

    def read(self) -> dict:
        if self.store is None:
            return {"error": "no store: run `bi-ide init`, then `bi-ide serve`"}
        window = self._wanted()
        try:
            latest = self.store.gpu_latest()
            series = self.store.gpu_series(window)
        except WorkbenchError as e:
            return {"error": str(e)}
        return {"latest": latest, "series": series, "window_s": window, "updated_at": time.time(), "error": ""}


def within(series: pl.DataFrame | None, window_s: int) -> pl.DataFrame | None:
    """The rows of ``series`` in the last ``window_s`` seconds, each GPU labelled 'worker/gpu N'."""
    if series is None:
        return None
    since = datetime.now(UTC) - timedelta(seconds=window_s)
    return series.filter(pl.col("time") >= since).with_columns(
        pl.format("{} / GPU {}", pl.col("worker_id"), pl.col("gpu_index")).alias("gpu"))
