"""Masking by class: canonical values and raw vendor records, masked by the classification the canonical model
declares. The value-kind primitives (:func:`mask`, :data:`MASK_KINDS`, the table of rules) are in
:mod:`crmbridge.core.masking`, re-exported here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from crmbridge.core.masking import MASK_KINDS, mask, mask_address, mask_email, mask_name

__all__ = ["C3_WITHHELD", "MASK_KINDS", "canonical_kind", "mask", "mask_address", "mask_canonical", "mask_email",
           "mask_name", "mask_vendor_payload", "mask_vendor_record", "vendor_kinds"]


# ==============================================================================================================
# masking by class: canonical values and raw vendor records

#: text in a field nobody classified that is clearly not personal: a short upper-case code (``RIC``, ``N``,
#: ``INDIVIDUAL``, ``CUSTOMER_SEGMENTATION``) or a boolean word. Anything else there is masked (fail closed).
_CLEARLY_C1 = re.compile(r"[A-Z][A-Z_]{0,31}|true|false|True|False|yes|no")


def _unclassified(value: object) -> str:
    """An unclassified leaf: clear only if clearly C1, else masked generically (never shown as it is)."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    text = str(value)
    if not text.strip() or _CLEARLY_C1.fullmatch(text.strip()):
        return text
    return mask("generic", text)


@functools.lru_cache(maxsize=8192)
def canonical_kind(path: str, party_type: str | None = None) -> str | None:
    """The mask kind of a canonical ``path`` by its declared class; ``None`` only for a path the model declares
    non-personal (C1). A path the model does not know, or a parent of personal leaves (``name.aliases``,
    ``addresses[type=HOME].adr_lines``), gets a kind: masking fails closed."""
    from crmbridge.canonical.classification import policy_for
    from crmbridge.canonical.mapping import mask_kind_for, parse_path
    from crmbridge.canonical.model import PARTY_CLASSES

    try:
        kind = mask_kind_for(path, party_type)
        template = parse_path(path).template()
    except Exception:   # a path that does not even parse: mask it
        return "generic"
    if kind is not None:
        return kind
    try:
        policy_for(template, PARTY_CLASSES)
        return None     # a declared C1 leaf
    except (KeyError, TypeError, ValueError):
        pass
    try:
        item = mask_kind_for(f"{path}[0]", party_type)    # a list of personal values
    except Exception:
        item = None
    return item or "generic"


