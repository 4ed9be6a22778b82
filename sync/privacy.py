"""Privacy helpers the sync engine calls per record: consent gate, blind-index keys, masked ledger diffs, erasure.

- :func:`consent_gate` ``(party, purposes) -> (allowed, reason)``: a target declares the purposes it serves; a party
  lacking a granted, not withdrawn consent for one of them is not pushed (the engine records
  ``skipped-no-consent`` with the reason).
- :func:`identity_keys` ``(indexer, party)``: ``(scheme, blind index)`` pairs for the identity index, from the fields
  the canonical classification marks ``B`` (identifiers by scheme, contact points by type, names).
- :func:`ledger_changes` ``(before, after)``: changed field paths, masked before/after values (per each field's
  classification) and the clear diff the ledger encrypts under the party key.
- :func:`erase_party`: crypto-shredding plus row deletion for one party, recorded in the ledger.
- :func:`security_from_config`: the cipher and the ledger signer the configuration's ``keys:`` section describes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, select, tuple_

from crmbridge.canonical.classification import FieldPolicy, iter_classified_values
from crmbridge.core.logsafe import mask_text
from crmbridge.sync.blindindex import BlindIndexer
from crmbridge.sync.crypto import Conn, FieldCipher, as_connection, load_key_provider
from crmbridge.sync.db import import_models
from crmbridge.sync.ledger import Action, Ledger, LedgerEntryIn, LedgerSigner
from crmbridge.sync.protect import ENCRYPTED_COLUMNS

__all__ = [
    "ErasureReport",
    "LedgerChanges",
    "Security",
    "consent_gate",
    "erase_party",
    "identity_keys",
    "ledger_changes",
    "security_from_config",
]


@dataclass
class Security:
    """The key material a sync run needs, built once by the composition root."""

    cipher: FieldCipher
    signer: LedgerSigner | None

    def ledger(self, conn: Conn, *, checkpoint_every: int = 1000) -> Ledger:
        """A ledger in the caller's transaction, encrypting diffs and signing checkpoints."""
        return Ledger(conn, self.signer, cipher=self.cipher, checkpoint_every=checkpoint_every)

    def indexer(self, conn: Conn, *, bits: int = 64) -> BlindIndexer:
        return BlindIndexer.from_cipher(conn, self.cipher, bits=bits)


def security_from_config(config: Any, master_key: str | None = None) -> Security:
    """:class:`Security` from a loaded ``CrmBridgeConfig`` (its ``keys`` section and ``base_dir``).

    ``master_key`` overrides ``keys.master_key`` (a reference), e.g. the previous key during a rewrap.
    """
    keys = config.keys
    provider = load_key_provider(master_key or keys.master_key,
                                 provider=None if master_key else keys.effective_provider,
                                 algorithm=keys.algorithm, base_dir=config.base_dir)
    signer = LedgerSigner.load(keys.signing_key, base_dir=config.base_dir) if keys.signing_key else None
    return Security(FieldCipher(provider, algorithm=keys.algorithm), signer)


# ------------------------------------------------------------------------------------------------ consent


def consent_gate(party: Any, purposes: str | Iterable[str] | None, *,
                 at: datetime | None = None) -> tuple[bool, str]:
    """Whether ``party`` may be pushed to a target serving ``purposes``, and why.

    Every declared purpose needs a consent in force at ``at`` (default now): the latest record for the purpose
    captured by then is GRANTED and not withdrawn. No declared purpose means the target only services the
    contract (PIPL 13(2)) and needs no consent.

    Returns:
        ``(True, "…")`` or ``(False, "no consent in force for MARKETING_SMS")`` — reasons carry no personal data.
    """
    wanted = [purposes] if isinstance(purposes, str) else list(purposes or [])
    wanted = [str(getattr(p, "value", p)) for p in wanted]
    if not wanted:
        return True, "target declares no consent-based purpose"
    when = at or datetime.now(UTC)
    missing = [p for p in wanted if not _consented(party, p, when)]
    if missing:
        return False, f"no consent in force for {', '.join(missing)}"
    return True, f"consent in force for {', '.join(wanted)}"


def _consented(party: Any, purpose: str, at: datetime) -> bool:
    has = getattr(party, "has_consent", None)
    if callable(has):
        try:
            return bool(has(purpose, at))
        except ValueError:
            return False
    records = [c for c in _get(party, "consents") or [] if str(_val(_get(c, "purpose"))) == purpose]
    records = [c for c in records if _when(_get(c, "captured_at")) is None or _when(_get(c, "captured_at")) <= at]
    if not records:
        return False
    latest = max(records, key=lambda c: _when(_get(c, "captured_at")) or datetime.min.replace(tzinfo=UTC))
    withdrawn = _when(_get(latest, "withdrawn_at"))
    status = str(_val(_get(latest, "status")))
    if status == "WITHDRAWN" and withdrawn is None:
        return False
    return status in ("GRANTED", "WITHDRAWN") and (withdrawn is None or withdrawn > at)


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _val(v: Any) -> Any:
    return getattr(v, "value", v)


