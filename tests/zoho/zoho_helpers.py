"""Helpers for the Zoho adapter tests (imported by the test modules; not a test module)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from crmbridge.adapters.zoho import ZohoAdapter, ZohoConfig
from crmbridge.adapters.zoho.simulator import ZohoSimulator
from crmbridge.core.retry import RetryPolicy

SECRET_ENV = "CRMBRIDGE_TEST_ZOHO_SECRET"
REFRESH_ENV = "CRMBRIDGE_TEST_ZOHO_REFRESH"
BAD_ENV = "CRMBRIDGE_TEST_ZOHO_BAD"
FAST = RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.01, jitter=0.0)


class TickingClock:
    """A wall clock that moves one second per reading: every write lands in its own second, as the contract's
    optimistic-concurrency test needs (Zoho's Modified_Time has one-second precision)."""

    def __init__(self, start: float | None = None) -> None:
        self._counter = itertools.count(int(start if start is not None else time.time()))
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return float(next(self._counter))


def make_adapter(sim: ZohoSimulator, *, bad_secret: bool = False, bad_refresh: bool = False,
                 retry: RetryPolicy = FAST, **cfg: Any) -> ZohoAdapter:
    """A Zoho adapter for ``sim`` (its accounts server and API domain are the simulator's URL)."""
    config = ZohoConfig(adapter="zoho", accounts_url=sim.url, api_domain=sim.url, client_id=sim.client_id,
                        client_secret=f"env:{BAD_ENV if bad_secret else SECRET_ENV}",
                        refresh_token=f"env:{BAD_ENV if bad_refresh else REFRESH_ENV}",
                        retry=retry, timeout=5.0, **cfg)
    return ZohoAdapter(config, system="zoho_test")
