"""Recording a batch: write intents, the target's writes, and the one transaction that stores the outcome
(ledger entries, cross-references, snapshots, dead letters, cursor); a dry run's plan instead."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from crmbridge.adapters.base import UNCERTAIN_CODES, RawRecord, WriteResult, WriteStatus
from crmbridge.canonical.c3 import without_c3
from crmbridge.canonical.mapping import mask_kind_for
from crmbridge.canonical.masking import mask, mask_canonical
from crmbridge.core.errors import FatalSyncError, RecordError, SystemUnavailableError
from crmbridge.sync.engine.base import RunnerBase
from crmbridge.sync.engine.context import CursorState, Decision, RunContext, Side, iso
from crmbridge.sync.engine.vendorplan import mapped_out, vendor_changes
from crmbridge.sync.merge import diff, flatten, unflatten
from crmbridge.sync.report import MappingChange, PlannedChange, outcome_of
from crmbridge.sync.state.ledger import Action, LedgerEntryIn
from crmbridge.sync.state.lineage import write_lineage
from crmbridge.sync.state.store import StoreTx

__all__ = ["DEAD_LETTER_BACKOFF", "TOMBSTONE", "correlation_id", "masked_value", "new_call_id", "snapshot_row"]

#: when a failed record is tried again
DEAD_LETTER_BACKOFF = timedelta(minutes=5)
#: the written hash of a target record crmbridge deleted
TOMBSTONE = "tombstone"


def snapshot_row(party_id: str, system: str, obj: str) -> dict[str, str]:
    """The columns a snapshot's sealed blob is bound to (:meth:`StoreTx.seal` / :meth:`StoreTx.unseal`)."""
    return {"party_id": party_id, "system": system, "object": obj}


def new_call_id() -> str:
    """The id crmbridge gives one write call (``Adapter.write``/``delete`` of a batch) for the ledger: the adapters'
    answers carry no vendor request id, so the entries of one call share this one."""
    return str(uuid.uuid4())


def correlation_id(result: WriteResult | None, call_id: str) -> str:
    """A write's correlation id in the ledger: the vendor's request id when its answer carries one (a
    ``request_id`` on the result), else the id of the write call that carried it (:func:`new_call_id`)."""
    rid = getattr(result, "request_id", None)
    return str(rid) if rid else call_id


def masked_value(path: str, value: Any, party_type: str | None) -> str | None:
    """A value as the ledger and plans may show it: masked by its path's class, failing closed (a list of street
    lines or aliases, an unknown path: masked leaf by leaf)."""
    if value is None:
        return None
    if not isinstance(value, dict | list | tuple):
        try:
            kind = mask_kind_for(path, party_type)
        except Exception:  # noqa: BLE001 - an unknown path is masked rather than shown
            kind = "generic"
        if kind:
            return mask(kind, value)
    return mask_canonical(path, value, party_type)


