"""Privacy helpers the sync engine calls per record: consent gate, blind-index keys, masked ledger diffs, erasure.

- :func:`consent_gate` ``(party, purposes) -> (allowed, reason)``: a target declares the purposes it serves; a party
  lacking a granted, not withdrawn consent for one of them is not pushed (the engine records
  ``skipped-no-consent`` with the reason).
- :func:`identity_keys` ``(indexer, party)``: ``(scheme, blind index)`` pairs for the identity index, from the fields
  the canonical classification marks ``B`` (identifiers by scheme, contact points by type, names).
- :func:`ledger_changes` ``(before, after)``: changed field paths, masked before/after values (per each field's
  classification) and the clear diff the ledger encrypts under the party key.
- :func:`erase_party`: crypto-shredding plus row deletion for one party, recorded in the ledger, leaving a
  suppression entry (blind-indexed identifiers, source ids, the CRM records to propagate the erasure to) so that
  later runs skip the party (``suppressed-erased``) instead of ingesting it again (docs/erasure.md).
- :func:`lift_erasure`: the deliberate way back (a former customer opens a new account): ledgered with actor and
  reason; the next run of each job reading the party's source records ingests them as a new party.
- :func:`party_ids_for_identifier`: party ids by identifier (blind index), erased parties included.
- :func:`security_from_config`: the cipher and the ledger signer the configuration's ``keys:`` section describes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from crmbridge.canonical.classification import FieldPolicy, iter_classified_values
from crmbridge.core.errors import ConfigurationError, CrmBridgeError
from crmbridge.core.logsafe import mask_text
from crmbridge.sync.security.blindindex import BlindIndexer
from crmbridge.sync.security.crypto import FieldCipher, load_key_provider
from crmbridge.sync.security.protect import ENCRYPTED_COLUMNS
from crmbridge.sync.state.keys import as_connection
from crmbridge.sync.state.ledger import Action, Ledger, LedgerEntryIn, LedgerSigner

if TYPE_CHECKING:
    from crmbridge.sync.state.store import StoreTx

#: the caller's unit of work: a ``StoreTx`` (or, for older callers, a Connection or Session it wraps)
Unit = Any

__all__ = [
    "ErasureReport",
    "LedgerChanges",
    "LiftReport",
    "Security",
    "consent_gate",
    "erase_party",
    "identity_keys",
    "ledger_changes",
    "lift_erasure",
    "party_ids_for_identifier",
    "security_from_config",
]


@dataclass
class Security:
    """The key material a sync run needs, built once by the composition root."""

    cipher: FieldCipher
    signer: LedgerSigner | None

    def ledger(self, tx: Unit, *, checkpoint_every: int = 1000) -> Ledger:
        """A ledger in the caller's unit of work, encrypting diffs and signing checkpoints."""
        return _unit(tx).ledger(self.signer, cipher=self.cipher, checkpoint_every=checkpoint_every)  # type: ignore[no-any-return]

    def indexer(self, tx: Unit, *, bits: int = 64) -> BlindIndexer:
        return BlindIndexer.from_cipher(_unit(tx), self.cipher, bits=bits)


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
    #: blind-indexed identities and source records that now suppress the party in every later run
    suppressed_by: int = 0
    #: CRM records (system.object/external id) the erasure is to be propagated to by the next run of their job
    to_propagate: list[str] = field(default_factory=list)


