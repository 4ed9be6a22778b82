"""Classification and masking of canonical paths, read from the classification the canonical model declares."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from crmbridge.canonical.classification import FieldPolicy, policy_for
from crmbridge.canonical.identifiers import ORGANISATION_SCHEMES, PERSON_SCHEMES
from crmbridge.canonical.mapping.introspect import _classes_for
from crmbridge.core.masking import mask
from crmbridge.core.paths import Path, parse_path

#: schemes only a legal entity carries: its registration number may go out to a CRM in full (docs/canonical.md §3)
_ORG_SCHEMES = frozenset(str(s) for s in ORGANISATION_SCHEMES - PERSON_SCHEMES)


def _policy(path: Path, party_type: str | None) -> FieldPolicy | None:
    for cls in _classes_for(party_type):
        try:
            pol = policy_for(path.template(), cls)
        except (KeyError, TypeError):
            continue
        if pol.mask_by:
            sel = path.selector_value(pol.mask_by)
            pol = pol.resolve(sel) if sel is not None else pol
        return pol
    return None


def mask_kind_for(path: Path | str, party_type: str | None = None) -> str | None:
    """How a value at canonical ``path`` is masked for display: a mask kind, or ``None`` for non-personal (C1) data.

    Uses the classification declared on the canonical model; identifiers and contact points take their kind from the
    path's selector (``identifiers[scheme=CN_RIC].value`` → ``ric``). Text paths are answered from a cache once the
    model is importable (the ledger asks for every changed field of every record: a hot path).
    """
    if isinstance(path, str):
        return _mask_kind_cached(path, party_type)
    return _mask_kind(path, party_type)


@lru_cache(maxsize=16384)
def _mask_kind_cached(path: str, party_type: str | None) -> str | None:
    return _mask_kind(parse_path(path), party_type)


def _mask_kind(p: Path, party_type: str | None) -> str | None:
    pol = _policy(p, party_type)
    if pol is None:     # not a leaf of the model: the mapping's compile step reports the path
        return None
    if not pol.is_personal and not pol.keep_masked:
        return None
    return pol.mask_kind or "generic"


def _crm_projection(path: Path, party_type: str | None) -> str | None:
    pol = _policy(path, party_type)
    return str(pol.crm.value) if pol is not None else None


def _show(value: Any, kind: str | None) -> str:
    """A value for an error message: masked unless known to be non-personal."""
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v, kind) for v in value) + "]"
    return mask(kind or "generic", value) if kind != "none" else repr(value)
