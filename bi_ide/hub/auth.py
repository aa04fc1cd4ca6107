"""API tokens with roles, and a per-token rate limit (a token bucket, seed §VI)."""

from __future__ import annotations

import threading
import time

from bi_ide.errors import ForbiddenError, RateLimitError
from bi_ide.store import ROLES

# A role may do everything the roles before it may.
RANK = {role: i for i, role in enumerate(ROLES)}


def require_role(token: dict, needed: str) -> None:
    if RANK[token["role"]] < RANK[needed]:
        raise ForbiddenError(
            f"token {token['id']} ({token['name']}) has role {token['role']}; this call needs {needed} "
            f"or higher — create one with `bi-ide token create --role {needed}`"
        )


class RateLimiter:
    """Token bucket per key: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float = 10.0, burst: int = 100):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one request of ``key``'s budget or raise RateLimitError with the wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                wait = (1 - tokens) / self.rate
                raise RateLimitError(
                    f"rate limit of {self.rate:g} requests/s (burst {self.burst}) reached for this token; "
                    f"retry in {wait:.2f} s or send larger batches",
                    retry_after_s=wait,
                )
            self._buckets[key] = (tokens - 1, now)
