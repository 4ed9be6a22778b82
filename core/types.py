"""Small annotated types shared by configuration models."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

__all__ = ["TimeZoneName"]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


#: an IANA time zone name (``Asia/Shanghai``), checked at load
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]
