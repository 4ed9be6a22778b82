"""Lineage of a write, as the ledger keeps it: what was sent, what the vendor answered, which mappings decided.

The engine hands over what it has in hand when a write comes back, and gets the keyword arguments of a
:class:`~crmbridge.sync.state.ledger.LedgerEntryIn`; nothing here reaches a vendor or the database::

    entry = LedgerEntryIn(action=..., run_id=..., ..., **write_lineage(
        mapping=target_mapping, payload=item.payload, result=write_result, changed=changed,
        party_type=ptype, correlation_id=cid, mappings=(source_mapping, target_mapping), diff=True))

- the **payload** is masked field by field by the class of the canonical path the mapping fills it from
  (:func:`crmbridge.canonical.masking.vendor_kinds`), failing closed for a field the mapping does not know;
- the **answer** keeps the vendor's record id, status, version, error code and message (masked);
- the **changed fields** are only those the target receives (:func:`received_paths`): a core → CRM entry no
  longer lists the date of birth or the AUM amount the CRM never gets;
- the **mapping versions** name each mapping by file name with its content hash (the text is archived by hash).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

from crmbridge.canonical.masking import mask_canonical, mask_vendor_payload
from crmbridge.core.logsafe import mask_text
from crmbridge.core.paths import path_locations

__all__ = ["mapping_versions", "masked_payload", "only_received", "received_paths", "vendor_answer",
           "write_lineage"]


def masked_payload(payload: Mapping[str, Any], mapping: Any) -> dict[str, Any]:
    """The vendor ``payload`` as the ledger keeps it: same shape, every value masked by its class."""
    out = mask_vendor_payload(dict(payload), mapping)
    return out if isinstance(out, dict) else {}


def vendor_answer(result: Any) -> dict[str, Any]:
    """A vendor's answer to one write (a :class:`~crmbridge.adapters.base.WriteResult`, or a mapping with the same
    keys), masked: record id, status, version, and on failure the vendor's code and message."""
    get = result.get if isinstance(result, Mapping) else (lambda k, d=None: getattr(result, k, d))
    status = get("status")
    err = get("error")
    out: dict[str, Any] = {"id": get("external_id"), "status": getattr(status, "value", status)}
    if get("version") is not None:
        out["version"] = str(get("version"))
    if err is not None:
        out["code"] = getattr(err, "code", None) or type(err).__name__
        out["message"] = mask_text(str(err))[:500]
    return {k: v for k, v in out.items() if v is not None}


def received_paths(mapping: Any, party_type: str | None = None,
                   payload: Mapping[str, Any] | None = None) -> list[str]:
    """The canonical paths a target mapping sends (selectors included; the key field's ``party_id`` too); with
    ``party_type``, only those of the steps that run for that type (an organisation's record gets no mobile); with
    the ``payload`` sent, only those of the steps whose vendor field is in it (a field left out for want of
    consent was not received)."""
    return list(_cover(mapping, party_type, payload).prefixes)


def _covered(path: str, prefixes: Iterable[str]) -> bool:
    for p in prefixes:
        if path == p or path.startswith(p + ".") or path.startswith(p + "["):
            return True
        # a step on a selected list item (contact_points[type=MOBILE]) covers that item's fields
        if p.endswith("]") and path.startswith(p):
            return True
    return False


class _Cover:
    """The paths one mapping sends for one party type and payload shape, and which changed paths they cover
    (memoised: the same few shapes recur on every record of a run)."""

    __slots__ = ("memo", "prefixes")

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self.prefixes = prefixes
        self.memo: dict[str, bool] = {}

    def covers(self, path: str) -> bool:
        hit = self.memo.get(path)
        if hit is None:
            if len(self.memo) > 4096:   # a run of unusual shapes: bounded, not a leak
                self.memo.clear()
            hit = self.memo[path] = _covered(path, self.prefixes)
        return hit


class _Plan:
    """A mapping's out steps as lineage needs them, worked out once: per step the party types it applies to, the
    vendor paths it fills (each with the top-level key that alone decides presence, when it is that simple) and
    the canonical paths it reads."""

    def __init__(self, mapping: Any) -> None:
        self.mapping = mapping
        steps = getattr(getattr(mapping, "spec", None), "steps", None)
        self.keyed = bool(getattr(mapping, "spec", None) is not None and getattr(mapping.spec, "key_field", None))
        self.steps: list[tuple[Any, list[tuple[str | None, Any]], tuple[str, ...]]] | None = None
        if steps is not None:
            self.steps = []
            for st in steps:
                if not st.runs("out"):
                    continue
                vps = [(_simple_key(vp), vp) for vp in st.vendor_paths()]
                self.steps.append((st, vps, tuple(p.text for p in st.canonical_paths())))
        self.covers: dict[tuple[Any, ...], _Cover] = {}