def _when(v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = datetime.fromisoformat(v.replace("Z", "+00:00"))
    return v if v.tzinfo else v.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ indexes


def identity_keys(indexer: BlindIndexer, party: BaseModel) -> list[tuple[str, str]]:
    """``(scheme, blind index)`` for every blind-indexed value of ``party`` (``CN_RIC``, ``MOBILE``, ``NAME``...).

    Identifiers and contact points are indexed as ``scheme|value`` under their scheme / type; other ``B`` fields
    (names) under their template path.
    """
    out: list[tuple[str, str]] = []
    for path, value, pol in iter_classified_values(party):
        if not pol.blind_index or value is None:
            continue
        if pol.index_by is not None:
            parent = _parent(party, path)
            scheme = str(_val(getattr(parent, pol.index_by, None)))
            out.append((scheme, indexer.identifier(scheme, str(value))))
        else:
            kind = "name" if pol.mask_kind == "name" else "text"
            out.append((pol.path, indexer.index(pol.path, str(value), kind=kind)))
    return list(dict.fromkeys(out))


def _parent(root: Any, path: str) -> Any:
    steps = [m.group(1) if m.group(1) is not None else int(m.group(2))
             for m in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", path)][:-1]
    obj = root
    for s in steps:
        obj = obj[s] if isinstance(s, int) else getattr(obj, s)
    return obj


# ------------------------------------------------------------------------------------------------ diffs


@dataclass
class LedgerChanges:
    """What the ledger records for a change: field names, masked values and the clear diff (to be encrypted)."""

    changed_fields: list[str]
    before: dict[str, str | None]
    after: dict[str, str | None]
    diff: dict[str, list[Any]]


def _flat(party: BaseModel | None) -> dict[str, tuple[Any, FieldPolicy]]:
    if party is None:
        return {}
    return {p: (v, pol) for p, v, pol in iter_classified_values(party)}


def _show(value: Any, pol: FieldPolicy) -> str | None:
    if value is None:
        return None
    shown = pol.mask(value) if (pol.is_personal or pol.keep_masked) else str(getattr(value, "value", value))
    return mask_text(shown)


def ledger_changes(before: BaseModel | None, after: BaseModel | None,
                   ignore: Iterable[str] = ("version", "updated_at", "synced_at", "created_at")) -> LedgerChanges:
    """Compare two versions of a party field by field (canonical paths with indices).

    Masked values follow each field's classification (C2 masked by its kind, C1 shown); the diff holds the
    clear ``[old, new]`` pairs (JSON-able) and must only be stored encrypted (the ledger does that).
    """
    a, b = _flat(before), _flat(after)
    skip = set(ignore)
    changed, mb, ma, diff = [], {}, {}, {}
    for path in sorted(set(a) | set(b)):
        if path.split("[")[0].split(".")[0] in skip:
            continue
        old, new = a.get(path, (None, None))[0], b.get(path, (None, None))[0]
        if old == new:
            continue
        pol = (b.get(path) or a.get(path))[1]  # type: ignore[index]
        changed.append(path)
        mb[path], ma[path] = _show(old, pol), _show(new, pol)
        diff[path] = [_json(old), _json(new)]
    return LedgerChanges(changed, mb, ma, diff)


def _json(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(getattr(v, "value", v))


# ------------------------------------------------------------------------------------------------ erasure


@dataclass
class ErasureReport:
    party_id: str
    keys_destroyed: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)
    ledger_seq: int | None = None


def erase_party(conn: Conn, cipher: FieldCipher, party_id: object, *, ledger: Ledger | None = None,
                reason: str = "erasure request (PIPL Art. 47)", actor: str = "user",
                drop_xref: bool = False) -> ErasureReport:
    """Remove a party's personal data from crmbridge's stores, for good, inside the caller's transaction.

    1. Deletes the rows that belong to the party: every registered encrypted column's table with a party column
       (snapshots, conflicts), its identity-index entries, and dead letters of its known external ids.
    2. Destroys the party's data keys: every ciphertext under them (including ledger diffs, which cannot be
       deleted) becomes unreadable. The ledger chain still verifies: its hashes cover the ciphertext.
    3. Appends an ``erased`` ledger entry (party id + reason only).

    The cross-reference (vendor ids → party id, C1) is kept by default so the deletion can still be propagated
    to every CRM; ``drop_xref=True`` deletes it too.
    """
    c = as_connection(conn)
    pid = str(party_id)
    report = ErasureReport(pid)
    md = import_models()
    existing = set(c.dialect.get_table_names(c))

    def count(table: str, n: int) -> None:
        if n:
            report.rows_deleted[table] = report.rows_deleted.get(table, 0) + n

    xref = md.tables.get("xref")
    if xref is not None and "xref" in existing:
        refs = [tuple(r) for r in c.execute(select(xref.c.system, xref.c.object, xref.c.external_id)
                                            .where(xref.c.party_id == pid))]
        dl = md.tables.get("dead_letters")
        if refs and dl is not None and "dead_letters" in existing:
            for i in range(0, len(refs), 200):
                chunk = refs[i:i + 200]
                count("dead_letters", c.execute(delete(dl).where(
                    tuple_(dl.c.source_system, dl.c.source_object, dl.c.external_id).in_(chunk))).rowcount or 0)
        if drop_xref:
            count("xref", c.execute(delete(xref).where(xref.c.party_id == pid)).rowcount or 0)
    for tname in sorted({reg.table for reg in ENCRYPTED_COLUMNS.values() if reg.party_column}):
        table = md.tables.get(tname)
        if table is None or tname not in existing:
            continue
        pcol = next(reg.party_column for reg in ENCRYPTED_COLUMNS.values() if reg.table == tname and reg.party_column)
        count(tname, c.execute(delete(table).where(table.c[pcol] == pid)).rowcount or 0)
    ident = md.tables.get("identity_index")
    if ident is not None and "identity_index" in existing:
        count("identity_index", c.execute(delete(ident).where(ident.c.party_id == pid)).rowcount or 0)
    report.keys_destroyed = cipher.destroy_party_keys(c, pid)
    if ledger is not None:
        appended = ledger.append([LedgerEntryIn(action=Action.ERASED, party_id=pid, actor=actor, reason=reason,
                                                changed_fields=sorted(report.rows_deleted))])
        report.ledger_seq = appended[0].seq
    return report
