"""Zoho OAuth 2.0: the refresh-token grant, with one cached access token per refresh token.

Zoho allows 10 access-token requests per 10 minutes per refresh token (docs/vendors/zoho.md §2.2), so tokens are cached
per process (shared by every adapter built with the same accounts server, client and refresh token) and
refreshed by one thread at a time: a thread that finds a fresh token after waiting for the lock uses it.
A token is refreshed shortly before it expires and when Zoho answers INVALID_TOKEN (the adapter base class
calls :meth:`TokenManager.invalidate`, which drops only the token that was rejected).

With a token file (``token_cache`` in the system's configuration) the token is shared by every *process* of the
system too: runs started by cron, a scheduler restarting after crashes, Celery workers. Without it, each such
process fetches its own token, and ten restarts within ten minutes lock the integration out of Zoho. The file
holds the token encrypted (AES-256-GCM) under a key derived from the client secret and refresh token, so only a
process that has those secrets can read it; it is written atomically with mode 0600, and refreshes are
serialised across processes by an advisory lock beside it (:mod:`crmbridge.adapters._token_file`, shared with
the Fxiaoke adapter).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from pydantic import SecretStr

from crmbridge.adapters._token_file import TokenFile as SharedTokenFile
from crmbridge.adapters.zoho.errors import raise_for_token_body
from crmbridge.core.errors import BadResponseError

__all__ = ["AccessToken", "TokenFile", "TokenManager", "forget_shared_tokens", "shared_token_manager"]

log = logging.getLogger("crmbridge.adapters.zoho")

#: refresh this many seconds before the token's expiry (at most a tenth of its life; Zoho's SDKs use 5 s)
EXPIRY_MARGIN = 60.0


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: SecretStr
    refresh_at: float  # monotonic clock: a little before the expiry

    def header(self) -> str:
        return f"Zoho-oauthtoken {self.value.get_secret_value()}"


class TokenFile(SharedTokenFile):
    """Zoho's token file (see :mod:`crmbridge.adapters._token_file`): the body holds ``token`` and ``refresh_at``
    (wall clock).

    Args:
        path: the file; ``<path>.lock`` beside it serialises refreshes.
        secret_material: what the encryption key is derived from (the client secret and refresh token).
        binding: authenticated with the token (token URL and client id): a file copied to another system does
            not decrypt there.
    """

    def __init__(self, path: Path, secret_material: bytes, binding: str) -> None:
        super().__init__(path, secret_material, binding, context=b"crmbridge zoho token cache v1", vendor="zoho")


class TokenManager:
    """Hands out a valid access token, refreshing it with the refresh-token grant when needed.

    Args:
        token_url: ``{accounts_url}/oauth/v2/token``.
        client_id: the OAuth client id.
        client_secret: the client secret.
        refresh_token: the refresh token.
        clock: monotonic clock (tests).
    """

    def __init__(self, token_url: str, client_id: str, client_secret: SecretStr, refresh_token: SecretStr,
                 *, clock: Callable[[], float] = time.monotonic, cache: Path | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self.refreshes = 0
        #: the ``api_domain`` the accounts server named in its last token response (the org's data centre)
        self.api_domain: str | None = None
        self.file: TokenFile | None = None
        if cache is not None:
            self.use_file(cache)

    def use_file(self, path: Path) -> None:
        """Share the token with the other processes of this system through ``path`` (see :class:`TokenFile`)."""
        material = f"{self._client_secret.get_secret_value()}\0{self._refresh_token.get_secret_value()}".encode()
        self.file = TokenFile(path, material, f"{self.token_url}|{self._client_id}")

    def token(self, post: Callable[..., requests.Response]) -> AccessToken:
        """A token not about to expire; ``post`` performs the refresh call when one is needed."""
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token
        with self._lock:
            token = self._token
            if token is not None and self._clock() < token.refresh_at:
                return token  # another thread refreshed while we waited
            if self.file is None:
                self._token = self._refresh(post)
                return self._token
            def fetch() -> dict[str, object]:
                mono, wall = self._clock(), self._wall()
                fresh = self._refresh(post)
                return {"token": fresh.value.get_secret_value(), "refresh_at": wall + (fresh.refresh_at - mono)}

            body, _ = self.file.get_or_fetch(lambda held: _number(held.get("refresh_at")) > self._wall(), fetch,
                                             wall=self._wall)
            # another process's token, or this one's: either way it is used until its refresh time
            left = _number(body.get("refresh_at")) - self._wall()
            self._token = AccessToken(SecretStr(str(body["token"])), self._clock() + left)
            return self._token

    def invalidate(self, rejected: AccessToken | None = None) -> None:
        """Drop ``rejected`` (or the current token); a token another thread already replaced is kept."""
        with self._lock:
            if rejected is None or self._token == rejected:
                dropped, self._token = self._token, None
                if self.file is not None and dropped is not None:
                    with self.file.locked():
                        self.file.discard(dropped.value.get_secret_value())

    def _refresh(self, post: Callable[..., requests.Response]) -> AccessToken:
        where = "POST /oauth/v2/token"
        form = {
            "refresh_token": self._refresh_token.get_secret_value(),
            "client_id": self._client_id,
            "client_secret": self._client_secret.get_secret_value(),
            "grant_type": "refresh_token",
        }
        started = self._clock()
        resp = post(self.token_url, data=form, headers={"Accept": "application/json"})
        body = raise_for_token_body(resp, where=where)
        value = body.get("access_token")
        lifetime = _lifetime(body)
        if not isinstance(value, str) or not value or lifetime is None:
            raise BadResponseError("token response lacks access_token or expires_in", vendor="zoho",
                                   status=resp.status_code, where=where)
        self.refreshes += 1
        domain = body.get("api_domain")
        self.api_domain = domain.rstrip("/") if isinstance(domain, str) and domain else self.api_domain
        return AccessToken(SecretStr(value), started + lifetime - min(EXPIRY_MARGIN, lifetime / 10))


def _number(value: object) -> float:
    """A stored time as a float (0.0 when it is not a number: then the token is not used)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _lifetime(body: dict[str, object]) -> float | None:
    """Seconds the token lives: ``expires_in_sec`` when present (then ``expires_in`` is in ms), else ``expires_in``."""
    for key, scale in (("expires_in_sec", 1.0), ("expires_in", 1.0)):
        raw = body.get(key)
        if raw is None:
            continue
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return value * scale
    return None


_SHARED: dict[tuple[str, str, str], TokenManager] = {}
_SHARED_LOCK = threading.Lock()


def shared_token_manager(token_url: str, client_id: str, client_secret: SecretStr,
                         refresh_token: SecretStr, *, cache: Path | None = None) -> TokenManager:
    """The process-wide :class:`TokenManager` for these credentials (one token per refresh token); with ``cache``,
    shared with other processes through that file too."""
    digest = hashlib.sha256(
        f"{client_secret.get_secret_value()}\0{refresh_token.get_secret_value()}".encode()).hexdigest()
    key = (token_url, client_id, digest)
    with _SHARED_LOCK:
        manager = _SHARED.get(key)
        if manager is None:
            manager = _SHARED[key] = TokenManager(token_url, client_id, client_secret, refresh_token)
        if cache is not None and manager.file is None:
            manager.use_file(cache)
        return manager


def forget_shared_tokens() -> None:
    """Drop every cached token manager (tests that restart a simulator on a reused port)."""
    with _SHARED_LOCK:
        _SHARED.clear()
