"""Wire helpers of the core-banking REST adapter: JSON paths, vendor dates, pagination links.

JSON paths are dotted with list indexes: ``pageItems``, ``data``, ``page.totalPages``, ``links.next``,
``errors[0].parameterName``, ``status.code``. The empty path (``""`` or ``"$"``) is the whole body.

Dates arrive as strings (ISO 8601, with or without offset, or date only), as Fineract arrays (``[2024, 1, 15]``
for a LocalDate, ``[2024, 1, 15, 9, 30, 5]`` for a LocalDateTime) or as epoch numbers. Values without an
offset are read in the service's configured time zone; everything comes out timezone-aware UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from urllib.parse import urljoin, urlsplit

__all__ = ["format_since", "json_get", "parse_path", "parse_vendor_datetime", "resolve_link"]

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(path: str) -> tuple[str | int, ...]:
    """``"errors[0].parameterName"`` → ``("errors", 0, "parameterName")``; ``""``/``"$"`` → ``()``.

    Raises:
        ValueError: the path has characters outside names, dots and ``[n]`` indexes.
    """
    if path in ("", "$"):
        return ()
    out: list[str | int] = []
    pos = 0
    for m in _SEGMENT.finditer(path):
        gap = path[pos:m.start()]
        if gap not in ("", "."):
            raise ValueError(f"bad JSON path {path!r} at {pos}")
        out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if pos != len(path) or not out:
        raise ValueError(f"bad JSON path {path!r}")
    return tuple(out)


def json_get(obj: Any, path: str | tuple[str | int, ...] | None, default: Any = None) -> Any:
    """The value at ``path`` in ``obj`` (``default`` when any step is missing)."""
    if path is None:
        return default
    for step in parse_path(path) if isinstance(path, str) else path:
        if isinstance(step, int):
            if not isinstance(obj, list) or not -len(obj) <= step < len(obj):
                return default
            obj = obj[step]
        else:
            if not isinstance(obj, dict) or step not in obj:
                return default
            obj = obj[step]
    return obj


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
