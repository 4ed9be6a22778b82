"""The fields a target receives, memoised per mapping, party type and payload shape, are exactly what a fresh
walk of the mapping's steps gives (the ledger's changed-field lists depend on it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import load_mapping
from crmbridge.canonical.model import parse_party
from crmbridge.core.paths import path_locations
from crmbridge.sync.merge import flatten
from crmbridge.sync.state.lineage import only_received, received_paths

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ["zoho_contacts", "zoho_accounts", "fxiaoke_accountobj", "fxiaoke_contactobj"]


def _reference(mapping: Any, party_type: str | None, payload: dict[str, Any] | None) -> list[str]:
    """The walk received_paths did before it was memoised."""
    def sent(step: Any) -> bool:
        return payload is None or any(path_locations(payload, vp) for vp in step.vendor_paths())

    paths = [p.text for s in mapping.spec.steps if s.runs("out") and (party_type is None or s.applies_to(party_type))
             and sent(s) for p in s.canonical_paths()]
    if mapping.spec.key_field:
        paths.append("party_id")
    return list(dict.fromkeys(paths))


def _covered(path: str, prefixes: list[str]) -> bool:
    return any(path == p or path.startswith((p + ".", p + "[")) or (p.endswith("]") and path.startswith(p))
               for p in prefixes)


@pytest.mark.parametrize("name", TARGETS)
def test_received_paths_and_only_received_match_a_fresh_walk(name: str) -> None:
    mapping = load_mapping(ROOT / "mappings" / f"{name}.yaml", profile=target_profile)
    for sample in ("party_individual", "party_organisation"):
        party = parse_party(json.loads((ROOT / "mappings" / "samples" / f"{sample}.json").read_text("utf-8")))
        ptype = str(party.party_type)
        if mapping.spec.party_type is not None and getattr(mapping.spec.party_type, "fixed", None) not in (None, ptype):
            continue
        try:
            full = mapping.map_out(party)
        except Exception:   # this target does not take this party type
            continue
        changed = {p: (None, v) for p, v in flatten(party.canonical_dict()).items()}
        # the whole payload, then with fields left out (as for want of consent), twice each (the memo's second use)
        keys = sorted(full)
        for payload in (full, {k: full[k] for k in keys[::2]}, {k: full[k] for k in keys[1::2]}, full, {}):
            for pt in (ptype, None):
                want = _reference(mapping, pt, payload)
                assert received_paths(mapping, pt, payload) == want
                assert only_received(changed, mapping, pt, payload) == {
                    p: v for p, v in changed.items() if _covered(p, want)}
        assert received_paths(mapping, ptype, None) == _reference(mapping, ptype, None)
