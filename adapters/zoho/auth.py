"""Zoho OAuth 2.0: the refresh-token grant, with one cached access token per refresh token.

Zoho allows 10 access-token requests per 10 minutes per refresh token (ZOHO.md §2.2), so tokens are cached
per process (shared by every adapter built with the same accounts server, client and refresh token) and
refreshed by one thread at a time: a thread that finds a fresh token after waiting for the lock uses it.
A token is refreshed shortly before it expires and when Zoho answers INVALID_TOKEN (the adapter base class
calls :meth:`TokenManager.invalidate`, which drops only the token that was rejected).

With a token file (``token_cache`` in the system's configuration) the token is shared by every *process* of the
system too: runs started by cron, a scheduler restarting after crashes, Celery workers. Without it, each such
process fetches its own token, and ten restarts within ten minutes lock the integration out of Zoho. The file
holds the token encrypted (AES-256-GCM) under a key derived from the client secret and refresh token, so only a
process that has those secrets can read it; it is written atomically with mode 0600, and refreshes are
serialised across processes by an advisory lock beside it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

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


class TokenFile:
    """An access token shared by the processes of one system, in a file (see the module docstring).

    Args:
        path: the file; ``<path>.lock`` beside it serialises refreshes.
        secret_material: what the encryption key is derived from (the client secret and refresh token).
        binding: authenticated with the token (token URL and client id): a file copied to another system does
            not decrypt there.
    """

    def __init__(self, path: Path, secret_material: bytes, binding: str) -> None:
        self.path = path
        self._key = hmac.new(b"crmbridge zoho token cache v1", secret_material, hashlib.sha256).digest()
        self._aad = binding.encode()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across processes (advisory ``flock``; where there is none, only across threads)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)   # closing releases the lock

    def read(self) -> tuple[str, float] | None:
        """(token, wall-clock time to refresh at), or None when there is none this process can use."""
        try:
            doc = json.loads(self.path.read_text(encoding="ascii"))
            nonce, sealed = base64.b64decode(doc["nonce"]), base64.b64decode(doc["sealed"])
            body = json.loads(AESGCM(self._key).decrypt(nonce, sealed, self._aad))
            return str(body["token"]), float(body["refresh_at"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, InvalidTag):
            log.warning("zoho token file %s is unreadable or belongs to other credentials; fetching a new token",
                        self.path.name)
            return None

    def write(self, token: str, refresh_at_wall: float) -> None:
        nonce = os.urandom(12)
        sealed = AESGCM(self._key).encrypt(nonce, json.dumps({"token": token, "refresh_at": refresh_at_wall})
                                           .encode(), self._aad)
        doc = json.dumps({"v": 1, "nonce": base64.b64encode(nonce).decode(), "sealed": base64.b64encode(sealed)
                          .decode()})
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(doc)
        os.replace(tmp, self.path)

    def discard(self, token: str) -> None:
        """Remove the file if it still holds ``token`` (rejected by Zoho)."""
        held = self.read()
        if held is not None and held[0] == token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


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
            with self.file.locked():
                held = self.file.read()
                left = held[1] - self._wall() if held is not None else 0.0
                if held is not None and left > 0:   # another process refreshed it: use that one
                    self._token = AccessToken(SecretStr(held[0]), self._clock() + left)
                    return self._token
                mono, wall = self._clock(), self._wall()
                self._token = self._refresh(post)
                self.file.write(self._token.value.get_secret_value(), wall + (self._token.refresh_at - mono))
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
