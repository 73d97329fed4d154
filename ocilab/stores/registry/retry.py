"""When to try a registry request again, and how long to wait first.

Only requests that are safe to repeat are retried (GET, HEAD, DELETE, a
manifest PUT, a chunk sent again from an offset the registry confirmed), and
only after failures that may pass: no connection, 429 Too Many Requests and
5xx. The wait doubles from ``base`` up to ``cap`` seconds, or is what the
registry asks in ``Retry-After`` (seconds), never more than ``cap``; there are
at most ``attempts`` tries and never more than ``budget`` seconds of waiting in all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; ``sleep`` is replaceable so tests need not wait."""

    attempts: int = 4
    base: float = 0.25
    cap: float = 10.0
    budget: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delays(self) -> Backoff:
        """A fresh countdown for one request."""
        return Backoff(self)


class Backoff:
    """The retries left for one request: ``wait(headers)`` sleeps and returns True, or returns False when spent."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._tries = 1
        self._waited = 0.0

    def wait(self, headers: Mapping[str, str] | None = None) -> bool:
        """Sleep before the next try (honouring ``Retry-After`` in ``headers``); False when no try is left."""
        policy = self._policy
        if self._tries >= policy.attempts:
            return False
        delay = _retry_after(headers) if headers is not None else None
        if delay is None:
            delay = policy.base * 2 ** (self._tries - 1)
        delay = min(delay, policy.cap)
        if self._waited + delay > policy.budget:
            return False
        self._tries += 1
        self._waited += delay
        policy.sleep(delay)
        return True


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds, when given as a number (an HTTP date is treated as absent)."""
    value = (headers.get("Retry-After") or "").strip()
    return float(value) if value.isdigit() else None
