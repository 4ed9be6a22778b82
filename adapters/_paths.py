"""Vendor paths in adapter configuration and replies, in the one path language of :mod:`crmbridge.core.paths`.

Both core-banking adapters name places in a request or reply with the same syntax the mappings use:
``FCUBS_BODY.Customer-IO.CUSTNO``, ``errors[0].parameterName``, ``UDFDETAILS[FLDNAM=RISK].FLDVAL``,
``["CURR.NO"]`` for a name holding a dot. This module adds only what a wire path needs on top: ``""`` or ``"$"``
is the whole body, parsed paths are cached (a reply is read with the same few paths thousands of times), and
:func:`join_path` writes a path from its names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from crmbridge.core.paths import Path, PathKey, parse_path, path_get, path_set

__all__ = ["ROOT", "join_path", "key_names", "vendor_get", "vendor_path", "vendor_set"]

#: the empty path: the whole body
ROOT = Path("$", ())

_PLAIN = re.compile(r"[^.\[\]\"]+")


@lru_cache(maxsize=2048)
def vendor_path(text: str) -> Path:
    """``text`` parsed (``""``/``"$"``: :data:`ROOT`). Raises ValueError saying where a path is malformed."""
    if text.strip() in ("", "$"):
        return ROOT
    return parse_path(text)


def vendor_get(obj: Any, path: str | Path | None, default: Any = None) -> Any:
    """The value at ``path`` in ``obj`` (``default`` when ``path`` is ``None`` or any step is missing or null)."""
    if path is None:
        return default
    value = path_get(obj, path if isinstance(path, Path) else vendor_path(path))
    return default if value is None else value


def vendor_set(obj: dict[str, Any], path: str | Path, value: Any) -> dict[str, Any]:
    """Set ``value`` at ``path`` in ``obj``, creating what is missing; returns ``obj``."""
    path_set(obj, path if isinstance(path, Path) else vendor_path(path), value)
    return obj


def key_names(path: str | Path) -> list[str]:
    """The names a path steps through, without its indexes and selectors (``a.b[0].c`` → ``[a, b, c]``)."""
    p = path if isinstance(path, Path) else vendor_path(path)
    return [op.name for op in p.ops if isinstance(op, PathKey)]


def join_path(names: Iterable[str | int]) -> str:
    """A path from its steps: names joined by dots, integers as ``[n]``, names holding a dot or a bracket
    quoted (``["CURR.NO"]``)."""
    out = ""
    for n in names:
        if isinstance(n, int):
            out += f"[{n}]"
        elif _PLAIN.fullmatch(n) and n.strip() == n:
            out += ("." if out else "") + n
        else:
            out += ("." if out else "") + f'["{n}"]'
    return out
