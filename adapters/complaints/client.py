"""The complaint service's HTTP transport: :class:`ComplaintClient` sends one call with the API key, reads a 2xx
reply as JSON and classifies anything else through :mod:`crmbridge.adapters.complaints.errors`. No retrying: the
adapter base class wraps whole hook calls in the shared retry policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from crmbridge.adapters._json import response_json
from crmbridge.adapters.complaints.errors import VENDOR, classify, to_error
from crmbridge.adapters.errortable import Classified, ErrorKind
from crmbridge.core.errors import BadResponseError

__all__ = ["ComplaintClient", "parse_time"]


def parse_time(value: Any, where: str) -> datetime | None:
    """An ISO 8601 time of the service as aware UTC (``None`` for null)."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadResponseError(f"{where}: {value!r} is not an ISO 8601 time", vendor=VENDOR) from exc
    if when.tzinfo is None:
        raise BadResponseError(f"{where}: time without offset", vendor=VENDOR)
    return when.astimezone(UTC)


class ComplaintClient:
    """Calls to one complaint service (``base_url`` is the API root, e.g. ``https://host/api/v1``)."""

    def __init__(self, http: Callable[..., requests.Response], base_url: str, api_key: str) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"}

    def call(self, method: str, path: str, *, outcomes: tuple[ErrorKind, ...] = (),
             headers: Mapping[str, str] | None = None, **kw: Any) -> tuple[Any, requests.Response]:
        """One call: ``(body, response)``; a failure of a kind in ``outcomes`` comes back as its
        :class:`Classified` instead of being raised."""
        hdrs = {"Accept": "application/json", **self._auth, **(headers or {})}
        resp = self._http(method, f"{self.base_url}{path}", headers=hdrs, **kw)
        where = f"{method} {path.split('?')[0]}"
        if 200 <= resp.status_code < 300:
            try:
                return response_json(resp, vendor=VENDOR, where=where,
                                     request_id=resp.headers.get("X-Request-Id")), resp
            except ValueError as exc:
                raise BadResponseError(f"{where}: HTTP {resp.status_code} reply is not JSON", vendor=VENDOR,
                                       status=resp.status_code) from exc
        c = classify(resp)
        if c.kind in outcomes:
            return c, resp
        raise to_error(c, where=where)


def is_outcome(body: Any) -> bool:
    return isinstance(body, Classified)
