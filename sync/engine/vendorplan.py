"""Plans in the vendor's terms: the target fields a write would change, with masked before/after values.

"Before" is the payload the job last sent for the party (its last synced state mapped out by the mapping version
the job last completed a run with), "after" the payload it would send now; both are masked by each field's class
(:func:`crmbridge.canonical.masking.mask_vendor_payload`), failing closed for a field the mapping does not know.
"""

from __future__ import annotations

from typing import Any

from crmbridge.canonical.mapping import Mapping
from crmbridge.canonical.masking import mask_vendor_payload
from crmbridge.canonical.model import parse_party
from crmbridge.core.errors import CrmBridgeError

__all__ = ["flat_payload", "mapped_out", "vendor_changes"]


def flat_payload(payload: Any, prefix: str = "") -> dict[str, Any]:
    """A vendor payload as ``{field path: leaf}`` (``Custpersonal.MOBILE``, ``Addresses[0].City``)."""
    out: dict[str, Any] = {}
    if isinstance(payload, dict):
        for k, v in payload.items():
            out.update(flat_payload(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(payload, list | tuple):
        for i, v in enumerate(payload):
            out.update(flat_payload(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = payload
    return out


def mapped_out(mapping: Mapping, canonical: dict[str, Any] | None, party_id: str | None) -> dict[str, Any] | None:
    """What ``mapping`` makes of a stored canonical state (``None``: nothing stored, or it no longer maps)."""
    if canonical is None or party_id is None:
        return None
    try:
        return mapping.map_out(parse_party({**canonical, "party_id": party_id}))
    except (CrmBridgeError, ValueError):
        return None


def vendor_changes(before: dict[str, Any] | None, after: dict[str, Any], mapping: Mapping
                   ) -> dict[str, tuple[str, str]]:
    """The target fields whose values differ between two payloads: ``{field path: (masked before, masked
    after)}`` (an absent side reads ``""``)."""
    b_raw, a_raw = flat_payload(before or {}), flat_payload(after)
    changed = sorted(p for p in b_raw.keys() | a_raw.keys() if b_raw.get(p) != a_raw.get(p))
    if not changed:
        return {}
    b_mask = flat_payload(mask_vendor_payload(before or {}, mapping))
    a_mask = flat_payload(mask_vendor_payload(after, mapping))

    def show(v: Any) -> str:
        return "" if v is None else str(v)

    return {p: (show(b_mask.get(p)), show(a_mask.get(p))) for p in changed}
