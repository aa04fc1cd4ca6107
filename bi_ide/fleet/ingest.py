"""Group commit for agents' samples: one writer thread stores every request that arrived while the
previous transaction ran, in one transaction.

A DuckDB commit costs milliseconds whatever its size, so 200 agents each committing once a second
would keep the store busy; grouped, a second of the whole fleet takes a few commits. At low load a
request is written at once (nothing to wait for), so grouping adds no latency.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future

log = logging.getLogger(__name__)

MAX_GROUPS = 500  # requests in one transaction


class SampleWriter:
    """Takes ``(worker_id, batches, reconnect)`` requests and answers each through a Future."""

    def __init__(self, store, max_groups: int = MAX_GROUPS):
        self.store = store
        self.max_groups = max_groups
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.rounds = self.requests = 0  # transactions and the requests they stored, since the start
        self.seconds = 0.0  # time spent in those transactions

    def submit(self, worker_id: str, batches: list, reconnect: dict | None) -> Future:
        """Queue one agent's request; the Future gives its answer or its error."""
        future: Future = Future()
        self._queue.put((future, (worker_id, batches, reconnect)))
        self._start()
        return future

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="bi-ide-sample-writer", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < self.max_groups:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(items)

    def _write(self, items: list) -> None:
        started = time.perf_counter()
        try:
            results = self.store.write_sample_groups([group for _, group in items])
        except Exception as e:  # the store failed: every request of the round gets the error
            log.exception("storing %d sample request(s) failed", len(items))
            results = [e] * len(items)
        self.rounds, self.requests = self.rounds + 1, self.requests + len(items)
        self.seconds += time.perf_counter() - started
        for (future, _), result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
