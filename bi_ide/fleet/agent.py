"""The agent: registers its machine with the hub, samples it every interval and sends the samples
in keyed batches, and runs the commands the hub queues for it.

When the hub is away the agent keeps sampling into a buffer of at most ``max_batches`` batches (the
oldest are dropped and counted, seed §XI) and retries with doubling waits capped at ``max_backoff_s``,
so it is back within that many seconds of the hub's return (seed §X: 30 s). Every batch has a key
(``<boot id>:<sequence>``) that the hub remembers: a batch resent after a lost answer is stored once.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from bi_ide.errors import (
    AuthError,
    ForbiddenError,
    HubUnavailableError,
    NotFoundError,
    RateLimitError,
    ValidationError,
    WorkbenchError,
)
from bi_ide.fleet import commands
from bi_ide.fleet.samples import MAX_BATCHES

log = logging.getLogger(__name__)

REQUEST_SAMPLES = 2000  # about 1.5 MB of JSON, far under the hub's body limit
# The hub is away (or asks us to slow down): keep the samples, try again later.
TRANSIENT = (HubUnavailableError, RateLimitError)


def default_worker_id(hostname: str | None = None) -> str:
    """The machine's hostname as a worker id (letters, digits, - and _; at most 64)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", hostname or socket.gethostname()).strip("-")
    return (name or "worker")[:64]


@dataclass
class Counters:
    """What the agent did, for its log and for the tests."""

    samples: int = 0
    sent_batches: int = 0
    duplicate_batches: int = 0
    dropped_batches: int = 0
    rejected_batches: int = 0
    failed_attempts: int = 0
    reconnects: list = field(default_factory=list)
    commands: int = 0


