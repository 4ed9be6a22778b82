"""Identity cross-referencing: which existing party a new record is.

A job's match rules name the values that identify a person (an ID number, a mobile and a name...). Each rule the
party has every value of gives a key: the rule's name and the blind index of its values (never the values
themselves). A new record whose key is already indexed is that party; two parties under one key are sent to
review, never guessed between.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crmbridge.canonical.model import Party
from crmbridge.core.errors import RecordError
from crmbridge.sync.state.store import StoreTx

__all__ = ["identity_keys", "index_identities", "match_party", "match_value"]


def identity_keys(indexer: Any, match_rules: Sequence[Sequence[str]], party: Party) -> list[tuple[str, str]]:
    """(rule, blind index) for each configured match rule the party has every value of."""
    out: list[tuple[str, str]] = []
    for rule in match_rules:
        values = [match_value(party, key) for key in rule]
        if any(v is None for v in values):
            continue
        if len(rule) == 1:
            out.append((rule[0], indexer.identifier(rule[0], values[0] or "")))
        else:
            name = "+".join(rule)
            out.append((name, indexer.index(f"match.{name}", "|".join(v or "" for v in values), kind="raw")))
    return out


def match_party(tx: StoreTx, keys: Sequence[tuple[str, str]]) -> str | None:
    """The existing party of the first key (see :func:`identity_keys`) that finds one; ambiguity is an error for
    review, never a guess."""
    for name, bidx in keys:
        hits = tx.lookup_identity(name, bidx)
        if len(hits) > 1:
            raise RecordError(f"match rule {name} finds {len(hits)} parties; sent to review instead of guessing",
                              code="ambiguous_match")
        if hits:
            return hits[0]
    return None


def index_identities(tx: StoreTx, keys: Sequence[tuple[str, str]], party_id: str) -> None:
    """Index ``party_id`` under each of its keys."""
    for name, bidx in keys:
        tx.add_identity(name, bidx, party_id)


def match_value(party: Party, key: str) -> str | None:
    if key.isupper():
        ident = party.primary_identifier(key)
        return ident.value if ident is not None else None
    if key in ("mobile", "landline", "email", "wechat_openid"):
        cp = party.contact(key.upper())
        return cp.value if cp is not None else None
    if key == "name":
        name = getattr(party, "name", None)
        return getattr(name, "legal_zh", None) or getattr(name, "en", None)
    if key == "date_of_birth":
        dob = getattr(party, "date_of_birth", None)
        return dob.isoformat() if dob else None
    return None

