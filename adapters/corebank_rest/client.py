"""The core-banking REST transport: :class:`RestClient` sends one call (configured headers, credentials, JSON
body), reads a 2xx reply as JSON and classifies anything else through the one table in
:mod:`crmbridge.adapters.corebank_rest.errors`; and the wire helpers: JSON paths, vendor dates, pagination links.
It does no retrying: the adapter base class wraps whole hook calls in the shared retry policy.

JSON paths in the configuration are in the one path language (:mod:`crmbridge.core.paths`, read through
:mod:`crmbridge.adapters._paths`): ``pageItems``, ``page.totalPages``, ``links.next``, ``errors[0].parameterName``,
``identifiers[documentType=RIC].documentKey``. The empty path (``""`` or ``"$"``) is the whole body.

Dates arrive as strings (ISO 8601, with or without offset, or date only), as Fineract arrays (``[2024, 1, 15]``
for a LocalDate, ``[2024, 1, 15, 9, 30, 5]`` for a LocalDateTime) or as epoch numbers. Values without an
offset are read in the service's configured time zone; everything comes out timezone-aware UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from crmbridge.adapters._json import response_json
from crmbridge.adapters.corebank_rest.errors import VENDOR, classify, scrub, to_error
from crmbridge.adapters.errortable import Classified, ErrorKind, ErrorRule
from crmbridge.core.errors import BadResponseError

__all__ = ["RestClient", "format_since", "parse_vendor_datetime", "resolve_link"]

def parse_vendor_datetime(value: Any, tz: tzinfo = UTC, fmt: str | None = None) -> datetime | None:
    """A vendor date or timestamp as an aware UTC datetime (``None`` for null/empty).

    Raises:
        ValueError: the value is not a date in any of the accepted shapes.
    """
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a date")
    if isinstance(value, list | tuple):
        if not 3 <= len(value) <= 7 or not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
            raise ValueError("not a [yyyy, m, d(, h, m, s, nanos)] date array")
        parts = list(value)
        if len(parts) == 7:
            parts[6] //= 1000  # Fineract sends nanoseconds
        ts = datetime(*parts)  # type: ignore[arg-type, misc]
        return ts.replace(tzinfo=tz).astimezone(UTC)
    if isinstance(value, int | float):
        seconds = value / 1000.0 if abs(value) > 1e11 else float(value)
        return datetime.fromtimestamp(seconds, UTC)
    if not isinstance(value, str):
        raise ValueError(f"a {type(value).__name__} is not a date")
    text = value.strip()
    if fmt:
        ts = datetime.strptime(text, fmt)
    else:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            d = date.fromisoformat(text)
            ts = datetime(d.year, d.month, d.day)
        else:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=tz)
    return ts.astimezone(UTC)


def format_since(since: datetime, fmt: str, tz: tzinfo = UTC) -> str:
    """``since`` for a query parameter: in the service's zone, in ``fmt`` (``iso`` = ISO 8601 with offset).

    A format coarser than the timestamp floors it, so nothing at or after ``since`` is lost.
    """
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    local = since.astimezone(tz)
    if fmt == "iso":
        return local.isoformat(timespec="seconds")
    return local.strftime(fmt)


def resolve_link(base_url: str, link: str) -> str:
    """A next-page link made absolute against ``base_url``.

    Raises:
        ValueError: the link points at another scheme, host or port (credentials are never sent elsewhere).
    """
    url = urljoin(base_url.rstrip("/") + "/", link)
    a, b = urlsplit(base_url), urlsplit(url)
    if (a.scheme, a.hostname, a.port) != (b.scheme, b.hostname, b.port):
        raise ValueError("next link points at another origin")
    return url


class RestClient:
    """Calls to one REST service.

    Args:
        http: the adapter's gated HTTP call, ``(method, url, **requests_kwargs) -> Response``.
        base_url: the service root; relative paths are joined to it.
        headers: headers every call carries (Fineract's tenant header).
        auth_type: ``basic`` or ``bearer``: how a 401/403 reads.
        rules: the system's configured business-error rules, tried before the built-in table.
        error_paths: where the vendor's error code and message sit in an error body.
        request_id_header: the header carrying the service's request id.

    ``auth_headers`` returns the credential headers of each call (the adapter sets it to
    :meth:`crmbridge.adapters.corebank_rest.auth.RestAuth.headers`).
    """

    def __init__(self, http: Callable[..., requests.Response], *, base_url: str, headers: Mapping[str, str],
                 auth_type: str, rules: Iterable[ErrorRule], error_paths: Mapping[str, Sequence[str]],
                 request_id_header: str) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.auth_type = auth_type
        self.rules = tuple(rules)
        self.error_paths = error_paths
        self.request_id_header = request_id_header
        self.auth_headers: Callable[[], dict[str, str]] = dict

    def url(self, path: str) -> str:
        """``path`` joined to the service root (an absolute URL stays as it is)."""
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def classify(self, resp: requests.Response, *, auth: str | None = None) -> Classified:
        """A non-2xx reply, classified by the system's rules and the built-in table."""
        return classify(resp, auth=auth or self.auth_type, extra=self.rules, error_paths=self.error_paths,
                        request_id_header=self.request_id_header)

    def post_form(self, url: str, form: Mapping[str, str]) -> requests.Response:
        """A form POST with the configured headers and no credentials (the OAuth2 token request)."""
        return self._http("POST", self.url(url), data=dict(form), headers=dict(self.headers))

    def call(self, method: str, url: str, *, outcomes: tuple[ErrorKind, ...] = (),
             headers: Mapping[str, str] | None = None, **kw: Any) -> tuple[Any, requests.Response]:
        """One call. Returns ``(body, response)``; a non-2xx reply of a kind in ``outcomes`` comes back as its
        :class:`Classified` instead of being raised."""
        hdrs = {"Accept": "application/json", **self.headers, **self.auth_headers(), **(headers or {})}
        resp = self._http(method, url, headers=hdrs, **kw)
        if 200 <= resp.status_code < 300:
            return self.json(resp, method, url), resp
        c = self.classify(resp)
        if c.kind in outcomes:
            return c, resp
        raise to_error(c, where=requests.utils.urlparse(url).path)

    def json(self, resp: requests.Response, method: str = "POST", url: str | None = None) -> Any:
        """A 2xx body as JSON. An empty body is a reply only to a write (204, or a 200 some services send); a
        read's empty, HTML, text or cut-off body is a :class:`BadResponseError` saying which."""
        where = f"{method} {requests.utils.urlparse(url or resp.url or '').path}"
        rid = resp.headers.get(self.request_id_header)
        if resp.status_code == 204 or not resp.content.strip():
            if method == "GET":
                raise BadResponseError(f"{where}: HTTP {resp.status_code} with an empty body where JSON was "
                                       "expected (a gateway or proxy answering?)", vendor=VENDOR,
                                       status=resp.status_code, request_id=rid)
            return {}
        try:
            return response_json(resp, vendor=VENDOR, where=where, request_id=rid)
        except ValueError as exc:
            raise BadResponseError(f"{where}: reply is not JSON: {describe_body(resp)}", vendor=VENDOR,
                                   status=resp.status_code, request_id=rid) from exc


def describe_body(resp: requests.Response) -> str:
    """What a body that is not JSON looks like, for an error message (no content quoted beyond a masked hint)."""
    ctype = resp.headers.get("Content-Type", "no content type").split(";")[0].strip()
    head = resp.content[:200].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or "html" in ctype:
        kind = "an HTML page (a gateway, proxy or login page answering instead of the service?)"
    elif head.startswith((b"{", b"[")):
        kind = "JSON cut off or malformed (a truncated reply?)"
    else:
        kind = f"text: {scrub(resp.content[:80].decode('utf-8', 'replace'), 80)!r}"
    return f"HTTP {resp.status_code}, {ctype}, {len(resp.content)} bytes, {kind}"
