"""Vendor JSON, bounded: how every adapter parses a reply body.

Python's ``json`` parses recursively: a reply of ``[[[[...`` a few thousand levels deep raises ``RecursionError``
(which no adapter expects, so the run died with "internal error" and stayed ``running``), and one a few hundred
levels deep parses but takes every later walker of the record (masking, hashing, pydantic) down the same road.
:func:`loads` and :func:`response_json` refuse both with a :class:`BadResponseError` naming the system and the
call; a body that is simply not JSON still raises ``ValueError`` so each adapter keeps saying what it is instead
(an HTML page, a truncated body...).

No vendor reply crmbridge reads is more than about ten levels deep (Zoho subforms and lookups, Fxiaoke's
``data.dataList[]``, Fineract's embedded code values); :data:`MAX_DEPTH` leaves ample room.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from crmbridge.core.errors import BadResponseError

__all__ = ["MAX_DEPTH", "deeper_than", "loads", "response_json"]

#: deepest nesting of objects and arrays accepted in a vendor reply
MAX_DEPTH = 100


def deeper_than(doc: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``doc`` nests objects/arrays more than ``limit`` levels deep (iterative: safe on any depth)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _too_deep(vendor: str, where: str | None, limit: int, status: int | None,
              request_id: str | None) -> BadResponseError:
    return BadResponseError(f"the reply nests objects or arrays deeper than {limit} levels (refused as "
                            "hostile or corrupt)", vendor=vendor, status=status, request_id=request_id,
                            where=where)


def loads(data: bytes | str, *, vendor: str, where: str | None = None, status: int | None = None,
          request_id: str | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` of a vendor body, refusing nesting deeper than ``max_depth``.

    Raises:
        BadResponseError: the body nests too deep (never RecursionError).
        ValueError: the body is not JSON (``json.JSONDecodeError``, ``UnicodeDecodeError``).
    """
    try:
        doc = json.loads(data)
    except RecursionError:
        raise _too_deep(vendor, where, max_depth, status, request_id) from None
    if deeper_than(doc, max_depth):
        raise _too_deep(vendor, where, max_depth, status, request_id)
    return doc


def response_json(resp: requests.Response, *, vendor: str, where: str | None = None,
                  request_id: str | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """``resp.json()`` (same charset handling) refusing nesting deeper than ``max_depth``; see :func:`loads`."""
    if where is None:
        req = resp.request
        path = requests.utils.urlparse(resp.url or "").path
        where = f"{req.method} {path}" if req is not None and req.method else path or None
    try:
        doc = resp.json()
    except RecursionError:
        raise _too_deep(vendor, where, max_depth, resp.status_code, request_id) from None
    if deeper_than(doc, max_depth):
        raise _too_deep(vendor, where, max_depth, resp.status_code, request_id)
    return doc
