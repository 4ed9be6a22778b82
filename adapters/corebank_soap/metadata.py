"""Core-banking SOAP field metadata: a record's fields as the WSDL declares them, for ``mapping validate
--against`` and ``doctor``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from crmbridge.adapters.base import FieldInfo

__all__ = ["wsdl_fields"]


def wsdl_fields(elem_type: Any, record: str, writable: Collection[str]) -> list[FieldInfo]:
    """The elements of the record at ``record`` (``/``-separated element names) inside the zeep type
    ``elem_type``: structures and leaves, ``/``-separated (``Custpersonal/MOBNUM``), ``read_only`` unless the path
    is (or holds) one of the ``writable`` paths. Empty when the record path is not in the type."""
    out: list[FieldInfo] = []
    node = elem_type
    for seg in [s for s in record.split("/") if s]:
        child = dict(getattr(node, "elements", [])).get(seg)
        if child is None:
            return out
        node = child.type

    def walk(t: Any, prefix: str) -> None:
        for name, el in getattr(t, "elements", []):
            path = f"{prefix}{name}"
            if getattr(el.type, "elements", None):
                # the structure itself (mappings check top-level names), writable if any leaf below is
                out.append(FieldInfo(name=path, type="structure", required=not el.is_optional,
                                     read_only=not any(w.startswith(path + "/") for w in writable)))
                walk(el.type, path + "/")
            else:
                out.append(FieldInfo(name=path, type=getattr(el.type, "name", None) or "string",
                                     required=not el.is_optional, read_only=path not in writable))
        for name, _attr in getattr(t, "attributes", []):
            out.append(FieldInfo(name=f"{prefix}{name}", type="string", read_only=True))

    walk(node, "")
    return out