def mask_canonical(path: str, value: object, party_type: str | None = None) -> str:
    """``value`` at canonical ``path`` for display, masked by the path's class whatever its shape (a 12-digit
    mobile, a short ID). Nested values (a contact point, a list of street lines) are masked leaf by leaf."""
    if value is None:
        return ""
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {mask_canonical(f'{path}.{k}', v, party_type)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(mask_canonical(f"{path}[{i}]", v, party_type) for i, v in enumerate(value)) + "]"
    kind = canonical_kind(path, party_type)
    if kind is None:
        return str(getattr(value, "value", value))
    return mask(kind, value)


def vendor_kinds(mapping: object, record: object) -> dict[tuple[str | int, ...], str | None]:
    """Concrete locations in ``record`` the mapping knows → the mask kind of the canonical path they feed (``None``:
    C1). A location several steps use takes the most protective answer (any kind beats ``None``).

    The per-field class knowledge every masked view of a vendor record uses (previews, the ledger's record of the
    payload sent); a location missing from the answer is one the mapping does not know: mask it failing closed."""
    from crmbridge.core.paths import path_locations

    out: dict[tuple[str | int, ...], str | None] = {}

    def note(path: object, kind: str | None) -> None:
        if path is None:
            return
        for loc in path_locations(record, path):  # type: ignore[arg-type]
            out[loc] = out.get(loc) or kind

    for vp, kind in _vendor_kind_plan(mapping):
        note(vp, kind)
    return out


def _vendor_kind_plan(mapping: object) -> list[tuple[object, str | None]]:
    """Each vendor path the mapping knows with the mask kind of what it feeds, in order (record header fields:
    C1): what :func:`vendor_kinds` looks for in every record, worked out once per mapping."""
    plan: list[tuple[object, str | None]] | None = getattr(mapping, "_vendor_kind_plan", None)
    if plan is not None:
        return plan
    plan = []
    spec = mapping.spec  # type: ignore[attr-defined]
    # the party type, or the canonical object's name for a mapping of a Holding, Interaction...
    fixed = getattr(mapping, "model_key", None) or mapping.fixed_party_type  # type: ignore[attr-defined]
    for step in spec.steps:
        ptype = step.party_type or fixed
        kinds = [canonical_kind(p.text, ptype) for p in step.canonical_paths()]
        kind = next((k for k in kinds if k), None)
        plan.extend((vp, kind) for vp in step.vendor_paths())
    for attr in ("_external", "_modified", "_deleted", "_type_rule", "_key"):   # record header fields: C1
        plan.append((getattr(mapping, attr, None), None))
    try:
        mapping._vendor_kind_plan = plan  # type: ignore[attr-defined]
    except AttributeError:   # pragma: no cover - a mapping-like object that takes no attributes: per call
        pass
    return plan


#: what a view shows in place of C3 authentication data
C3_WITHHELD = "[C3 data withheld]"


def mask_vendor_record(record: object, mapping: object | None = None) -> list[tuple[str, str]]:
    """A raw vendor record as ``(field path, masked value)`` rows, masked field by field **by class**.

    A field the ``mapping`` maps to a canonical path is masked as that path's class says (a 12-digit mobile in the
    mobile field is a mobile, whatever its shape); a header field (id, modified stamp, type) is C1. Every other
    field falls back, failing closed: its value is masked unless it is clearly not personal (a short code, a
    boolean), after pattern masking of free text and the field-name hints (``name``, ``address``, ``birth``).
    Without a mapping every field takes the fallback. C3 authentication data (a key such as ``CARD_PIN``, or a
    name/value pair naming one) is never shown, masked or not: its value reads ``[C3 data withheld]``.
    """
    from crmbridge.canonical.c3 import _carries_data, _pair, c3_rule
    from crmbridge.core.logsafe import mask_text

    known = vendor_kinds(mapping, record) if mapping is not None else {}
    rows: list[tuple[str, str]] = []

    def walk(node: object, loc: tuple[str | int, ...], inherited: tuple[bool, str | None]) -> None:
        here = (True, known[loc]) if loc in known else inherited
        if isinstance(node, dict):
            pair = _pair(node)
            for k, v in node.items():
                if (pair is not None and str(k) == pair[0]) or (c3_rule(str(k)) and _carries_data(v)):
                    # C3 authentication data (a PIN, a CVV) is never shown, not even masked: a masked 4-digit PIN
                    # would still show half of it
                    rows.append((".".join(str(x) for x in (*loc, k)), C3_WITHHELD))
                    continue
                walk(v, (*loc, k), here)
            return
        if isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*loc, i), here)
            return
        label = ".".join(str(x) for x in loc)
        mapped, kind = here
        if node is None:
            rows.append((label, ""))
        elif mapped:
            rows.append((label, mask(kind, node) if kind else str(node)))
        else:
            rows.append((label, _fallback(label, node, mask_text)))

    walk(record, (), (False, None))
    return rows


def mask_vendor_payload(payload: object, mapping: object | None = None) -> object:
    """A vendor payload (or record) with the same shape, every leaf masked by class as :func:`mask_vendor_record`
    masks it: what the ledger keeps of a payload sent. A C1 leaf keeps its JSON type (``true``, ``3``); C3 data
    reads ``[C3 data withheld]``; a field the mapping does not know is masked failing closed. A classified value that
    already carries the mask character (the mapping's ``out_mask``) is kept as it was sent."""
    from crmbridge.canonical.c3 import _carries_data, _pair, c3_rule
    from crmbridge.core.logsafe import mask_text

    known = vendor_kinds(mapping, payload) if mapping is not None else {}

    def walk(node: object, loc: tuple[str | int, ...], inherited: tuple[bool, str | None]) -> object:
        here = (True, known[loc]) if loc in known else inherited
        if isinstance(node, dict):
            pair = _pair(node)
            out: dict[str, object] = {}
            for k, v in node.items():
                if (pair is not None and str(k) == pair[0]) or (c3_rule(str(k)) and _carries_data(v)):
                    out[str(k)] = C3_WITHHELD
                else:
                    out[str(k)] = walk(v, (*loc, k), here)
            return out
        if isinstance(node, list | tuple):
            return [walk(v, (*loc, i), here) for i, v in enumerate(node)]
        mapped, kind = here
        if node is None:
            return None
        if mapped:
            if kind:
                # a value the mapping already masked on the way out (out_mask: 183****2839) is kept as sent:
                # masking it again would hide more than the CRM holds and no longer match the CRM's copy
                return node if isinstance(node, str) and "*" in node else mask(kind, node)
            return node if isinstance(node, bool | int | float | str) else str(node)
        if isinstance(node, bool):
            return node
        return _fallback(".".join(str(x) for x in loc), node, mask_text)

    return walk(payload, (), (False, None))


def _fallback(label: str, value: object, mask_text: Callable[[str], str]) -> str:
    text = str(value)
    low = label.lower()
    if any(w in low for w in ("name", "名")):
        return mask("name", text)
    if any(w in low for w in ("addr", "street", "地址")):
        return mask("address", text)
    if any(w in low for w in ("birth", "dob", "amount", "aum", "balance", "capital", "income")):
        return "***"
    masked = mask_text(text)
    if masked != text:
        return masked
    return _unclassified(value)
