"""The engine's hashes, one definition each.

* :func:`keyed_hash`: HMAC-SHA256 of a JSON value in canonical form (a plain hash of personal data is
  brute-forceable); every other hash here is one of these.
* :func:`record_hash`: a raw vendor record as read (overlap dedupe, dead-letter "failed as is", cursor boundary).
* :func:`payload_hash`: what is written to a target (a write of the same payload again costs no call).
* :func:`echo_hash`: the fields a job reads back from a side, as crmbridge wrote them (two-way echo suppression).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

from crmbridge.adapters.base import RawRecord

__all__ = ["content", "echo_hash", "keyed_hash", "path_filter", "payload_hash", "project", "record_hash",
           "watermark_of"]


def keyed_hash(value: Any, key: bytes) -> str:
    """HMAC-SHA256 of a JSON value in canonical form (a plain hash of personal data is brute-forceable)."""
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def record_hash(raw: RawRecord, key: bytes) -> str:
    """The keyed hash of a raw record's data as read from its system."""
    return keyed_hash(dict(raw.data), key)


def payload_hash(payload: dict[str, Any], key: bytes) -> str:
    """The keyed hash of a payload mapped out for a system (a write whose payload hashes as what was last
    written costs no call)."""
    return keyed_hash(payload, key)


def path_filter(paths: Iterable[str]) -> Callable[[str], bool]:
    """Whether a flat canonical path is one of (or under) the mapping's canonical paths."""
    return _path_filter(tuple(sorted(set(paths))))


@lru_cache(maxsize=256)
def _path_filter(plain: tuple[str, ...]) -> Callable[[str], bool]:
    # one filter per set of paths (a mapping's), each flat path decided once: records of one shape share their
    # flat paths (list items are keyed by scheme, type, purpose or system), so per record this is a dict lookup
    seen: dict[str, bool] = {}

    def covered(path: str) -> bool:
        hit = seen.get(path)
        if hit is None:
            hit = any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in plain)
            if len(seen) >= 8192:
                seen.clear()
            seen[path] = hit
        return hit

    return covered


def content(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat record without its bookkeeping (source references)."""
    return {k: v for k, v in flat.items() if not k.startswith("source_refs")}


def project(flat: dict[str, Any], covered: Callable[[str], bool]) -> dict[str, Any]:
    """The non-empty values of a flat canonical record at the paths ``covered`` accepts."""
    return {p: v for p, v in flat.items() if covered(p) and v is not None}


def echo_hash(flat: dict[str, Any], covered: Callable[[str], bool], key: bytes) -> str:
    """The keyed hash of what a side reads back of a flat canonical record (its mapping's ``covered`` paths): as
    written, it is remembered; as read, equal to what was remembered, the change is crmbridge's own echo."""
    return keyed_hash(project(flat, covered), key)


def watermark_of(raws: Iterable[RawRecord], key: bytes) -> tuple[datetime | None, dict[str, str]]:
    """The newest modification time of ``raws`` and the record hash of each record stamped exactly then (a cursor
    boundary: records at the watermark that the next overlap must not handle again)."""
    stamped = [r for r in raws if r.modified_at is not None]
    if not stamped:
        return None, {}
    top = max(r.modified_at for r in stamped if r.modified_at is not None)
    return top, {r.external_id: record_hash(r, key) for r in stamped if r.modified_at == top}