def _simple_key(vp: Any) -> str | None:
    from crmbridge.core.paths import PathKey

    ops = getattr(vp, "ops", None)
    return ops[0].name if ops is not None and len(ops) == 1 and isinstance(ops[0], PathKey) else None


#: id(mapping) → its plan (the plan holds the mapping, so an id is never reused while its entry lives)
_PLANS: dict[int, _Plan] = {}


def _plan(mapping: Any) -> _Plan:
    plan = _PLANS.get(id(mapping))
    if plan is None or plan.mapping is not mapping:
        if len(_PLANS) > 256:
            _PLANS.clear()
        plan = _PLANS[id(mapping)] = _Plan(mapping)
    return plan


def _cover(mapping: Any, party_type: str | None, payload: Mapping[str, Any] | None) -> _Cover:
    plan = _plan(mapping)
    if plan.steps is not None and (party_type is not None or payload is not None):
        applying = [(vps, paths) for st, vps, paths in plan.steps
                    if party_type is None or st.applies_to(party_type)]
        if payload is None:
            sent = (True,) * len(applying)
        else:
            sent = tuple(any((key in payload) if key is not None else bool(path_locations(payload, vp))
                             for key, vp in vps) for vps, _ in applying)
        key: tuple[Any, ...] = (party_type, sent)
        cover = plan.covers.get(key)
        if cover is None:
            paths = [p for (_, ps), on in zip(applying, sent, strict=True) if on for p in ps]
            cover = plan.covers[key] = _Cover(_finish(paths, plan.keyed))
        return cover
    cover = plan.covers.get(("*",))
    if cover is None:
        cover = plan.covers[("*",)] = _Cover(_finish(list(mapping.owned_canonical_paths("out")), plan.keyed))
    return cover


def _finish(paths: list[str], keyed: bool) -> tuple[str, ...]:
    if keyed:
        paths.append("party_id")
    return tuple(dict.fromkeys(paths))


def only_received(changed: Mapping[str, Any], mapping: Any, party_type: str | None = None,
                  payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``changed`` (canonical path → anything) restricted to the paths ``mapping`` sends to its system (for a
    party of ``party_type``, in ``payload``, when given: see :func:`received_paths`)."""
    cover = _cover(mapping, party_type, payload)
    return {p: v for p, v in changed.items() if cover.covers(p)}


def mapping_versions(*mappings: Any) -> dict[str, str]:
    """Mapping file name → content hash, for each mapping that decided a write."""
    out: dict[str, str] = {}
    for m in mappings:
        if m is None:
            continue
        name = PurePath(str(getattr(m, "path", "") or "")).name or f"{m.system}/{m.object}"
        out[name] = m.version_hash
    return out


def _masked(path: str, value: Any, party_type: str | None) -> str | None:
    return None if value is None else mask_canonical(path, value, party_type)


def write_lineage(*, mapping: Any, payload: Mapping[str, Any] | None = None, result: Any = None,
                  changed: Mapping[str, tuple[Any, Any]] | None = None, party_type: str | None = None,
                  correlation_id: str | None = None, mappings: Iterable[Any] = (), diff: bool = True,
                  ) -> dict[str, Any]:
    """The lineage keyword arguments of a write's ledger entry.

    Args:
        mapping: the mapping of the system written to (its classes mask the payload; its out steps say which
            canonical fields that system receives).
        payload: the vendor payload actually sent (clear: it is masked here).
        result: the vendor's answer (``WriteResult``).
        changed: canonical path → (before, after), clear values; kept only for the fields the system receives:
            masked into ``before``/``after``, and whole in ``diff`` (encrypted under the party key by the ledger).
        party_type: the party's type, for masking by class.
        correlation_id: the id of the request that carried the write.
        mappings: every mapping that decided it (source and target), for ``mapping_versions``.
        diff: keep the clear diff (encrypted) — False for an entry without a party key.
    """
    out: dict[str, Any] = {}
    if changed is not None:
        kept = only_received(changed, mapping, party_type, payload)
        out["changed_fields"] = sorted(kept)
        out["before"] = {p: _masked(p, b, party_type) for p, (b, _a) in kept.items() if b is not None}
        out["after"] = {p: _masked(p, a, party_type) for p, (_b, a) in kept.items() if a is not None}
        if diff and kept:
            out["diff"] = {p: [b, a] for p, (b, a) in kept.items()}
    if payload is not None:
        out["payload"] = masked_payload(payload, mapping)
    if result is not None:
        out["answer"] = vendor_answer(result)
    if correlation_id is not None:
        out["correlation_id"] = str(correlation_id)
    versions = mapping_versions(*mappings) if mappings else mapping_versions(mapping)
    if versions:
        out["mapping_versions"] = versions
    return out
