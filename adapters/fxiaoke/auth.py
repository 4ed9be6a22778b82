"""The corpAccessToken cache: one token per adapter, fetched under a lock and never too often.

docs/vendors/fxiaoke.md §2.1: a token lives 7200 s; asking again within 6600 s of issue returns the same token, asking
between 6600 s and 7200 s returns a new one (both valid in the overlap). The token endpoint allows at most
10 calls a minute and must not be called concurrently. So:

* the token is cached and refreshed once ``expiresIn`` has run down to its last 550/7200 (the
  "refresh inside 6650–7200 s" rule, scaled to whatever lifetime the server reports);
* a fetch happens under a lock (one at a time; waiting threads reuse the result);
* fetches pass a :class:`~crmbridge.core.ratelimit.TokenBucket` sized so that no 60-second window holds
  more than ``calls_per_minute`` fetches (burst n/2 plus n/2 refilled per minute);
* ``invalidate(token)`` drops the cache only if ``token`` is still the cached one, so N workers that all
  saw ``20016`` for the same token cause one refresh, not N.

With a token file (``token_cache`` in the system's configuration; :mod:`crmbridge.adapters._token_file`) the
token is shared by every *process* of the system too: runs started by cron, a scheduler restarting, workers.
Without it each process fetches its own, and the eleventh process started within a minute is refused (14001).
The file holds the token encrypted under a key derived from the app secret and permanent code; a process takes
the file's token while it is before its refresh point (the same rule as above, on the wall clock), fetches are
serialised across processes by the file's lock, and the file keeps the times of the recent fetches so that no
60-second window holds more than ``calls_per_minute`` of them whichever processes made them. A token the
server rejects (20016) is removed from the file, so the next process fetches a new one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from crmbridge.adapters._token_file import TokenFile
from crmbridge.core.ratelimit import TokenBucket

__all__ = ["REFRESH_FRACTION", "CorpToken", "TokenCache", "token_file"]

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


def token_file(path: Any, app_secret: SecretStr, permanent_code: SecretStr, *, base_url: str,
               app_id: str) -> TokenFile:
    """The system's token file: encrypted under a key derived from its app secret and permanent code, bound to
    its gateway and app id (a file copied to another tenant or app does not decrypt there)."""
    material = f"{app_secret.get_secret_value()}\0{permanent_code.get_secret_value()}".encode()
    return TokenFile(path, material, f"{base_url.rstrip('/')}|{app_id}", context=b"crmbridge fxiaoke token cache v1",
                     vendor="fxiaoke")


class TokenCache:
    """Holds the current token; ``get()`` fetches a new one only when needed.

    Args:
        fetch: does the token call and returns a :class:`CorpToken` (raises crmbridge errors).
        calls_per_minute: the token endpoint's limit (Fxiaoke: 10).
        clock: monotonic clock (injectable for tests).
        sleep: sleep used while waiting for the rate limit.
        file: builds the system's shared token file (called once, at the first token), or None: this process
            only.
        wall_clock: the wall clock the file's times are in.
    """

    def __init__(self, fetch: Callable[[], CorpToken], *, calls_per_minute: int = 10,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 file: Callable[[], TokenFile] | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        half = max(1.0, calls_per_minute / 2)
        self._fetch = fetch
        self._clock = clock
        self._wall = wall_clock
        self._sleep = sleep
        self._calls_per_minute = calls_per_minute
        self._bucket = TokenBucket(half / 60.0, burst=half, clock=clock, sleep=sleep)
        self._lock = threading.Lock()
        self._token: CorpToken | None = None
        self._file_factory = file
        self._file: TokenFile | None = None
        self.fetches = 0

    def get(self) -> CorpToken:
        """The cached token, fetched first if missing or due for refresh."""
        with self._lock:
            tok = self._token
            if tok is not None and self._clock() < tok.refresh_at:
                return tok
            if self._file_factory is not None:
                self._token = self._from_file()
                return self._token
            self._bucket.acquire()
            self.fetches += 1
            self._token = self._fetch()
            return self._token

    def _from_file(self) -> CorpToken:
        """Under the file's lock: the file's token while before its refresh point, else a new one (within the
        endpoint's limit across processes), written back."""
        if self._file is None and self._file_factory is not None:
            self._file = self._file_factory()
        file = self._file
        if file is None:  # pragma: no cover - only called with a factory
            raise RuntimeError("no token file")

        def fetch() -> dict[str, Any]:
            issued = self._wall()   # the fetch's start: the token's life is counted from before it was issued
            self.fetches += 1
            tok = self._fetch()
            return {"token": tok.value.get_secret_value(), "corp_id": tok.corp_id, "issued_at": issued,
                    "expires_in": tok.expires_in}

        def usable(body: dict[str, Any]) -> bool:
            issued, expires = _number(body.get("issued_at")), _number(body.get("expires_in"))
            return (isinstance(body.get("corp_id"), str) and expires > 0
                    and self._wall() < issued + expires * (1 - REFRESH_FRACTION))

        body, _ = file.get_or_fetch(usable, fetch, rate=(self._calls_per_minute, 60.0), wall=self._wall,
                                    sleep=self._sleep)
        age = self._wall() - _number(body.get("issued_at"))
        return CorpToken(SecretStr(str(body["token"])), str(body["corp_id"]), self._clock() - age,
                         _number(body.get("expires_in")))

    def invalidate(self, token: CorpToken | None = None) -> None:
        """Drop the cached token (only if it is still ``token``, when given); with a token file, the file drops
        it too (only if it still holds it: a token another process already replaced stays)."""
        with self._lock:
            if token is None or self._token is token:
                dropped, self._token = self._token, None
                if self._file is not None and dropped is not None:
                    with self._file.locked():
                        self._file.discard(dropped.value.get_secret_value())


def _number(value: Any) -> float:
    """A stored number as a float (0.0 when it is not one: then the token is not used)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
