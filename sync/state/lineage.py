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
    steps = getattr(getattr(mapping, "spec", None), "steps", None)
    if (party_type is not None or payload is not None) and steps is not None:
        def sent(step: Any) -> bool:
            return payload is None or any(path_locations(payload, vp) for vp in step.vendor_paths())

        paths = [p.text for s in steps if s.runs("out") and (party_type is None or s.applies_to(party_type))
                 and sent(s) for p in s.canonical_paths()]
    else:
        paths = list(mapping.owned_canonical_paths("out"))
    if getattr(mapping, "spec", None) is not None and getattr(mapping.spec, "key_field", None):
        paths.append("party_id")
    return list(dict.fromkeys(paths))


def _covered(path: str, prefixes: Iterable[str]) -> bool:
    for p in prefixes:
        if path == p or path.startswith(p + ".") or path.startswith(p + "["):
            return True
        # a step on a selected list item (contact_points[type=MOBILE]) covers that item's fields
        if p.endswith("]") and path.startswith(p):
            return True
    return False


def only_received(changed: Mapping[str, Any], mapping: Any, party_type: str | None = None,
                  payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``changed`` (canonical path → anything) restricted to the paths ``mapping`` sends to its system (for a
    party of ``party_type``, in ``payload``, when given: see :func:`received_paths`)."""
    prefixes = received_paths(mapping, party_type, payload)
    return {p: v for p, v in changed.items() if _covered(p, prefixes)}


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
