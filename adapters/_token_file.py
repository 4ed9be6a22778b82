"""An access token shared by the processes of one system through an encrypted file (Zoho, Fxiaoke).

Vendors limit how often a token may be fetched (Zoho: 10 per 10 minutes per refresh token; Fxiaoke: 10 a minute,
never concurrently). A token cached per process breaks that as soon as runs start from cron, a scheduler restarts
in a crash loop or several workers start together. With a token file (``token_cache`` in the system's
configuration) they share one:

* the file holds the token **encrypted** (AES-256-GCM) under a key derived (HMAC-SHA-256, a per-vendor context
  label) from the system's own secrets, and authenticated with a *binding* (token URL / gateway, client id): only
  a process holding those secrets reads it, and a file copied to another system does not decrypt there;
* it is written atomically (a temporary file, mode 0600, then ``os.replace``), so a reader never sees half a file;
* refreshes are serialised across processes by an advisory ``flock`` on ``<file>.lock``: a process that finds a
  usable token after waiting for the lock uses it (single flight);
* with a rate (calls, seconds), the file also keeps the wall-clock times of the recent fetches (attempts that
  failed included), and a process waits for a free slot before fetching: the vendor's limit holds across every
  process of the system, not just within one;
* a token the vendor rejected is removed from the file (:meth:`TokenFile.discard`, only if the file still holds
  that token), so the next process fetches a new one instead of reusing it.

An unreadable file (corrupt, other credentials) costs one fetch, never a failure: it is replaced.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["TokenFile"]

log = logging.getLogger("crmbridge.adapters")

#: the body key holding the recent fetch times (epoch seconds); everything else belongs to the token
_FETCHED = "fetched"


class TokenFile:
    """One system's shared token file (see the module docstring).

    Args:
        path: the file; ``<path>.lock`` beside it serialises refreshes.
        secret_material: what the encryption key is derived from (the system's secrets).
        binding: authenticated with the token (token URL and client id).
        context: the key-derivation label (one per vendor and file format version).
        vendor: named in log lines.
    """

    def __init__(self, path: Path, secret_material: bytes, binding: str, *, context: bytes, vendor: str) -> None:
        self.path = Path(path)
        self.vendor = vendor
        self._key = hmac.new(context, secret_material, hashlib.sha256).digest()
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

    def read(self) -> dict[str, Any] | None:
        """The decrypted body (``token`` and the vendor's fields, maybe ``fetched``), or None when there is none
        this process can use."""
        try:
            doc = json.loads(self.path.read_text(encoding="ascii"))
            nonce, sealed = base64.b64decode(doc["nonce"]), base64.b64decode(doc["sealed"])
            body = json.loads(AESGCM(self._key).decrypt(nonce, sealed, self._aad))
            if not isinstance(body, dict):
                raise ValueError("not an object")
            return body
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, InvalidTag):
            log.warning("%s token file %s is unreadable or belongs to other credentials; fetching a new token",
                        self.vendor, self.path.name)
            return None

    def write(self, body: dict[str, Any]) -> None:
        """Replace the file's content with ``body``, encrypted (atomic, mode 0600 whatever the umask)."""
        nonce = os.urandom(12)
        sealed = AESGCM(self._key).encrypt(nonce, json.dumps(body).encode(), self._aad)
        doc = json.dumps({"v": 1, "nonce": base64.b64encode(nonce).decode(),
                          "sealed": base64.b64encode(sealed).decode()})
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()   # a leftover of a killed process, maybe with another mode: O_CREAT would keep that
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(doc)
        os.replace(tmp, self.path)

    def discard(self, token: str) -> None:
        """Remove ``token`` (rejected by the vendor) from the file if the file still holds it; the fetch history
        stays. Call it holding :meth:`locked`."""
        held = self.read()
        if held is None or held.get("token") != token:
            return
        if held.get(_FETCHED):
            self.write({_FETCHED: held[_FETCHED]})
        else:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def get_or_fetch(self, usable: Callable[[dict[str, Any]], bool], fetch: Callable[[], dict[str, Any]], *,
                     rate: tuple[int, float] | None = None, wall: Callable[[], float] = time.time,
                     sleep: Callable[[float], None] = time.sleep) -> tuple[dict[str, Any], bool]:
        """The file's token if ``usable`` says so, else ``fetch()``'s (written to the file), under the lock.

        Args:
            usable: whether a held body (it has a ``token``) may be used as it is.
            fetch: fetches a new token; returns the body to store (``token`` plus the vendor's fields).
            rate: at most this many fetches in any window of this many seconds, across processes (the fetch
                waits, holding the lock, for a free slot).
        Returns:
            (body, whether this call fetched it).
        """
        with self.locked():
            held = self.read()
            if held is not None and isinstance(held.get("token"), str) and usable(held):
                return held, False
            history: list[float] = []
            if rate is not None:
                history = _wait_for_slot(_times(held), rate[0], rate[1], wall, sleep)
            try:
                body = dict(fetch())
            except BaseException:
                if rate is not None:   # a refused fetch still counted against the vendor's limit
                    self.write({_FETCHED: history})
                raise
            if rate is not None:
                body[_FETCHED] = history
            self.write(body)
            return body, True


def _times(held: dict[str, Any] | None) -> list[float]:
    raw = (held or {}).get(_FETCHED)
    if not isinstance(raw, list):
        return []
    return [float(t) for t in raw if isinstance(t, int | float) and not isinstance(t, bool)]


def _wait_for_slot(history: list[float], calls: int, window: float, wall: Callable[[], float],
                   sleep: Callable[[float], None]) -> list[float]:
    """Wait until fewer than ``calls`` fetches happened in the last ``window`` seconds; returns the recent fetch
    times with this one added. A time in the future (the clock was set back) counts as recent, for one window
    at most."""
    margin = 0.5   # the vendor's clock and ours see the window's edges a little apart
    waited = 0.0
    while True:
        now = wall()
        recent = sorted(t for t in history if now - t < window + margin)
        if len(recent) < calls or waited >= window + margin:
            return [*recent[-(calls - 1):], now] if calls > 1 else [now]
        pause = max(0.05, min(recent[len(recent) - calls] + window + margin - now, window + margin - waited))
        log.info("token endpoint allows %d fetches per %.0f s; waiting %.1f s for a slot", calls, window, pause)
        sleep(pause)
        waited += pause
