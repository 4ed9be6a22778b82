"""Core-banking SOAP field metadata: a record's fields as the WSDL declares them, for ``mapping validate
--against`` and ``doctor``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from crmbridge.adapters._paths import join_path, key_names
from crmbridge.adapters.base import FieldInfo

__all__ = ["wsdl_fields"]


def wsdl_fields(elem_type: Any, record: str, writable: Collection[str]) -> list[FieldInfo]:
    """The elements of the record at the path ``record`` inside the zeep type ``elem_type``: structures and
    leaves, named by their path in the one path language (``Custpersonal.MOBNUM``), ``read_only`` unless the path
    is (or holds) one of the ``writable`` paths. Empty when the record path is not in the type."""
    out: list[FieldInfo] = []
    node = elem_type
    for seg in key_names(record):
        child = dict(getattr(node, "elements", [])).get(seg)
        if child is None:
            return out
        node = child.type

    below = {tuple(key_names(w)) for w in writable}

    def walk(t: Any, prefix: tuple[str, ...], optional: bool = False) -> None:
        # ``optional``: under an optional structure (UDFDETAILS[]{FLDNAM, FLDVAL}), whose own required leaves are
        # required only when the structure is sent: the record does not require them
        for name, el in getattr(t, "elements", []):
            names = (*prefix, name)
            required = not el.is_optional and not optional
            if getattr(el.type, "elements", None):
                # the structure itself (mappings check top-level names), writable if any leaf below is
                out.append(FieldInfo(name=join_path(names), type="structure", required=required,
                                     read_only=not any(w[:len(names)] == names and len(w) > len(names)
                                                       for w in below)))
                walk(el.type, names, not required)
            else:
                out.append(FieldInfo(name=join_path(names), type=getattr(el.type, "name", None) or "string",
                                     required=required, read_only=names not in below))
        for name, _attr in getattr(t, "attributes", []):
            out.append(FieldInfo(name=join_path((*prefix, name)), type="string", read_only=True))

    walk(node, ())
    return out
