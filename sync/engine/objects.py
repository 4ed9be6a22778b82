"""Object jobs: canonical objects beside the party (holdings first, then interactions) through the same engine.

A job whose mappings declare a canonical object other than ``Party`` (``canonical: Holding``) runs this pipeline
instead of the party's; everything around the batch is the one-way run's (cursor, dead-letter retries first,
extraction oldest first, closures, lease, ledger checkpoints, dry runs)::

    extract ─► map in ─► resolve the parent ─► diff ─► map out (lookup = parent's target id) ─► (intents) ─► write
                  │              │                │                                                    │
             dead letter   parent not synced:   unchanged: no call        ledger + xref + object record + cursor
                           a retryable letter                              in ONE transaction per batch

* **Identity is the object's own**: the source record's id is cross-referenced to the object's canonical id
  (``holding_id``), minted once and committed before any write; no match rules, no personal identifiers.
* **Parent before child**: the owning party is found through the cross-reference the party job keeps (the job's
  ``parent.source``: the id the object carries in ``party_source``), then its id in the target (``parent
  .target_object``), which fills the lookup field (``party_source.system_id`` on the way out). A child whose parent
  is not in the target yet is never written: it becomes a dead letter ``parent_not_synced``, due at once, that
  every later run fetches again until the parent is there (its attempts are not counted against the job's maximum:
  waiting for a parent is not failing).
* **Closed objects**: a tombstone in the source feed or a CLOSED status is deactivated, deleted or left per the
  job's ``delete_policy`` (``closed_on`` is the closing change's date when the feed carries none).
* **Stored for the rules**: the canonical object as last read, sealed under the owning party's data key, in
  ``object_records`` (``StoreTx.holdings_of``); the target snapshot keeps only the written payload's hash.
* **Personal record ids are pseudonyms**: when the source's record id is personal data (a FLEXCUBE account
  number, C2: the mapping maps the same vendor field to a C2/C3 canonical path), the engine never keeps it: the
  cross-reference, cursor boundary, dead letters and ledger carry ``h:`` + a keyed hash of it (HMAC under the
  blind-index key, per system and object), computed the same way at every read, so nothing else changes.
* **Update-only targets**: a target mapping whose ``key_field`` is its record id (Zoho Cases by ``id``: the status
  of a case coming back from the bank) only updates records the cross-reference links to the object; anything else
  is out of scope before it is even mapped, and nothing is created.
* **Erasure**: an erased party's objects are suppressed at every read (by record id, or by their owner), their CRM
  records anonymised (:func:`anonymised_object_payload`) or deleted per the delete policy by the next run, never at a
  bank system of record (retained: a complaint is a regulatory record); their stored records go with the party's.
* **Exactly once**: the Zoho upsert by the key field, or, where the target has no upsert, the write-intent journal
  and a lookup by key before repeating a create (the party path's :meth:`_guard_intents`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crmbridge.adapters.base import UNCERTAIN_CODES, RawRecord, WriteItem
from crmbridge.canonical.c3 import refuse_c3, without_c3
from crmbridge.canonical.model import SourceRef, hash_canonical
from crmbridge.canonical.objects import CanonicalObject, parse_object
from crmbridge.core.errors import ConfigurationError, CrmBridgeError, FatalSyncError, RecordError
from crmbridge.sync.engine.context import BatchKind, CursorState, Decision, RunContext
from crmbridge.sync.engine.hashing import payload_hash, record_hash
from crmbridge.sync.engine.oneway import OneWay
from crmbridge.sync.engine.records import TOMBSTONE
from crmbridge.sync.merge import flatten
from crmbridge.sync.report import outcome_of
from crmbridge.sync.state.ledger import Action, LedgerEntryIn
from crmbridge.sync.state.store import DeadLetterStatus, StoreTx

__all__ = ["PARENT_NOT_SYNCED", "PSEUDONYM", "ObjectDecision", "ObjectSync", "anonymised_object_payload",
           "is_object_job", "map_source_object",
           "personal_record_id", "record_pseudonym", "update_only"]

log = logging.getLogger(__name__)

#: the dead-letter reason of a child whose parent is not in the target yet (retried by every later run)
PARENT_NOT_SYNCED = "parent_not_synced"


#: the prefix of a pseudonymous record id (a record id that is personal data, never kept as read)
PSEUDONYM = "h:"


def personal_record_id(mapping: Any) -> bool:
    """Whether ``mapping``'s record id (its ``external_id`` field) is personal data: a step maps the same vendor
    field to a canonical path classed C2 or C3 (worked out once per mapping; a path of unknown class counts as
    personal, failing closed)."""
    cached = getattr(mapping, "_personal_record_id", None)
    if cached is not None:
        return bool(cached)
    from crmbridge.canonical.classification import policy_for
    from crmbridge.canonical.objects import object_classes

    ext = getattr(mapping.spec, "external_id", None)
    ext_text = str(getattr(ext, "text", ext) or "")
    classes = object_classes(mapping.canonical)
    personal = False
    for step in mapping.spec.steps:
        if not ext_text or not any(str(getattr(vp, "text", vp)) == ext_text for vp in step.vendor_paths()):
            continue
        for cp in step.canonical_paths():
            try:
                personal = personal or policy_for(cp.text, classes).data_class != "C1"
            except (KeyError, TypeError, ValueError):
                personal = True
    try:
        mapping._personal_record_id = personal
    except AttributeError:   # a mapping object that takes no attributes: worked out each time
        pass
    return personal


def record_pseudonym(rt: Any, system: str, obj: str, record_id: str) -> str:
    """The pseudonym a personal record id is kept under: ``h:`` + the HMAC-SHA-256 of ``system/object/id`` under
    the blind-index key of record ids (the same at every read; only the key's holder can compute it)."""
    key = rt.indexer().field_key("record-id")
    return PSEUDONYM + hmac.new(key, f"{system}/{obj}/{record_id}".encode(), hashlib.sha256).hexdigest()[:40]


def update_only(mapping: Any) -> bool:
    """Whether ``mapping`` writes its target only by the target's own record id (its ``key_field`` is its
    ``external_id``, e.g. Zoho Cases by ``id``): the job updates records the target already holds and that the
    cross-reference links to the object, and never creates one (a case's status coming back to the CRM)."""
    spec = mapping.spec
    return spec.key_field is not None and spec.key_field == spec.external_id


def map_source_object(mapping: Any, raw: RawRecord, oid: str | None, *, where: str) -> CanonicalObject:
    """A source record as its canonical object, as an object job reads it (reconcile projects it the same way): a
    tombstone is CLOSED, and a closure without a date is dated by its closing change.

    Raises:
        RecordError: the record cannot be mapped or is not a valid object.
    """
    refuse_c3(raw.data, where=where)
    data = mapping.map_in(raw.data, party_id=uuid.UUID(oid) if oid else None)
    fields, when = _fields(mapping.canonical), raw.modified_at or datetime.now(UTC)
    if raw.deleted and "status" in fields:
        data["status"] = "CLOSED"
    if data.get("status") == "CLOSED" and not data.get("closed_on") and "closed_on" in fields:
        data["closed_on"] = when.date().isoformat()          # a holding closed by this change
    if data.get("status") in ("RESOLVED", "CLOSED") and not data.get("closed_at") and "closed_at" in fields:
        data["closed_at"] = when.isoformat()                 # a case closed by this change
    return parse_object(mapping.canonical, data, where=where)


def anonymised_object_payload(side: Any) -> dict[str, Any]:
    """What an erased party's object at a CRM is overwritten with: every field the mapping writes emptied (its
    lookup to the party included), the status CLOSED where the mapping writes one, and the placeholder name in
    each field the target requires (docs/erasure.md)."""
    from crmbridge.canonical.mapping.steps import CodeStep
    from crmbridge.sync.engine.erasure import ERASED_NAME

    mapping = side.mapping
    payload: dict[str, Any] = dict.fromkeys(mapping.vendor_fields("out"))
    payload.pop(mapping.spec.key_field or "", None)
    for step in mapping.spec.steps:
        if not step.runs("out") or [p.text for p in step.canonical_paths()] != ["status"]:
            continue
        vendors = [str(getattr(v, "text", v)) for v in step.vendor_paths()]
        if len(vendors) != 1:
            continue
        value: Any = "CLOSED"
        if isinstance(step, CodeStep):
            table = mapping.spec.code_tables.get(step.table)
            value = (table.out.get("CLOSED") or table.inverse()[0].get("CLOSED")) if table is not None else None
        if value is not None:
            payload[vendors[0]] = value
    for f in side.adapter.describe(side.object):
        if f.required and not f.read_only and f.name in payload and payload[f.name] is None:
            payload[f.name] = ERASED_NAME
    return payload


def is_object_job(ctx: RunContext) -> bool:
    """Whether the run's mappings both map the same canonical object other than the party (a job mapping another
    object onto a party, e.g. campaign responses as consent updates, is the party path's)."""
    return ctx.source.mapping.canonical != "Party" and ctx.target.mapping.canonical == ctx.source.mapping.canonical


@dataclass
class ObjectDecision(Decision):
    """A party-path decision plus the object's own id; ``party_id`` is the owning party's (the ledger's subject)."""

    object_id: str | None = None
    obj: CanonicalObject | None = None
    closed: bool = False


class ObjectSync(OneWay):
    """The object pipeline (a part of :class:`~crmbridge.sync.engine.runner.JobRunner`; see the module docstring)."""

    def check_object_job(self) -> None:
        """A configuration error before the run when an object job is not one this engine can run."""
        job, rt = self.job, self.rt
        src, tgt = rt.mapping(job.source_mapping), rt.mapping(job.target_mapping)
        if src.canonical == "Party" or src.canonical != tgt.canonical:
            return   # a party job, or another object onto a party (the party path decides what it accepts)
        where = f"job {self.name}"
        if job.direction != "one_way":
            raise ConfigurationError(f"{where}: {src.canonical} jobs run one way (direction: one_way)")
        if job.parent is None:
            raise ConfigurationError(f"{where}: a {src.canonical} job needs 'parent' (source: the system.Object of "
                                     "its owning party's ids, target_object: the target's object holding the party)")

    # -- hooks of the one-way run --------------------------------------------------------------
    def process_batch(self, ctx: RunContext, raws: list[RawRecord], kind: BatchKind = BatchKind.EXTRACT, *,
                      cursor: CursorState | None = None) -> None:
        if not is_object_job(ctx):
            super().process_batch(ctx, raws, kind, cursor=cursor)
            return
        self._object_batch(ctx, raws, cursor if kind is BatchKind.EXTRACT else None, retry=kind is BatchKind.RETRY)

    def propagate_erasures(self, ctx: RunContext) -> None:
        """The party path's propagation, but a bank system of record (the complaint service: a complaint is a
        regulatory record, kept for its retention period, PIPL Art. 47 §2) is not erased by crmbridge: its pending
        propagations are closed as ``retained`` and ledgered ``suppressed-erased`` (nothing more is sent to it for
        the party: its objects' reads are suppressed)."""
        tgt = ctx.target
        if not is_object_job(ctx) or getattr(tgt.adapter, "role", None) != "system_of_record":
            super().propagate_erasures(ctx)   # type: ignore[misc]
            return
        with self.rt.store.transaction() as tx:
            pending = tx.pending_propagations(tgt.system, tgt.object) if tx.has_erasures() else []
            if not pending or ctx.dry_run:
                return
            entries = []
            for p in pending:
                tx.finish_propagation(p["key_id"], "retained")
                entries.append(LedgerEntryIn(
                    action=Action.SUPPRESSED_ERASED, run_id=str(ctx.run_id), job=ctx.name, target_system=tgt.system,
                    target_object=tgt.object, target_id=p["external_id"], party_id=p["party_id"], actor=ctx.actor,
                    reason=f"erasure (PIPL Art. 47): {tgt.system} is a bank system of record; its record is "
                           "retained there (regulatory record), nothing more is sent to it for the party"))
            tx.ledger(self.rt.signer, cipher=self.rt.cipher).append(entries)

    def _erasure_write_item(self, ctx: RunContext, p: dict[str, Any]) -> WriteItem:
        """An erased party's object at the target, anonymised (delete policy deactivate or ignore: an erasure is
        never ignored): every field the mapping writes emptied, the status CLOSED, a placeholder where the target
        requires a value; written under the object's own key (its canonical id, from the cross-reference)."""
        if not is_object_job(ctx):
            return super()._erasure_write_item(ctx, p)   # type: ignore[misc]
        tgt = ctx.target
        with self.rt.store.transaction(read_only=True) as tx:
            oid = tx.get_xref(tgt.system, tgt.object, p["external_id"])
        if oid is None:
            raise RecordError(f"{tgt.system}.{tgt.object}/{p['external_id']}: no cross-reference to the object it "
                              "holds (dropped?): it cannot be anonymised by key", code="no_object_id")
        return WriteItem(key=oid, payload=anonymised_object_payload(tgt), external_id=p["external_id"],
                         key_field=tgt.mapping.spec.key_field, duplicate_search=False)

    def _erased_owner(self, tx: StoreTx, ctx: RunContext, d: ObjectDecision, owner: str | None) -> bool:
        """Suppress (ledgered ``suppressed-erased``, nothing written) a record of an erased party's object: known
        by its record id (the erasure's source keys) or by its owner (a new object of an erased party, which the
        erasure then remembers by id)."""
        if not tx.has_erasures():
            return False
        src = ctx.source
        hit = tx.erasure_for_record(src.system, src.object, d.raw.external_id)
        if hit is None and owner is not None:
            er = tx.erasure_for_party(owner)
            if er is not None:
                hit = {"party_id": owner, "erased_at": er["erased_at"], "key_id": tx.add_erasure_key(
                    er["id"], "source", system=src.system, obj=src.object, external_id=d.raw.external_id)}
        return self._suppress_erased(tx, ctx, d, src, hit)   # type: ignore[attr-defined,no-any-return]

    def _due_dead_letters(self, tx: StoreTx, ctx: RunContext) -> list[dict[str, Any]]:
        if not is_object_job(ctx):
            return super()._due_dead_letters(tx, ctx)
        letters = tx.list_dead_letters(ctx.name, status=[DeadLetterStatus.OPEN.value],
                                       due_before=datetime.now(UTC), limit=10_000)
        return [d for d in letters if d["external_id"] and d["source_system"] == ctx.source.system
                and d["source_object"] == ctx.source.object
                and (d["attempts"] < ctx.job.dead_letter_max_attempts or d["reason_code"] == PARENT_NOT_SYNCED)]

    # -- one batch -----------------------------------------------------------------------------
    def _object_batch(self, ctx: RunContext, raws: list[RawRecord], cursor: CursorState | None, *,
                      retry: bool) -> None:
        raws = self._pseudonymous(ctx, raws)
        ctx.report.read += len(raws)
        src, tgt = ctx.source, ctx.target
        with self._tx(ctx) as tx:   # decide; new objects' ids are committed before any write
            ids = [r.external_id for r in raws]
            if not retry:
                ctx.failed_hashes = self._failed_hashes(tx, ctx, ids)
            tx.prefetch_xrefs(src.system, src.object, ids)
            tx.prefetch_read_hashes(ctx.name, src.system, src.object, ids)
            known = [o for o in (tx.get_xref(src.system, src.object, e) for e in ids) if o is not None]
            tx.prefetch_parties(known, snapshots_of=[(tgt.system, tgt.object)], xrefs_of=[(tgt.system, tgt.object)])
            try:
                decisions: list[ObjectDecision] = [self._decide_object(tx, ctx, raw, cursor, retry=retry)
                                                   for raw in raws]
            finally:
                ctx.failed_hashes = None
            self._guard_intents(tx, ctx, list(decisions))
        if ctx.dry_run:
            self._plan(ctx, list(decisions))
            return
        self._write(ctx, list(decisions))
        for d in decisions:
            ctx.report.count(d.outcome if d.silent else outcome_of(d.action or Action.FAILED))
        ctx.batches += 1
        with self.rt.store.transaction() as tx:
            ctx.open_letters = self._open_letters(tx, ctx, [d.raw.external_id for d in decisions if not d.silent])
            tx.prepare_party_keys(self.rt.cipher, {d.party_id for d in decisions
                                                   if d.party_id and d.obj is not None and not d.silent})
            try:
                entries = [e for d in decisions if not d.silent for e in self._record_object(tx, ctx, d)]
            finally:
                ctx.open_letters = None
            tx.ledger(self.rt.signer, cipher=self.rt.cipher).append(entries)
            if cursor is not None:
                self._advance(tx, ctx, cursor, list(decisions))
            self._note_progress(tx, ctx)
        self.heartbeat(ctx)
        if self.progress is not None:
            self.progress(len(decisions))

    def _refetch_dead_letters(self, ctx: RunContext, due: list[dict[str, Any]]) -> Any:
        """The party path's refetch, for letters under a pseudonymous record id too: the real id (needed to read
        the record again) is taken from the letter's sealed copy of the record, never kept in clear. A letter whose
        copy cannot be read stays as it is, for the next run (never abandoned for want of its id)."""
        if not is_object_job(ctx) or not personal_record_id(ctx.source.mapping):
            return super()._refetch_dead_letters(ctx, due)
        from crmbridge.core.paths import parse_path, path_get

        src = ctx.source
        real: list[dict[str, Any]] = []
        with self.rt.store.transaction(read_only=True) as tx:
            for letter in due:
                ext = letter["external_id"]
                if not ext.startswith(PSEUDONYM):
                    real.append(letter)
                    continue
                row = {"job": ctx.name, "source_system": src.system, "source_object": src.object,
                       "external_id": ext}
                try:
                    data = tx.unseal(self.rt.cipher, "dead_letters", "payload", row=row, token=letter["payload"])
                    rid = path_get(data, parse_path(src.mapping.spec.external_id)) if isinstance(data, dict) else None
                except CrmBridgeError as exc:
                    log.warning("dead letter %s: its sealed record cannot be read (%s); it waits", letter["id"],
                                type(exc).__name__)
                    continue
                if rid in (None, ""):
                    log.warning("dead letter %s: its sealed record has no record id; it waits", letter["id"])
                    continue
                real.append({**letter, "external_id": str(rid)})
        return super()._refetch_dead_letters(ctx, real)

    def _pseudonymous(self, ctx: RunContext, raws: list[RawRecord]) -> list[RawRecord]:
        """``raws`` with each record id replaced by its pseudonym when the source's ids are personal data (see the
        module docstring); a retried letter's record already carries one."""
        if not personal_record_id(ctx.source.mapping):
            return raws
        src = ctx.source
        return [r if r.external_id.startswith(PSEUDONYM) else dataclasses.replace(
                    r, external_id=record_pseudonym(self.rt, src.system, src.object, r.external_id)) for r in raws]

    def _decide_object(self, tx: StoreTx, ctx: RunContext, raw: RawRecord, cursor: CursorState | None, *,
                       retry: bool) -> ObjectDecision:
        src, tgt, job = ctx.source, ctx.target, ctx.job
        d = ObjectDecision(raw, raw_hash=record_hash(raw, ctx.hash_key))
        if cursor is not None and cursor.boundary.get(raw.external_id) == d.raw_hash:
            return d.quiet("unchanged")   # type: ignore[return-value]
        if not retry and self._failed_as_is(tx, ctx, raw, d.raw_hash or ""):
            return d.quiet("deferred")    # type: ignore[return-value]
        if raw.error is not None:
            d.action, d.error, d.stage = Action.FAILED, raw.error, "read"
            return d
        oid = tx.get_xref(src.system, src.object, raw.external_id)
        if oid is not None and not ctx.rederive:
            seen = tx.get_read_hash(ctx.name, src.system, src.object, raw.external_id)
            if seen is not None and seen.record_hash == d.raw_hash:
                return d.quiet("unchanged")   # type: ignore[return-value]
        if update_only(tgt.mapping) and (oid is None or not tx.xrefs_for_party(oid, tgt.system, tgt.object)):
            return d.quiet("out_of_scope")   # type: ignore[return-value]  # not a record the target holds (unread)
        obj = self._map_object(ctx, d, oid)
        if obj is None:
            return d
        d.closed = raw.deleted or (str(getattr(obj, "status", "")) == "CLOSED" and obj.id_field == "holding_id")
        if d.closed and oid is None:
            return d.quiet("out_of_scope")   # type: ignore[return-value]  # closed before it was ever synced
        owner, parent_tid = self._parent(tx, ctx, obj)
        if self._erased_owner(tx, ctx, d, owner):
            return d
        if owner is None or parent_tid is None:
            parent = job.parent
            target = f"{tgt.system}.{parent.target_object if parent else '?'}"
            which = (f"{parent.source} {obj.party_source.system_id}" if parent is not None and obj.party_source
                     is not None else f"party {owner}")
            d.action, d.stage = Action.FAILED, "parent"
            d.error = RecordError(f"parent not synced yet: its party ({which}) is not in {target}; retried by later "
                                  "runs", code=PARENT_NOT_SYNCED)
            return d
        if oid is None:   # minted and committed before anything is written (a crash cannot mint a second id)
            oid = str(uuid.uuid4())
            tx.put_xref(src.system, src.object, raw.external_id, oid)
            tx.assume_new_party(oid, snapshots_of=[(tgt.system, tgt.object)], xrefs_of=[(tgt.system, tgt.object)])
        obj = obj.model_copy(update={obj.id_field: uuid.UUID(oid), "party_id": uuid.UUID(owner)})
        d.object_id, d.party_id, d.obj = oid, owner, obj
        d.canonical = obj.canonical_dict()
        d.content_hash = hash_canonical(d.canonical, ctx.hash_key)
        previous = self._stored(tx, ctx, oid)
        d.previous = flatten(previous) if previous is not None else None
        linked = tx.xrefs_for_party(oid, tgt.system, tgt.object)
        d.target_id = linked[0][2] if linked else None
        if d.closed:
            d.reason = f"closed at the source; delete policy {job.delete_policy}"
            if job.delete_policy == "ignore" or d.target_id is None:
                d.action = Action.SKIPPED_UNCHANGED
                return d
            d.action = Action.DELETED
            if job.delete_policy == "propagate":
                return d   # the one-way write deletes it at the target (by target id)
        try:
            # the lookup names the parent as the target knows it (its id there, from the cross-reference)
            payload = tgt.mapping.map_out(obj.model_copy(update={"party_source": SourceRef(
                system=tgt.system, system_id=parent_tid, object=(job.parent.target_object if job.parent else None))}))
            payload = json.loads(json.dumps(payload, default=str))   # ids (UUID) as the JSON the vendor receives
        except RecordError as exc:
            d.action, d.error, d.stage = Action.FAILED, exc, "deactivate" if d.closed else "map_out"
            return d
        d.payload_hash = payload_hash(payload, ctx.hash_key)
        snap = tx.get_snapshot(oid, tgt.system, tgt.object)
        if snap is not None and snap.written_hash == d.payload_hash and d.target_id is not None:
            d.action = Action.SKIPPED_UNCHANGED
            return d
        d.item = WriteItem(key=oid, payload=payload, external_id=d.target_id,
                           key_field=tgt.mapping.spec.key_field, duplicate_search=job.duplicate_search)
        return d

    def _map_object(self, ctx: RunContext, d: ObjectDecision, oid: str | None) -> CanonicalObject | None:
        """Map a source record to its canonical object: a tombstone is CLOSED, and a closure without a date is
        dated by its closing change."""
        src, raw = ctx.source, d.raw
        try:
            return map_source_object(src.mapping, raw, oid, where=f"{src.system}:{src.object}/{raw.external_id}")
        except RecordError as exc:
            d.action, d.error, d.stage = Action.FAILED, exc, "map_in"
            return None

    def _parent(self, tx: StoreTx, ctx: RunContext, obj: CanonicalObject) -> tuple[str | None, str | None]:
        """(the owning party's canonical id, its id in the target's parent object), each ``None`` when unknown."""
        parent = ctx.job.parent
        if parent is None:
            raise FatalSyncError(f"internal: object job {ctx.name} without a parent")
        owner = str(obj.party_id) if obj.party_id is not None else None
        if owner is None and obj.party_source is not None:
            owner = tx.get_xref(parent.source_system, parent.source_object, obj.party_source.system_id)
        if owner is None:
            return None, None
        if parent.target_object is None:   # the target knows parties by crmbridge's id
            return owner, owner
        linked = tx.xrefs_for_party(owner, ctx.target.system, parent.target_object)
        return owner, (linked[0][2] if linked else None)

    def _stored(self, tx: StoreTx, ctx: RunContext, oid: str) -> dict[str, Any] | None:
        try:
            return tx.get_object_record(self.rt.cipher, ctx.source.mapping.canonical, oid)
        except CrmBridgeError:
            return None   # shredded or unreadable: the diff shows every field as new

    # -- the record of one decision ----------------------------------------------------------
    def _record_object(self, tx: StoreTx, ctx: RunContext, d: ObjectDecision) -> list[LedgerEntryIn]:
        src, tgt, rt = ctx.source, ctx.target, self.rt
        if d.action is None:
            raise FatalSyncError(f"internal: no decision for {src.system} record {d.raw.external_id}")
        ctx.report.actions[d.action] += 1
        if d.action is Action.FAILED:
            self._object_dead_letter(tx, ctx, d)
            if d.intent_id is not None and not (d.error is not None and d.error.code in UNCERTAIN_CODES):
                tx.complete_write_intent(d.intent_id, failed=True)
            err = d.error
            return [self._entry(ctx, d, reason=f"{d.stage}: {err.code if err else 'error'}: {err}")]
        self._resolve_letters(tx, ctx, d.raw)
        tx.put_read_hash(ctx.name, src.system, src.object, d.raw.external_id, record_hash=d.raw_hash or "",
                         version=d.raw.version)
        oid = d.object_id
        if oid is None or d.party_id is None or d.canonical is None:
            raise FatalSyncError(f"internal: {d.action} of {src.system} record {d.raw.external_id} without its object")
        tx.put_object_record(rt.cipher, src.mapping.canonical, oid, d.party_id, value=d.canonical,
                             content_hash=d.content_hash or "", closed=d.closed)
        if d.action in (Action.CREATED, Action.UPDATED) or (d.action is Action.DELETED and d.item is not None):
            if d.target_id:
                tx.put_xref(tgt.system, tgt.object, d.target_id, oid)
            # the canonical object lives in object_records (sealed under its party's key): the snapshot keeps
            # only what was written, for the unchanged-payload check
            tx.put_snapshot(oid, tgt.system, tgt.object, content_hash=d.content_hash or "", blob=b"",
                            written_hash=d.payload_hash, mapping_versions=ctx.mapping_versions)
        elif d.action is Action.DELETED and d.target_id:
            tx.delete_xref(tgt.system, tgt.object, d.target_id)
            tx.put_snapshot(oid, tgt.system, tgt.object, content_hash=TOMBSTONE, blob=b"",
                            written_hash=TOMBSTONE, mapping_versions=ctx.mapping_versions)
        if d.intent_id is not None:
            tx.complete_write_intent(d.intent_id, external_id=d.target_id)
        return [self._entry(ctx, d, reason=d.reason)]

    def _object_dead_letter(self, tx: StoreTx, ctx: RunContext, d: ObjectDecision) -> None:
        """The party path's dead letter; one waiting for its parent is due at once (the next run tries again)."""
        err = d.error
        if err is None or err.code != PARENT_NOT_SYNCED:
            self._dead_letter(tx, ctx, d)
            return
        src = ctx.source
        ctx.report.refusals[f"{d.stage}: {PARENT_NOT_SYNCED}"] += 1
        if ctx.open_letters is not None:
            ctx.open_letters.add(d.raw.external_id)
        row = {"job": ctx.name, "source_system": src.system, "source_object": src.object,
               "external_id": d.raw.external_id}
        tx.add_dead_letter(
            ctx.name, stage=d.stage or "parent", reason_code=PARENT_NOT_SYNCED, message=str(err),
            run_id=ctx.run_id or None, source_system=src.system, source_object=src.object,
            external_id=d.raw.external_id,
            payload=tx.seal(self.rt.cipher, "dead_letters", "payload", row=row, value=without_c3(dict(d.raw.data))),
            next_attempt_at=datetime.now(UTC), record_hash=d.raw_hash)

def _fields(name: str) -> set[str]:
    from crmbridge.canonical.objects import object_classes

    return set(object_classes(name)[0].model_fields)
