"""Field-level diff and three-way merge of canonical records.

Canonical records are compared as *flat* maps from a field path to a value. Lists whose items have a
natural key are flattened by that key, so an edit to the mobile number and an edit to the e-mail are
two independent fields, whatever the order of the list::

    identifiers[scheme=CN_RIC].value      contact_points[type=MOBILE].value
    addresses[type=RESIDENTIAL].city      consents[purpose=MARKETING_SMS].status

A two-way job merges the last snapshot synced to both sides (``base``) with the current ``source`` and
``target`` field by field: a field changed on one side only flows to the other; a field changed on both
sides to different values is a conflict that the job's :class:`ConflictPolicy` settles (system of record
per field, last writer wins within a clock tolerance, or the manual review queue).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from crmbridge.config import ConflictPolicy  # the one policy class, re-exported for the merge's callers

__all__ = [
    "ConflictPolicy",
    "FieldConflict",
    "MergeResult",
    "diff",
    "flatten",
    "merge_unseen",
    "three_way_merge",
    "unflatten",
]

#: list fields flattened by the natural key of their items
LIST_KEYS: dict[str, str] = {
    "identifiers": "scheme",
    "contact_points": "type",
    "addresses": "type",
    "consents": "purpose",
    "source_refs": "system",
}

_MISSING = object()


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a canonical dict into ``{path: leaf value}`` (lists without a natural key stay whole)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            sub = flatten(value, path + ".")
            if sub:
                out.update(sub)
            else:
                out[path] = {}
        elif isinstance(value, list) and key in LIST_KEYS and all(isinstance(v, Mapping) for v in value):
            natural = LIST_KEYS[key]
            seen: dict[str, int] = {}
            for item in value:
                k = str(item.get(natural))
                n = seen.get(k, 0)
                seen[k] = n + 1
                sel = f"{path}[{natural}={k}]" if n == 0 else f"{path}[{natural}={k}#{n}]"
                for sk, sv in flatten(item, sel + ".").items():
                    out[sk] = sv
        else:
            out[path] = value
    return out


def _split(path: str) -> list[str]:
    parts, buf, depth = [], "", 0
    for ch in path:
        if ch == "." and depth == 0:
            parts.append(buf)
            buf = ""
            continue
        depth += ch == "["
        depth -= ch == "]"
        buf += ch
    parts.append(buf)
    return parts


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten` (list items come back in first-seen order, natural key restored)."""
    root: dict[str, Any] = {}
    lists: dict[int, dict[str, dict[str, Any]]] = {}
    for path, value in flat.items():
        node: Any = root
        parts = _split(path)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if "[" in part:
                name, sel = part[:-1].split("[", 1)
                natural, _, keyval = sel.partition("=")
                keyval_clean = keyval.split("#", 1)[0]
                lst = node.setdefault(name, [])
                bucket = lists.setdefault(id(lst), {})
                item = bucket.get(sel)
                if item is None:
                    item = {natural: keyval_clean}
                    bucket[sel] = item
                    lst.append(item)
                node = item
            elif last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return root


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Changed paths of two flat records: ``{path: (before, after)}``; a missing field shows as ``None``."""
    out: dict[str, tuple[Any, Any]] = {}
    for path in before.keys() | after.keys():
        b, a = before.get(path), after.get(path)
        if b != a:
            out[path] = (b, a)
    return out


@dataclass(frozen=True)
class FieldConflict:
    path: str
    base: Any
    source: Any
    target: Any
    reason: Literal["both_changed", "not_owner", "clock_tolerance"]


@dataclass
class MergeResult:
    """The merge of one record.

    Attributes:
        merged: the flat record both sides should hold after this run (conflicted fields keep their target value
            on the target side and source value on the source side until resolved).
        to_target: fields to write to the target ``{path: value}``.
        to_source: fields to write back to the source.
        conflicts: fields waiting for review.
    """

    merged: dict[str, Any]
    to_target: dict[str, Any] = field(default_factory=dict)
    to_source: dict[str, Any] = field(default_factory=dict)
    conflicts: list[FieldConflict] = field(default_factory=list)


def three_way_merge(
    base: Mapping[str, Any],
    source: Mapping[str, Any],
    target: Mapping[str, Any],
    policy: ConflictPolicy,
    *,
    source_modified: datetime | None = None,
    target_modified: datetime | None = None,
) -> MergeResult:
    """Merge flat records field by field (see the module docstring)."""
    result = MergeResult(merged={})
    for path in sorted(base.keys() | source.keys() | target.keys()):
        # a field set to None and an absent field are the same thing
        b = _or_missing(base.get(path))
        s = _or_missing(source.get(path))
        t = _or_missing(target.get(path))
        s_changed, t_changed = s != b, t != b
        owner = policy.owner_of(path)
        if not s_changed and not t_changed:
            _put(result.merged, path, b)
            continue
        if s_changed and t_changed and s == t:
            _put(result.merged, path, s)
            continue
        if s_changed and not t_changed:
            if policy.protect_owned and policy.type == "source_of_truth" and owner == "target":
                result.conflicts.append(FieldConflict(path, _v(b), _v(s), _v(t), "not_owner"))
                _put(result.merged, path, t)
                continue
            _put(result.merged, path, s)
            result.to_target[path] = _v(s)
            continue
        if t_changed and not s_changed:
            if policy.protect_owned and policy.type == "source_of_truth" and owner == "source":
                result.conflicts.append(FieldConflict(path, _v(b), _v(s), _v(t), "not_owner"))
                _put(result.merged, path, s)
                continue
            _put(result.merged, path, t)
            result.to_source[path] = _v(t)
            continue
        # both changed, differently: the base stays until a reviewer decides
        _both_changed(result, policy, owner, path, b, s, t, source_modified, target_modified, undecided=b)
    return result


def merge_unseen(
    source: Mapping[str, Any],
    target: Mapping[str, Any],
    policy: ConflictPolicy,
    *,
    seen: Callable[[str], bool],
    source_modified: datetime | None = None,
    target_modified: datetime | None = None,
) -> MergeResult:
    """Merge a source record with a target record crmbridge never recorded as synced (no base): the recovery of a
    create that a run which did not finish may have applied, the target's record found by its key.

    Nothing is known of what the target held before, so a value the target shows (``seen``: the paths the job
    reads from the target) is never overwritten just because the source has another one:

    * a path the target does not show: the source's value (written as a create would have written it);
    * both agree: nothing to settle;
    * a path the target owns (``policy.owner_of``): the target's value stays and flows to the source;
    * any other path the target holds differently: the job's policy settles it as a field changed on both sides
      (the owner wins under ``source_of_truth``, the later writer under ``last_writer_wins``, else a conflict for
      review that leaves the target's value in place); a value only the target holds, for a field the source
      owns, is a proposal for review under ``protect_owned``, as in :func:`three_way_merge`.

    ``to_target`` lists every path the target is to be written with (those it does not show included: the write
    that follows is the create's full projection, minus what the target keeps).
    """
    result = MergeResult(merged={})
    for path in sorted(source.keys() | target.keys()):
        s = _or_missing(source.get(path))
        if not seen(path):
            _put(result.merged, path, s)
            if s is not _MISSING:
                result.to_target[path] = _v(s)
            continue
        t = _or_missing(target.get(path))
        owner = policy.owner_of(path)
        if s == t:
            _put(result.merged, path, s)
            continue
        if t is _MISSING:   # the target shows nothing there: nothing of its own to keep
            _put(result.merged, path, s)
            result.to_target[path] = _v(s)
            continue
        if owner == "target":
            _put(result.merged, path, t)
            result.to_source[path] = _v(t)
            continue
        if s is _MISSING:
            if policy.protect_owned and policy.type == "source_of_truth" and owner == "source":
                result.conflicts.append(FieldConflict(path, None, None, _v(t), "not_owner"))
            else:
                result.to_source[path] = _v(t)
            _put(result.merged, path, t)
            continue
        # the target keeps what it holds until a reviewer decides
        _both_changed(result, policy, owner, path, _MISSING, s, t, source_modified, target_modified, undecided=t)
    return result


def _both_changed(result: MergeResult, policy: ConflictPolicy, owner: str | None, path: str, b: Any, s: Any, t: Any,
                  source_modified: datetime | None, target_modified: datetime | None, *, undecided: Any) -> None:
    """Both sides hold a different value for ``path``: the policy's winner is carried to the other side, or the
    field waits for review in conflict, ``undecided`` kept meanwhile."""
    winner = _settle(policy, owner, source_modified, target_modified)
    if winner == "source":
        _put(result.merged, path, s)
        result.to_target[path] = _v(s)
    elif winner == "target":
        _put(result.merged, path, t)
        result.to_source[path] = _v(t)
    else:
        reason: Literal["both_changed", "clock_tolerance"] = (
            "clock_tolerance" if policy.type == "last_writer_wins" else "both_changed")
        result.conflicts.append(FieldConflict(path, None if b is _MISSING else _v(b), _v(s), _v(t), reason))
        _put(result.merged, path, undecided)


def _settle(policy: ConflictPolicy, owner: str | None, s_mod: datetime | None,
            t_mod: datetime | None) -> str | None:
    if policy.type == "source_of_truth":
        return owner
    if policy.type == "last_writer_wins":
        if s_mod is None or t_mod is None:
            return None
        gap = (s_mod - t_mod).total_seconds()
        if abs(gap) <= policy.clock_tolerance_seconds:
            return None
        return "source" if gap > 0 else "target"
    return None


def _or_missing(value: Any) -> Any:
    return _MISSING if value is None else value


def _v(value: Any) -> Any:
    return None if value is _MISSING else value


def _put(merged: dict[str, Any], path: str, value: Any) -> None:
    if value is not _MISSING:
        merged[path] = value
