"""The Zoho CRM transport: authenticated calls to ``{api_domain}/crm/{version}``, each reply read by the one
classifier (:func:`crmbridge.adapters.zoho.errors.read_response`), and the wire formats of its date-times.

:class:`ZohoClient` sends through the adapter's gated HTTP call (concurrency, rate, timeouts, call statistics), so
it does no retrying and no throttling itself: the adapter base class wraps whole hook calls in the shared retry
policy, and a :class:`~crmbridge.core.errors.TokenExpiredError` there drops the token through
:meth:`ZohoClient.invalidate_token`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from crmbridge.adapters.base import AdapterStats
from crmbridge.adapters.zoho.auth import AccessToken, TokenManager
from crmbridge.adapters.zoho.errors import VENDOR, credits_remaining, read_response
from crmbridge.core.errors import BadResponseError

__all__ = ["ZohoClient", "format_time", "list_of", "parse_time"]


class ZohoClient:
    """Authenticated calls to one Zoho org's API.

    Args:
        http: the adapter's gated HTTP call, ``(method, url, **requests_kwargs) -> Response``.
        tokens: the (process-shared) access-token manager of the org's refresh token.
        base: ``{api_domain}/crm/{version}``.
        stats: the adapter's statistics (API credits remaining are read from each reply).
    """

    def __init__(self, http: Callable[..., requests.Response], tokens: TokenManager, base: str,
                 stats: AdapterStats) -> None:
        self._http = http
        self.tokens = tokens
        self.base = base
        self._stats = stats
        self._local = threading.local()   # the token each thread last sent, so a rejection drops that one

    def token_post(self, url: str, **kwargs: Any) -> requests.Response:
        """The token endpoint's POST, through the same gate as every other call."""
        return self._http("POST", url, **kwargs)

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        token: AccessToken = self.tokens.token(self.token_post)
        self._local.token = token
        return {"Authorization": token.header(), "Accept": "application/json", **(headers or {})}

    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             body: Any = None, headers: Mapping[str, str] | None = None,
             items: bool = False) -> dict[str, Any] | None:
        """One authenticated API call, read and classified (``None`` for 204/304)."""
        kwargs: dict[str, Any] = {"params": params, "headers": self._headers(headers)}
        if body is not None:
            kwargs["json"] = body
        resp = self._http(method, self.base + path, **kwargs)
        remaining = credits_remaining(resp)
        if remaining is not None:
            self._stats.credits_remaining = remaining
        return read_response(resp, where=f"{method} {urlsplit(self.base).path}{path}", items=items)

    def get_response(self, path: str, *, params: Mapping[str, Any] | None = None,
                     headers: Mapping[str, str] | None = None) -> tuple[requests.Response, dict[str, Any] | None]:
        """One authenticated GET: the raw response (for its headers) and the classified body."""
        resp = self._http("GET", self.base + path, params=params, headers=self._headers(headers))
        return resp, read_response(resp, where=f"GET {urlsplit(self.base).path}{path}")

    def invalidate_token(self) -> None:
        """Drop the token this thread last sent (another thread may already hold a fresher one)."""
        self.tokens.invalidate(getattr(self._local, "token", None))


def list_of(body: dict[str, Any] | None, key: str, what: str) -> list[Any]:
    """The list under ``key`` of a reply body, or a BadResponseError naming ``what``."""
    value = (body or {}).get(key)
    if not isinstance(value, list):
        raise BadResponseError(f"{what}: response without a '{key}' list", vendor=VENDOR)
    return value


def format_time(when: datetime) -> str:
    """ISO 8601 to the second with an explicit offset, as Zoho's headers expect (seconds floored)."""
    return when.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def parse_time(value: Any, where: str) -> datetime | None:
    """Zoho's ``yyyy-MM-ddTHH:mm:ss±HH:mm`` with its offset, as UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise BadResponseError(f"{where}: unparsable date-time", vendor=VENDOR) from exc
    if parsed.tzinfo is None:
        raise BadResponseError(f"{where}: date-time without an offset", vendor=VENDOR)
    return parsed.astimezone(UTC)
