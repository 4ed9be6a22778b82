"""Core-banking REST field metadata: a JSON service publishes no schema, so the fields are those of a sample of
records (the first page of the list), for ``mapping validate --against`` and ``doctor``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from crmbridge.adapters.base import FieldInfo

__all__ = ["json_type", "sample_fields"]


def json_type(v: Any) -> str:
    """The JSON type name of a decoded value."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "string"


def sample_fields(rows: Iterable[Mapping[str, Any]], writable_fields: Sequence[str] | None, *,
                  writable: bool) -> list[FieldInfo]:
    """The top-level fields seen in ``rows`` with the JSON type of their first value, sorted by name;
    ``read_only`` unless the resource is ``writable`` and the field is one of ``writable_fields`` (all of them
    when that list is empty)."""
    names: dict[str, str] = {}
    for row in rows:
        for k, v in row.items():
            names.setdefault(k, json_type(v))
    can_write = set(writable_fields or names) if writable else set()
    return [FieldInfo(n, t, read_only=n not in can_write) for n, t in sorted(names.items())]