class Recording(RunnerBase):
    """Intents, writes and the record of a batch (a part of :class:`~crmbridge.sync.engine.runner.JobRunner`)."""

    # -- intents, writes, records --------------------------------------------------------------
    def _guard_intents(self, tx: StoreTx, ctx: RunContext, decisions: list[Decision]) -> None:
        """Where the target has no upsert: journal each write before the call, and look up by key any create that a
        run which did not finish journaled, so that it becomes an update instead of a duplicate.

        Recovery never overwrites what it did not see: the record found may have been edited since the dead run
        created it (a relationship manager's correction). In a two-way job it is the target's current state and is
        merged with the source like any two-way change (:meth:`_merge_batch`: against what was last synced, or,
        never synced, :func:`~crmbridge.sync.merge.merge_unseen`: fields the target owns keep its value); the earlier
        intent stays pending until that merge commits, so a crash in between recovers the same way again. A one-way
        job owns every field it writes (the target's copy is a projection of the source): the found record is
        updated with it, as every later update would (docs/engine_guarantees.md)."""
        tgt = ctx.target
        if getattr(tgt.adapter, "supports_upsert", True):
            return
        for d in decisions:
            if d.item is None:
                continue
            earlier = ctx.pending_intents.pop(d.item.key, None)
            if earlier is not None:
                if d.item.external_id is None and d.item.key_field:
                    found = tgt.adapter.find(tgt.object, d.item.key_field, d.item.key)
                    if found is not None and ctx.job.direction == "two_way":
                        ctx.recovered[d.item.key] = (found, earlier["id"])
                        d.item = None
                        continue
                    if found is not None:
                        d.item = dataclasses.replace(d.item, external_id=found.external_id)
                tx.complete_write_intent(earlier["id"], external_id=d.item.external_id, failed=True)
            if d.item.external_id is None and earlier is None and d.item.key not in ctx.unfinished_keys:
                d.item = dataclasses.replace(d.item, known_new=True)  # never written: create without a lookup
            d.intent_id = tx.add_write_intent(
                ctx.name, target_system=tgt.system, target_object=tgt.object, key=d.item.key,
                operation="update" if d.item.external_id else "create", payload_hash=d.payload_hash or "",
                run_id=ctx.run_id or None)

    def _write(self, ctx: RunContext, decisions: list[Decision]) -> None:
        tgt = ctx.target
        pending = [d for d in decisions if d.item is not None]
        call = new_call_id()
        results: list[WriteResult] = tgt.adapter.write(tgt.object, [d.item for d in pending]) if pending else []
        self._breaker(ctx, tgt)
        for d, r in zip(pending, results, strict=True):
            d.result, d.correlation_id = r, correlation_id(r, call)   # kept until the ledger entry is built
            d.target_id = r.external_id or d.target_id
            if d.action is Action.DELETED:        # a deactivation
                if r.status in (WriteStatus.FAILED, WriteStatus.CONFLICT):
                    d.action, d.stage = Action.FAILED, "deactivate"
                    d.error = r.error or RecordError("the target refused the deactivation", code="rejected")
            elif r.status is WriteStatus.CREATED:
                d.action = Action.CREATED
            elif r.status in (WriteStatus.UPDATED, WriteStatus.UNCHANGED):
                d.action = Action.UPDATED
            elif r.status is WriteStatus.CONFLICT:
                d.action, d.reason = Action.CONFLICT, "the target changed since it was read"
            else:
                d.action, d.stage = Action.FAILED, "target"
                d.error = r.error or RecordError("the target refused the record", code="rejected")
        deletes = [d for d in decisions if d.action is Action.DELETED and d.item is None and d.target_id]
        if deletes and ctx.job.delete_policy == "propagate":
            call = new_call_id()
            outcome = tgt.adapter.delete(tgt.object, [d.target_id or "" for d in deletes])
            for d, r in zip(deletes, outcome, strict=True):
                d.result, d.correlation_id = r, correlation_id(r, call)
                if r.status is WriteStatus.FAILED:
                    d.action, d.stage = Action.FAILED, "delete"
                    d.error = r.error or RecordError("the target refused the delete", code="rejected")

    def _breaker(self, ctx: RunContext, side: Side) -> None:
        """Stop the run when a system is down as a whole: its last write calls all failed after every retry. The
        batch under way is not recorded (its records are read again by the next run, its write intents stay
        pending); fewer failures are the failing records' own dead letters."""
        failed = side.adapter.stats.consecutive_failed_calls
        if failed >= ctx.job.circuit_breaker_calls:
            raise SystemUnavailableError(f"{failed} write calls in a row failed after every retry; the batch "
                                         "under way is read again by the next run", system=side.system)

    def _note_progress(self, tx: StoreTx, ctx: RunContext) -> None:
        if not ctx.dry_run and ctx.run_id and ctx.track_progress:
            tx.note_run_progress(ctx.run_id, {**ctx.report.counts(), "batches": ctx.batches})

    def _record_batch(self, tx: StoreTx, ctx: RunContext, decisions: list[Decision]) -> list[LedgerEntryIn]:
        """Store a batch's outcomes (:meth:`_record` of each decision that is not silent); its snapshots,
        cross-references, read hashes and completed intents go as one ``executemany`` per statement kind
        (:meth:`StoreTx.batched_writes`). Returns the batch's ledger entries."""
        with tx.batched_writes():
            return [e for d in decisions if not d.silent for e in self._record(tx, ctx, d)]

    def _record(self, tx: StoreTx, ctx: RunContext, d: Decision,
                ids: tuple[str | None, str | None] | None = None) -> list[LedgerEntryIn]:
        """Store one decision's outcome; returns its ledger entries (``ids``: see :meth:`_entry`)."""
        src, tgt, rt = ctx.source, ctx.target, self.rt
        if d.action is None:
            raise FatalSyncError(f"internal: no decision for {src.system} record {d.raw.external_id}")
        ctx.report.actions[d.action] += 1
        if d.action is Action.FAILED:
            self._dead_letter(tx, ctx, d)
            if d.intent_id is not None and not (d.error is not None and d.error.code in UNCERTAIN_CODES):
                # a write whose outcome is unknown keeps its intent pending: it is looked up before it is repeated
                tx.complete_write_intent(d.intent_id, failed=True)
            err = d.error
            return [self._entry(ctx, d, reason=f"{d.stage}: {err.code if err else 'error'}: {err}", ids=ids)]
        self._resolve_letters(tx, ctx, d.raw)
        if d.party_id is not None and not d.raw.deleted:
            # the source side: the keyed hash of what was read, for the overlap dedupe
            tx.put_read_hash(ctx.name, src.system, src.object, d.raw.external_id, record_hash=d.raw_hash or "",
                             version=d.raw.version)
        if d.action in (Action.CREATED, Action.UPDATED) or (d.action is Action.DELETED and d.item is not None):
            if not d.party_id or d.canonical is None or d.party is None:
                raise FatalSyncError(f"internal: {d.action} of {src.system} record {d.raw.external_id} "
                                     "without its party")
            if d.target_id:
                tx.put_xref(tgt.system, tgt.object, d.target_id, d.party_id)
            blob = tx.seal(rt.cipher, "snapshots", "blob",
                        row=snapshot_row(d.party_id, tgt.system, tgt.object), value=d.canonical)
            tx.put_snapshot(d.party_id, tgt.system, tgt.object,
                            content_hash=d.content_hash or d.party.content_hash(ctx.hash_key),
                            blob=blob, written_hash=d.echo_hash or d.payload_hash,
                            mapping_versions=ctx.mapping_versions)
        elif d.action is Action.DELETED and d.party_id and d.target_id:
            tx.delete_xref(tgt.system, tgt.object, d.target_id)
            tx.put_snapshot(d.party_id, tgt.system, tgt.object, content_hash=TOMBSTONE, blob=b"",
                            written_hash=TOMBSTONE, mapping_versions=ctx.mapping_versions)
        elif d.action is Action.CONFLICT and d.party_id:
            tx.add_conflict(ctx.name, d.party_id, ["*"], run_id=ctx.run_id or None)
        if d.intent_id is not None:
            tx.complete_write_intent(d.intent_id, external_id=d.target_id)
        return [self._entry(ctx, d, reason=d.reason, ids=ids)]

    def _dead_letter(self, tx: StoreTx, ctx: RunContext, d: Decision) -> None:
        src = ctx.target if d.origin == "target" else ctx.source
        err = d.error or RecordError("failed", code="failed")
        ctx.report.refusals[f"{d.stage or 'unknown'}: {err.code or type(err).__name__}"] += 1
        if ctx.open_letters is not None:
            ctx.open_letters.add(d.raw.external_id)
        row = {"job": ctx.name, "source_system": src.system, "source_object": src.object,
               "external_id": d.raw.external_id}
        tx.add_dead_letter(
            ctx.name, stage=d.stage or "unknown", reason_code=err.code or type(err).__name__, message=str(err),
            run_id=ctx.run_id or None, source_system=src.system, source_object=src.object,
            external_id=d.raw.external_id,
            # kept to retry it, never with the C3 data a record may have been refused for
            payload=tx.seal(self.rt.cipher, "dead_letters", "payload", row=row,
                         value=without_c3(dict(d.raw.data))),
            next_attempt_at=datetime.now(UTC) + DEAD_LETTER_BACKOFF, record_hash=d.raw_hash)

    def _open_letters(self, tx: StoreTx, ctx: RunContext, external_ids: list[str]) -> set[str]:
        """Which of ``external_ids`` have an unresolved dead letter of this job (one query per batch instead of
        one per record: most records never failed)."""
        return tx.with_open_dead_letters(ctx.name, ctx.source.system, ctx.source.object, external_ids)

    def _resolve_letters(self, tx: StoreTx, ctx: RunContext, raw: RawRecord) -> None:
        if ctx.open_letters is not None and raw.external_id not in ctx.open_letters:
            return
        tx.resolve_dead_letters(ctx.name, ctx.source.system, ctx.source.object, raw.external_id)

    def _entry(self, ctx: RunContext, d: Decision, *, reason: str | None = None,
               changed: dict[str, tuple[Any, Any]] | None = None,
               direction: Literal["to_target", "to_source"] | None = None,
               ids: tuple[str | None, str | None] | None = None) -> LedgerEntryIn:
        """The ledger entry of one decision.

        ``direction`` says which way it went: ``to_target`` (the job's source → its target) or ``to_source``;
        by default the way of the record read (``d.origin``: a record read from the target goes ``to_source``).
        ``ids`` is the party's id at (the job's source, the job's target); by default the record read's id on its
        side and ``d.target_id``. A write's entry carries its lineage (:func:`write_lineage`): the masked payload
        sent, the vendor's answer, the correlation id, only the changed fields the written side receives."""
        src, tgt = ctx.source, ctx.target
        if direction is None:
            direction = "to_source" if d.origin == "target" else "to_target"
        if ids is None:
            ids = (d.raw.external_id, d.target_id) if d.origin == "source" else (None, d.raw.external_id)
        frm, to = (src, tgt) if direction == "to_target" else (tgt, src)
        from_id, to_id = ids if direction == "to_target" else (ids[1], ids[0])
        if changed is None:
            changed = {}
            if d.canonical is not None and d.action in (Action.CREATED, Action.UPDATED, Action.DELETED):
                changed = diff(d.previous or {}, flatten(d.canonical))
        ptype = str(d.party.party_type) if d.party is not None else None
        # an empty side is left out (the changed field list says which changed): a created record's "before"
        # was a null for every field; the clear diff only under a party's key
        lineage = write_lineage(
            mapping=to.mapping, payload=d.item.payload if d.item is not None else None, result=d.result,
            changed=changed, party_type=ptype, correlation_id=d.correlation_id,
            mappings=(src.mapping, tgt.mapping), diff=bool(d.party_id))
        if not lineage.get("diff"):
            lineage.pop("diff", None)
        return LedgerEntryIn(
            action=d.action or Action.FAILED, run_id=str(ctx.run_id), job=ctx.name,
            source_system=frm.system, source_object=frm.object, source_id=from_id,
            target_system=to.system, target_object=to.object, target_id=to_id, party_id=d.party_id,
            mapping_version=to.mapping.version_hash, actor=ctx.actor, reason=reason, **lineage)

    def _plan(self, ctx: RunContext, decisions: list[Decision]) -> None:
        """Dry run: count what would happen, keep masked field diffs, count the write calls."""
        r = ctx.report
        writes = [d for d in decisions if d.item is not None]
        max_batch = ctx.target.adapter.max_batch_size
        r.planned_write_calls += -(-len(writes) // max_batch) if writes else 0
        for d in decisions:
            if d.silent:
                r.count(d.outcome or "unchanged")
                continue
            action = d.action or (Action.UPDATED if d.item is not None and d.item.external_id else Action.CREATED)
            r.actions[action] += 1
            r.count(outcome_of(action))
            if action is Action.FAILED:
                err = d.error
                r.refusals[f"{d.stage or 'unknown'}: {(err.code if err else None) or 'failed'}"] += 1
            changed = diff(d.previous or {}, flatten(d.canonical)) if d.canonical is not None else {}
            ptype = str(d.party.party_type) if d.party is not None else None
            r.plan.append(PlannedChange(
                action=action, source_id=d.raw.external_id, party_id=d.party_id,
                fields={p: (masked_value(p, b, ptype) or "", masked_value(p, a, ptype) or "")
                        for p, (b, a) in changed.items()},
                reason=d.reason or (f"{d.stage}: {d.error}" if d.error else None),
                target_fields=self._target_fields(ctx, d)))

    def _target_fields(self, ctx: RunContext, d: Decision) -> dict[str, tuple[str, str]]:
        """A planned write in the vendor's terms: the target fields it changes, masked (see
        :mod:`crmbridge.sync.engine.vendorplan`); a changed mapping's share is added to the run's account of it."""
        if d.item is None:
            return {}
        tgt, job = ctx.target, ctx.job
        stored = unflatten(d.previous) if d.previous is not None else None
        old_map = ctx.previous_mappings.get(job.target_mapping, tgt.mapping)
        before = mapped_out(old_map, stored, d.party_id)
        fields = vendor_changes(before, d.item.payload, tgt.mapping)
        if fields and d.previous is not None and ctx.previous_mappings:
            if job.target_mapping in ctx.previous_mappings:   # what the new mapping alone changes
                why = job.target_mapping
                fields_m = vendor_changes(before, mapped_out(tgt.mapping, stored, d.party_id) or {}, tgt.mapping)
            else:                                             # the source's mapping changed what is derived
                why, fields_m = next(iter(ctx.previous_mappings)), fields
            if fields_m:
                change = next((c for c in ctx.report.mapping_changes if c.mapping == why), None)
                if change is None:
                    change = MappingChange(why)
                    ctx.report.mapping_changes.append(change)
                change.records += 1
                change.fields.update(fields_m)
        return fields

    def _advance(self, tx: StoreTx, ctx: RunContext, cur: CursorState, decisions: list[Decision]) -> None:
        """Move the watermark to the newest record of the batch (extraction is oldest first), remembering the
        records at exactly that time so the next overlap does not handle them again."""
        stamps = [d.raw.modified_at for d in decisions if d.raw.modified_at is not None]
        if not stamps:
            return
        top = max(stamps)
        self.advance_cursor(tx, ctx, cur, top, {d.raw.external_id: d.raw_hash or "" for d in decisions
                                                if d.raw.modified_at == top})

    def advance_cursor(self, tx: StoreTx, ctx: RunContext, cur: CursorState, top: datetime,
                       at_top: dict[str, str]) -> None:
        """Move the watermark to ``top``, the newest modification time of records now committed (``at_top``: the
        record hash of each stamped exactly then; see :func:`~crmbridge.sync.engine.hashing.watermark_of`)."""
        cur.max_seen = max(cur.max_seen, top) if cur.max_seen else top
        if not cur.ordered:
            return
        if cur.watermark is not None and top < cur.watermark:
            return
        if cur.watermark is not None and top == cur.watermark:
            cur.boundary.update(at_top)
        else:
            cur.watermark, cur.boundary = top, at_top
        self.store_cursor(tx, ctx, cur, top, cur.boundary)

    def store_cursor(self, tx: StoreTx, ctx: RunContext, cur: CursorState, at: datetime,
                     boundary: dict[str, str]) -> None:
        """Store the cursor at ``at``, with the records at that time already handled."""
        tx.put_cursor(ctx.name, cur.key, field="modified_at", value=iso(at), overlap_seconds=cur.overlap,
                      boundary=boundary)