def erase_party(tx: Unit, cipher: FieldCipher, party_id: object, *, ledger: Ledger | None = None,
                reason: str = "erasure request (PIPL Art. 47)", actor: str = "user",
                drop_xref: bool = False, targets: Iterable[tuple[str, str]] | None = None) -> ErasureReport:
    """Remove a party's personal data from crmbridge's stores, for good, inside the caller's unit of work
    (a ``StoreTx``).

    1. Records the suppression entry (``erasures`` / ``erasure_keys``): the party's blind-indexed identities
       (its identity-index entries and the blind index of each identifier it held), the vendor records it was
       known as (cross-references), its objects' vendor records (holdings, cases: the cross-references of the
       objects stored for it), and, for those in ``targets`` (the (system, object) the jobs write to), a
       pending propagation the next run of each such job carries out by its delete policy. Later runs skip
       every record matching it with a ledgered ``suppressed-erased``: nothing is ingested or pushed again.
    2. Deletes the rows that belong to the party: every registered encrypted column's table with a party column
       (snapshots, conflicts), its identity-index entries, and the dead letters and read hashes of its known
       external ids.
    3. Destroys the party's data keys: every ciphertext under them (including ledger diffs, which cannot be
       deleted) becomes unreadable. The ledger chain still verifies: its hashes cover the ciphertext.
    4. Appends an ``erased`` ledger entry (party id + reason only).

    The cross-reference (vendor ids → party id, C1) is kept by default; ``drop_xref=True`` deletes it too (the
    suppression entry keeps what the propagation needs). Erasing an erased party again is harmless.
    """
    tx = _unit(tx)
    pid = str(party_id)
    report = ErasureReport(pid)
    existing = tx.table_names()
    target_set = {(str(s), str(o)) for s, o in targets or ()}

    def count(table: str, n: int) -> None:
        if n:
            report.rows_deleted[table] = report.rows_deleted.get(table, 0) + n

    refs: list[tuple[str, str, str]] = tx.xrefs_for_party(pid) if "xref" in existing else []
    if "object_records" in existing and "xref" in existing:
        # its objects (holdings, cases) as the vendors know them: suppressed at the sources, and erased at the
        # CRMs by each object job's delete policy; their stored records are shredded below with the party's
        for _kind, oid in tx.object_ids_of_party(pid):
            refs += [r for r in tx.xrefs_for_party(oid) if r not in refs]
    if "erasures" in existing:
        identities, party_type = _identities_before_erasure(tx, cipher, pid, existing)
        sources = [r for r in refs if (r[0], r[1]) not in target_set]
        crm = [r for r in refs if (r[0], r[1]) in target_set]
        eid = tx.add_erasure(pid, reason=mask_text(reason), actor=actor, party_type=party_type,
                             identities=identities, sources=sources, targets=crm)
        report.suppressed_by = len(tx.erasure_keys_of(eid, "identity")) + len(tx.erasure_keys_of(eid, "source"))
        report.to_propagate = [f"{k['system']}.{k['object']}/{k['external_id']}"
                               for k in tx.erasure_keys_of(eid, "target") if k["propagation"] == "pending"]
    if refs:
        if "dead_letters" in existing:
            count("dead_letters", tx.delete_dead_letters_for(refs))
        if "read_hashes" in existing:   # the keyed hashes of its records as each job last read them
            count("read_hashes", tx.delete_read_hashes_for(refs))
        if drop_xref:
            count("xref", tx.delete_xrefs_of_party(pid))
    for tname in sorted({reg.table for reg in ENCRYPTED_COLUMNS.values() if reg.party_column}):
        if tname not in existing:
            continue
        pcol = next(reg.party_column for reg in ENCRYPTED_COLUMNS.values() if reg.table == tname and reg.party_column)
        count(tname, tx.delete_party_rows(tname, pcol, pid))
    if "identity_index" in existing:
        count("identity_index", tx.remove_identities(pid))
    report.keys_destroyed = cipher.destroy_party_keys(tx, pid)
    if ledger is not None:
        appended = ledger.append([LedgerEntryIn(action=Action.ERASED, party_id=pid, actor=actor, reason=reason,
                                                changed_fields=sorted(report.rows_deleted))])
        report.ledger_seq = appended[0].seq
    return report


def _identities_before_erasure(tx: StoreTx, cipher: FieldCipher, pid: str,
                               existing: set[str]) -> tuple[list[tuple[str, str]], str | None]:
    """The blind-indexed identities that must keep suppressing the party, read before its rows and keys go: its
    identity-index entries (the jobs' match keys) plus the identifier blind index of every identifier its
    snapshots hold (so a job matching on another identifier scheme is covered too); and its party type (C1)."""
    from crmbridge.canonical.model import parse_party

    out: list[tuple[str, str]] = []
    if "identity_index" in existing:
        out += tx.identities_of(pid)
    party_type = None
    if "snapshots" in existing:
        indexer = BlindIndexer.from_cipher(tx, cipher)
        for r in tx.snapshots_of_party(pid):
            if not r["blob"]:
                continue   # a source read's hash only
            try:
                data = tx.unseal(cipher, "snapshots", "blob", row=r, token=r["blob"])
                party = parse_party({**data, "party_id": pid})
            except (CrmBridgeError, ValueError):
                continue   # already shredded, or not a whole party: the identity index still covers the match keys
            party_type = party_type or str(_val(party.party_type))
            for ident_ in getattr(party, "identifiers", None) or []:
                if ident_.value:
                    out.append((str(_val(ident_.scheme)), indexer.identifier(str(_val(ident_.scheme)),
                                                                             str(ident_.value))))
    return list(dict.fromkeys(out)), party_type


