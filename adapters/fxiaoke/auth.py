"""The corpAccessToken cache: one token per adapter, fetched under a lock and never too often.

FXIAOKE.md §2.1: a token lives 7200 s; asking again within 6600 s of issue returns the same token, asking
between 6600 s and 7200 s returns a new one (both valid in the overlap). The token endpoint allows at most
10 calls a minute and must not be called concurrently. So:

* the token is cached and refreshed once ``expiresIn`` has run down to its last 550/7200 (the
  "refresh inside 6650–7200 s" rule, scaled to whatever lifetime the server reports);
* a fetch happens under a lock (one at a time; waiting threads reuse the result);
* fetches pass a :class:`~crmbridge.core.ratelimit.TokenBucket` sized so that no 60-second window holds
  more than ``calls_per_minute`` fetches (burst n/2 plus n/2 refilled per minute);
* ``invalidate(token)`` drops the cache only if ``token`` is still the cached one, so N workers that all
  saw ``20016`` for the same token cause one refresh, not N.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr

from crmbridge.core.ratelimit import TokenBucket

__all__ = ["REFRESH_FRACTION", "CorpToken", "TokenCache"]

#: refresh when this fraction of the reported lifetime remains (550 s of 7200 s → refresh after 6650 s)
REFRESH_FRACTION = 550 / 7200


@dataclass(frozen=True)
class CorpToken:
    """One corpAccessToken and when to refresh it (monotonic seconds)."""

    value: SecretStr
    corp_id: str
    fetched_at: float
    expires_in: float

    @property
    def refresh_at(self) -> float:
        return self.fetched_at + self.expires_in * (1 - REFRESH_FRACTION)


class TokenCache:
    """Holds the current token; ``get()`` fetches a new one only when needed.

    Args:
        fetch: does the token call and returns a :class:`CorpToken` (raises crmbridge errors).
        calls_per_minute: the token endpoint's limit (Fxiaoke: 10).
        clock: monotonic clock (injectable for tests).
        sleep: sleep used while waiting for the rate limit.
    """

    def __init__(self, fetch: Callable[[], CorpToken], *, calls_per_minute: int = 10,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        half = max(1.0, calls_per_minute / 2)
        self._fetch = fetch
        self._clock = clock
        self._bucket = TokenBucket(half / 60.0, burst=half, clock=clock, sleep=sleep)
        self._lock = threading.Lock()
        self._token: CorpToken | None = None
        self.fetches = 0

    def get(self) -> CorpToken:
        """The cached token, fetched first if missing or due for refresh."""
        with self._lock:
            tok = self._token
            if tok is not None and self._clock() < tok.refresh_at:
                return tok
            self._bucket.acquire()
            self.fetches += 1
            self._token = self._fetch()
            return self._token

    def invalidate(self, token: CorpToken | None = None) -> None:
        """Drop the cached token (only if it is still ``token``, when given)."""
        with self._lock:
            if token is None or self._token is token:
                self._token = None
