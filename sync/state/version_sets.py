"""Mapping-version sets stored once: ``mapping_version_sets`` (issue 19, migration 0018).

A ledger entry (encoding 4) and a snapshot name the mappings that produced them ({mapping name: content hash}).
Every entry of a run repeats the same set, so it is stored once here under its key and the entry or snapshot
holds ``[key]`` (a one-element JSON list: a bare JSON string could not be told from text still to be parsed): the
key is the first 128 bits of the SHA-256 of the set's canonical JSON, base64url without padding (22 characters).
The key is the set's digest, so a row edited afterwards no longer matches the key the hash chain covers:
:func:`resolve` refuses it and :func:`set_key` lets an export be checked offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, String, Table, Text, select, text
from sqlalchemy.engine import Connection

from crmbridge.sync.state.db import Base

__all__ = ["KEY_LENGTH", "ensure_set", "is_key", "load_sets", "mapping_version_sets", "ref_of", "remember",
           "resolve", "set_key"]

KEY_LENGTH = 22
#: every set read in this process, by key: a key is the digest of its set, so a set once read (and checked against
#: its key) stands for that key in any database; bounded (sets change only when a mapping file does)
_SEEN: dict[str, dict[str, str]] = {}
_SEEN_MAX = 10_000

mapping_version_sets = Table(
    "mapping_version_sets", Base.metadata,
    Column("ref", String(32), primary_key=True),
    Column("versions", Text, nullable=False),       # canonical JSON {mapping name: content hash}
    Column("first_seen", String(32), nullable=False),
)


def _canonical(versions: Mapping[str, str]) -> str:
    return json.dumps({str(k): str(v) for k, v in versions.items()}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def set_key(versions: Mapping[str, str]) -> str:
    """The key of a set: base64url (no padding) of the first 16 bytes of SHA-256(canonical JSON)."""
    digest = hashlib.sha256(_canonical(versions).encode("utf-8")).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def is_key(value: Any) -> bool:
    """Whether ``value`` is a stored reference to a set: ``[key]``."""
    return ref_of(value) is not None


def ref_of(value: Any) -> str | None:
    """The key a stored value ``[key]`` names; None for anything else (a set written in full, None)."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str) and len(value[0]) == KEY_LENGTH:
        return value[0]
    return None


def ensure_set(conn: Connection, versions: Mapping[str, str], known: set[str] | None = None) -> list[str]:
    """Store ``versions`` (once; concurrent writers insert the same row, the second is ignored); return what an
    entry or snapshot stores instead, ``[key]``.
    ``known`` caches the keys this caller already stored (in its transaction or one committed before)."""
    key = set_key(versions)
    if known is not None and key in known:
        return [key]
    stmt = ("INSERT INTO mapping_version_sets (ref, versions, first_seen) VALUES (:k, :v, :t) "
            "ON CONFLICT (ref) DO NOTHING")
    conn.execute(text(stmt), {"k": key, "v": _canonical(versions),
                              "t": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
    if known is not None:
        known.add(key)
    return [key]


def load_sets(conn: Connection, values: Iterable[Any], cache: dict[str, dict[str, str]] | None = None
              ) -> dict[str, dict[str, str]]:
    """The sets stored ``values`` (``[key]``; anything else is skipped) refer to, by key (those found and matching
    their key), from ``cache`` first (by default the process's sets already read, which :func:`resolve` also
    falls back on)."""
    out: dict[str, dict[str, str]] = {}
    if cache is None:
        if len(_SEEN) > _SEEN_MAX:
            _SEEN.clear()
        cache = _SEEN
    keys = [k for k in map(ref_of, values) if k is not None]
    todo = sorted(set(keys) - set(cache))
    t = mapping_version_sets
    for i in range(0, len(todo), 500):
        for k, v in conn.execute(select(t.c.ref, t.c.versions).where(t.c.ref.in_(todo[i:i + 500]))):
            versions = _parse(v)
            if versions is not None and set_key(versions) == k:
                cache[k] = versions
                if cache is not _SEEN and len(_SEEN) <= _SEEN_MAX:
                    _SEEN[k] = versions
    for k in keys:
        if k in cache:
            out[k] = cache[k]
    return out


def remember(ref: Any, versions: Any) -> bool:
    """Take a set read elsewhere (an export's ``mapping_version_set`` line) as this process's, for :func:`resolve`,
    when it matches its key; False (and nothing taken) when it does not."""
    parsed = _parse(versions)
    if parsed is None or set_key(parsed) != ref:
        return False
    if len(_SEEN) <= _SEEN_MAX:
        _SEEN[str(ref)] = parsed
    return True


def _parse(text_: Any) -> dict[str, str] | None:
    try:
        v = json.loads(text_) if isinstance(text_, str) else text_
    except ValueError:
        return None
    return {str(a): str(b) for a, b in v.items()} if isinstance(v, dict) else None


def resolve(value: Any, sets: Mapping[str, Mapping[str, str]] | None) -> Any:
    """A stored mapping-versions value as shown: ``[key]`` → the set ({name: hash}) when it is known and
    matches its key (from ``sets``, else the sets this process has read: :func:`load_sets`); a key that cannot be
    resolved → ``{"unresolved set": key}`` (never silently empty); anything else (a dict written before
    encoding 4, None) as it is."""
    key = ref_of(value)
    if key is None:
        return value
    versions = (sets or {}).get(key) or _SEEN.get(key)
    if versions is not None and set_key(versions) == key:
        return dict(versions)
    return {"unresolved set": key}
