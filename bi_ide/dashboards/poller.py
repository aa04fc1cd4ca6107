"""One poller per process: it refreshes the shared dashboard state every 2 s, for all tabs at once.

Every browser tab of a dashboard watches the same state object, so ten open tabs cost one store
query per period, not ten. The store is read on the poller's own thread (a slow query never blocks
the server's event loop); the new values are published on the event loop, where Panel hands each
session's model changes to that session's own document (``doc.add_next_tick_callback``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import panel as pn

log = logging.getLogger(__name__)

PERIOD_S = 2.0  # the SLO: dashboards refresh within 2 s
T = TypeVar("T")


class Poller:
    """Keeps named state objects (each with ``read()`` and ``apply(values)``) fresh."""

    def __init__(self, period_s: float = PERIOD_S, task_name: str = "bi-ide-poller"):
        self.period_s = period_s
        self.task_name = task_name
        self._states: dict[str, object] = {}
        self._lock = threading.Lock()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bi-ide-poller")
        self._busy = False
        self._started = False

    def shared(self, name: str, factory: Callable[[], T]) -> T:
        """The process's one state object called ``name``, made by ``factory`` on first use.

        The first call also schedules the periodic refresh on the server's event loop.
        """
        with self._lock:
            state = self._states.get(name)
            if state is None:
                state = self._states[name] = factory()
                state.refresh()  # the first page shows numbers at once, not after one period
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:  # served, not a test or notebook
            self.start()
        return state

    def start(self) -> None:
        """Schedule the periodic refresh, once.

        It is scheduled from an empty context: the task must not inherit the current session's
        document, or Panel would apply every tab's changes directly to that one session.
        """
        if self._started:
            return
        contextvars.Context().run(pn.state.schedule_task, self.task_name, self.tick, period=f"{self.period_s}s")
        self._started = True

    def stop(self) -> None:
        pn.state.cancel_task(self.task_name)
        self._started = False

    async def tick(self) -> None:
        """Read every state on the reader thread, then publish the values here, on the event loop."""
        if self._busy:  # the previous read is still running: skip a beat rather than pile up
            return
        self._busy = True
        try:
            loop = asyncio.get_running_loop()
            for name, state in list(self._states.items()):
                try:
                    values = await loop.run_in_executor(self._reader, state.read)
                    state.apply(values)
                except Exception:  # keep polling the others; the trace goes to the server's log
                    log.exception("refreshing the %s dashboard state failed", name)
        finally:
            self._busy = False


POLLER = Poller()


def dashboard_store() -> tuple[object | None, float | None, str]:
    """(store, hub start time, error) for a dashboard state of this process.

    Inside the hub (``panel serve --plugins bi_ide.hub.plugin``) it is the hub's own store and start
    time; elsewhere ``bi_ide.connect()`` (the file, or BI_IDE_HUB). An error that keeps the store
    from opening (e.g. the file is held by another process) comes back as text for the page.
    """
    import sys

    import bi_ide
    from bi_ide.errors import WorkbenchError

    hub = getattr(sys.modules.get("bi_ide.hub.plugin"), "HUB", None)  # set only in the hub process
    if hub is not None:
        return hub.store, hub.started, ""
    try:
        return bi_ide.connect(), None, ""
    except WorkbenchError as e:
        return None, None, str(e)