@dataclass
class LiftReport:
    party_ids: list[str] = field(default_factory=list)
    #: (job, system.object/external id): source records each job reads again at its next run
    rereads: list[tuple[str, str]] = field(default_factory=list)
    ledger_seqs: list[int] = field(default_factory=list)


def lift_erasure(tx: Unit, cipher: FieldCipher, *, reason: str, actor: str, party_id: str | None = None,
                 identifier: tuple[str, str] | None = None, ledger: Ledger | None = None,
                 job_sources: Mapping[str, tuple[str, str]] | None = None) -> LiftReport:
    """Lift the erasure of a party who came back as a customer (e.g. a new account opening), by party id or by
    identifier (``("CN_RIC", "1101...")``, looked up by blind index), inside the caller's unit of work.

    The erasure stops suppressing the party's identities and source records; the source cross-references of the
    erased party id are removed, so the person is ingested as a NEW party (a new party id and data key: the
    erased history stays unreadable and unlinked); each job of ``job_sources`` (job → its source system and
    object) gets the party's source records due for a re-read at its next run (a dead letter with reason
    ``erasure_lifted``, no payload). The CRM records the erasure was propagated to stay suppressed. Ledgered as
    ``erasure-lifted`` with the actor and reason.

    Raises:
        ConfigurationError: no reason given, or no erasure in force for that party or identifier.
    """
    from crmbridge.sync.state.store import ERASURE_SOURCE, utcnow

    if not reason or not reason.strip():
        raise ConfigurationError("lifting an erasure needs a reason (recorded in the ledger)", where="--reason")
    if (party_id is None) == (identifier is None):
        raise ConfigurationError("give the erased PARTY_ID or --identifier SCHEME:VALUE (one of them)")
    tx = _unit(tx)
    if identifier is not None:
        scheme, value = identifier
        bidx = BlindIndexer.from_cipher(tx, cipher).identifier(scheme, value)
        found = tx.list_erasures(identity=(scheme.upper(), bidx), in_force=True)
        what = f"identifier {scheme.upper()}:{mask_text(value)}"
    else:
        found = tx.list_erasures(party_id=str(party_id), in_force=True)
        what = f"party {party_id}"
    if not found:
        raise ConfigurationError(f"no erasure in force for {what}", where="erase --lift")
    report = LiftReport()
    now = utcnow()
    for er in found:
        pid = er["party_id"]
        tx.lift_erasure(er["id"], actor=actor, reason=mask_text(reason))
        report.party_ids.append(pid)
        for k in tx.erasure_keys_of(er["id"], ERASURE_SOURCE):
            system, obj, ext = k["system"], k["object"], k["external_id"]
            tx.delete_xref(system, obj, ext, party_id=pid)
            for job, (s_sys, s_obj) in sorted((job_sources or {}).items()):
                if (s_sys, s_obj) != (system, obj):
                    continue
                tx.add_dead_letter(job, stage="erasure-lift", reason_code="erasure_lifted",
                                   message=f"the erasure of party {pid} was lifted: read again, to be ingested as a "
                                           "new party", source_system=system, source_object=obj, external_id=ext,
                                   payload=None, next_attempt_at=now)
                report.rereads.append((job, f"{system}.{obj}/{ext}"))
        if ledger is not None:
            appended = ledger.append([LedgerEntryIn(action=Action.ERASURE_LIFTED, party_id=pid, actor=actor,
                                                    reason=reason)])
            report.ledger_seqs.append(appended[0].seq)
    return report


def party_ids_for_identifier(tx: Unit, cipher: FieldCipher, scheme: str, value: str) -> list[str]:
    """Party ids known by identifier ``scheme:value`` (blind index): the identity index, then erased parties
    (whose identity-index entries are gone but whose suppression entry keeps the blind index), so a party's
    history, erasure included, is still found by identifier."""
    tx = _unit(tx)
    bidx = BlindIndexer.from_cipher(tx, cipher).identifier(scheme, value)
    scheme = scheme.upper()
    ids = tx.lookup_identity(scheme, bidx)
    if "erasure_keys" in tx.table_names():
        ids += tx.erased_parties_by_identity(scheme, bidx)
    return list(dict.fromkeys(ids))


def _unit(where: Unit) -> StoreTx:
    """The caller's unit of work; a bare Connection or Session (older callers, tests) is given one."""
    from crmbridge.sync.state.store import StoreTx, utcnow

    if isinstance(where, StoreTx):
        return where
    return StoreTx(as_connection(where), utcnow)
