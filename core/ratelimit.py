"""Client-side limits that keep crmbridge under a vendor's published limits.

:class:`CallGate` combines a concurrency cap (Zoho's per-edition concurrent calls) with a
token-bucket request rate (Fxiaoke's calls per second, token endpoint calls per minute).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["CallGate", "TokenBucket"]


class TokenBucket:
    """A thread-safe token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available. Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1 - 1e-9:  # tolerance: float refill can land a hair under 1 and spin
                    self._tokens = max(0.0, self._tokens - 1)
                    return waited
                need = (1 - self._tokens) / self.rate
            self._sleep(need)
            waited += need


class CallGate:
    """At most ``concurrency`` calls in flight and at most ``rate`` calls per second (if given)."""

    def __init__(self, concurrency: int = 1, rate: float | None = None) -> None:
        self.concurrency = max(1, concurrency)
        self._sem = threading.BoundedSemaphore(self.concurrency)
        self._bucket = TokenBucket(rate) if rate else None

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._sem:
            if self._bucket is not None:
                self._bucket.acquire()
            yield