class Agent:
    """One machine's agent. ``store`` is a HubClient (or a Store, in tests); ``machine`` samples."""

    def __init__(self, store, machine, *, worker_id: str | None = None, labels: dict | None = None,
                 interval_s: float = 1.0, batch_samples: int = 1, max_batches: int = 1000,
                 max_backoff_s: float = 10.0, command_poll_s: float = 5.0, child_env: dict | None = None):
        if interval_s <= 0 or batch_samples < 1 or max_batches < 1 or max_backoff_s <= 0:
            raise ValidationError("interval_s, batch_samples, max_batches and max_backoff_s must be positive")
        self.store, self.machine = store, machine
        self.worker_id = worker_id or default_worker_id()
        self.labels = labels or {}
        self.interval_s, self.batch_samples = interval_s, batch_samples
        self.max_backoff_s, self.command_poll_s = max_backoff_s, command_poll_s
        self.child_env = child_env
        self.buffer: deque[dict] = deque()
        self.max_batches = max_batches
        self.counters = Counters()
        self._boot = uuid.uuid4().hex[:12]
        self._seq = 0
        self._pending: list[dict] = []  # samples of the batch being filled
        self._registered = False
        self._retry_at = 0.0
        self._delay = 0.5
        self._down_since: float | None = None
        self._last_failure = 0.0
        self._failures = 0
        self._dropped_in_outage = 0
        self._queued_commands = 0
        self._next_poll = 0.0
        self._command: threading.Thread | None = None
        self._reports: deque[tuple] = deque()  # finished commands not yet reported to the hub

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> Counters:
        """Sample every interval until ``stop`` is set; then try once to send what is buffered."""
        log.info("agent %s for hub %s: sampling every %.1f s", self.worker_id, getattr(self.store, "url", "-"),
                 self.interval_s)
        next_tick = time.monotonic()
        while not stop.is_set():
            self.step()
            next_tick += self.interval_s
            stop.wait(max(0.0, next_tick - time.monotonic()))
            if time.monotonic() - next_tick > self.interval_s:  # we fell behind (a suspended laptop): skip ahead
                next_tick = time.monotonic()
        if self._pending:  # a part-filled batch goes too
            self._close_batch()
        self._retry_at = 0.0
        self.flush()
        log.info("agent %s stopped: %s", self.worker_id, self.counters)
        return self.counters

    def step(self) -> None:
        """One interval: take a sample, close a batch when full, talk to the hub if it is time."""
        self._pending.append(self.machine.sample())
        self.counters.samples += 1
        if len(self._pending) >= self.batch_samples:
            self._close_batch()
        self.flush()
        self._commands()

    def _close_batch(self) -> None:
        self._seq += 1
        self.buffer.append({"key": f"{self._boot}:{self._seq}", "samples": self._pending})
        self._pending = []
        while len(self.buffer) > self.max_batches:
            self.buffer.popleft()
            self.counters.dropped_batches += 1
            self._dropped_in_outage += 1
            if self.counters.dropped_batches in (1, 10, 100) or self.counters.dropped_batches % 1000 == 0:
                log.warning("buffer full (%d batches): dropped the oldest, %d dropped so far",
                            self.max_batches, self.counters.dropped_batches)

    # -- sending ------------------------------------------------------------------------------
    def flush(self) -> bool:
        """Send the buffer (in chunks) unless waiting out a backoff; True when it is empty."""
        if time.monotonic() < self._retry_at:
            return False
        try:
            if not self._registered:
                self.register()
            while self.buffer:
                self._send(self._chunk())
            self._report_commands()
        except NotFoundError:  # the worker was removed at the hub: register again, send next time
            self._registered = False
            return False
        except (AuthError, ForbiddenError) as e:  # keep sampling; someone has to fix the token
            log.error("the hub refuses this agent's token: %s", e)
            self._failed(e, wait_s=self.max_backoff_s)
            return False
        except WorkbenchError as e:  # the hub is away, busy or failing: keep the samples, try later
            self._failed(e)
            return False
        return True

    def _chunk(self) -> list[dict]:
        """The oldest batches that fit one request: at most MAX_BATCHES, and REQUEST_SAMPLES samples
        unless a single batch holds more (it goes alone)."""
        chunk, samples = [], 0
        for batch in self.buffer:
            if chunk and (len(chunk) == MAX_BATCHES or samples + len(batch["samples"]) > REQUEST_SAMPLES):
                break
            chunk.append(batch)
            samples += len(batch["samples"])
        return chunk

    def register(self) -> None:
        self.store.register_worker(self.worker_id, **self.machine.describe(self.labels))
        self._registered = True
        log.info("registered as worker %s", self.worker_id)

    def _send(self, chunk: list[dict]) -> None:
        reconnect = self._reconnect_report()
        try:
            result = self.store.write_samples(self.worker_id, chunk, reconnect=reconnect)
        except ValidationError as e:  # a batch the hub will never take: drop it, keep the rest
            self._drop(chunk, e)
            return
        for _ in chunk:
            self.buffer.popleft()
        self.counters.sent_batches += result["batches"]
        self.counters.duplicate_batches += result["duplicates"]
        self._queued_commands = result.get("queued_commands", 0)
        if reconnect:
            self.counters.reconnects.append(reconnect)
            log.info("hub back after %.1f s (%d failed attempts, %d batches dropped)", reconnect["outage_s"],
                     reconnect["failed_attempts"], reconnect["dropped_batches"])
            self._down_since, self._failures, self._dropped_in_outage = None, 0, 0
        self._delay = 0.5

    def _drop(self, chunk: list[dict], error: ValidationError) -> None:
        for _ in chunk:
            self.buffer.popleft()
        self.counters.rejected_batches += len(chunk)
        log.error("the hub refused %d batch(es), dropped: %s", len(chunk), error)

    def _failed(self, error: WorkbenchError, wait_s: float | None = None) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.warning("hub unreachable, buffering samples: %s", error)
        self._failures += 1
        self.counters.failed_attempts += 1
        self._last_failure = now
        wait = wait_s or getattr(error, "retry_after_s", None) or self._delay
        self._retry_at = now + min(wait, self.max_backoff_s)
        self._delay = min(self._delay * 2, self.max_backoff_s)

    def _reconnect_report(self) -> dict | None:
        if self._down_since is None:
            return None
        now = time.monotonic()
        return {"outage_s": round(now - self._down_since, 3), "reconnect_s": round(now - self._last_failure, 3),
                "failed_attempts": self._failures, "dropped_batches": self._dropped_in_outage}

    # -- commands -----------------------------------------------------------------------------
    def _commands(self) -> None:
        """Fetch the next command when the hub said some wait (or every poll period); run it on a thread."""
        busy = self._command is not None and self._command.is_alive()
        now = time.monotonic()
        if busy or self._down_since is not None or not self._registered:
            return
        if not self._queued_commands and now < self._next_poll:
            return
        self._next_poll = now + self.command_poll_s
        try:
            command = self.store.next_command(self.worker_id)
        except WorkbenchError as e:
            self._failed(e)
            return
        self._queued_commands = 0
        if command is not None:
            log.info("command %s: %s %s", command["id"], command["kind"], command.get("payload") or "")
            self._command = threading.Thread(target=self._execute, args=(command,), name="bi-ide-command", daemon=True)
            self._command.start()

    def _execute(self, command: dict) -> None:
        status, result, error = commands.execute(command, self.store, worker_id=self.worker_id, env=self.child_env)
        self.counters.commands += 1
        log.info("command %s %s%s", command["id"], status, f": {error}" if error else "")
        self._reports.append((command["id"], status, result, error))

    def _report_commands(self) -> None:
        while self._reports:
            command_id, status, result, error = self._reports[0]
            try:
                self.store.finish_command(command_id, status, result=result, error=error)
            except TRANSIENT:
                raise
            except WorkbenchError as e:  # cancelled or removed meanwhile: nothing to report to
                log.warning("could not report command %s: %s", command_id, e)
            self._reports.popleft()
