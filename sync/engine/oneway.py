"""One-way: source records decided, written and recorded in batches (also a two-way job's new parties).

Per batch: decide every record (overlap re-reads, failed-as-is dead letters, erased parties, map in, identify,
consent, map out, diff against what was last written) in one transaction that commits new parties' ids before any
write; journal writes where the target has no upsert; write; record the outcomes in one transaction (see
:mod:`crmbridge.sync.engine.records`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from crmbridge.adapters.base import RawRecord, WriteItem
from crmbridge.canonical.c3 import refuse_c3
from crmbridge.canonical.model import Party, hash_canonical, parse_party
from crmbridge.core.errors import CrmBridgeError, FatalSyncError, RecordError, RetryableError, SystemUnavailableError
from crmbridge.sync.engine.context import BatchKind, CursorState, Decision, RunContext, Side, parse_iso
from crmbridge.sync.engine.hashing import echo_hash, path_filter, payload_hash, record_hash
from crmbridge.sync.engine.identity import identity_keys, index_identities, match_party
from crmbridge.sync.engine.records import TOMBSTONE, Recording, snapshot_row
from crmbridge.sync.engine.stream import batched, reading
from crmbridge.sync.merge import flatten
from crmbridge.sync.report import outcome_of
from crmbridge.sync.state.db import chunked
from crmbridge.sync.state.ledger import Action
from crmbridge.sync.state.store import DeadLetterStatus, StoreTx

__all__ = ["CLOSED_STAGES", "OneWay"]

log = logging.getLogger("crmbridge.sync")

CLOSED_STAGES = frozenset({"CLOSED", "DECEASED", "DISSOLVED", "MERGED"})


class OneWay(Recording):
    """The one-way steps (a part of :class:`~crmbridge.sync.engine.runner.JobRunner`)."""

    def _run_one_way(self, ctx: RunContext) -> bool:
        with self.rt.store.transaction() as tx:
            cur = self.cursor(tx, ctx, ctx.source)
            self.load_intents(tx, ctx)
        full_scan = cur.since is None
        for kind, raws in self.one_way_batches(ctx, cur):
            self.process_batch(ctx, raws, kind, cursor=cur)
        self.finish_cursor(ctx, cur)
        return full_scan

    def one_way_batches(self, ctx: RunContext, cur: CursorState) -> Iterator[tuple[BatchKind, list[RawRecord]]]:
        """A one-way run's batches, in the order they are handled: 1. records that failed before, fetched again
        from the source; 2. what changed since the cursor, oldest first; 3. deletions and closures."""
        src = ctx.source
        with self.rt.store.transaction() as tx:
            due = self._due_dead_letters(tx, ctx)
        for raws in self._refetch_dead_letters(ctx, due):
            yield BatchKind.RETRY, raws
        since = cur.since
        fields = src.mapping.vendor_fields("in") or None
        for chunk in batched(reading(src, src.adapter.extract(src.object, since=since, fields=fields), ctx.report),
                             ctx.job.batch_size):
            yield BatchKind.EXTRACT, chunk
        for chunk in batched(reading(src, src.adapter.extract_deleted(src.object, since=since), ctx.report),
                             ctx.job.batch_size):
            yield BatchKind.DELETE, chunk

    def process_batch(self, ctx: RunContext, raws: list[RawRecord], kind: BatchKind = BatchKind.EXTRACT, *,
                      cursor: CursorState | None = None) -> None:
        """Decide, write and record one batch of source records (one-way, and the new parties of a two-way job);
        an ``extract`` batch moves ``cursor`` over what it committed."""
        self._one_way_batch(ctx, raws, cursor if kind is BatchKind.EXTRACT else None, retry=kind is BatchKind.RETRY)

    def finish_cursor(self, ctx: RunContext, cur: CursorState) -> None:
        """After the last batch: a source that does not extract in time order gets its cursor at the newest
        record seen (an ordered one moved with each batch)."""
        if not cur.ordered and cur.max_seen is not None:
            with self._tx(ctx) as tx:
                self.store_cursor(tx, ctx, cur, cur.max_seen, {})

    def load_intents(self, tx: StoreTx, ctx: RunContext) -> None:
        """Write intents a run that did not finish left pending at the target (both job directions need them: a
        create they journaled may have reached the target)."""
        ctx.pending_intents = {i["key"]: i for i in tx.pending_write_intents(
            ctx.name, target_system=ctx.target.system) if i["target_object"] == ctx.target.object}
        ctx.unfinished_keys = tx.pending_intent_keys(ctx.target.system, ctx.target.object)

    def _refetch_dead_letters(self, ctx: RunContext, due: list[dict[str, Any]]) -> Iterator[list[RawRecord]]:
        """Batches of the source's current version of records that failed before (a letter whose record is gone
        from the source is abandoned: there is nothing left to sync)."""
        src = ctx.source
        failures = 0
        for chunk in chunked(due, ctx.job.batch_size):
            raws = []
            for letter in chunk:
                try:
                    raw = src.adapter.get(src.object, letter["external_id"])
                except RetryableError as exc:
                    # this letter waits for the next run (it stays due); a system that fails call after call is down
                    failures += 1
                    log.warning("dead letter %s: its record could not be read again (%s)", letter["id"], exc)
                    if failures >= ctx.job.circuit_breaker_calls:
                        raise SystemUnavailableError(
                            f"{failures} reads in a row failed after every retry: {exc}", system=src.system) from exc
                    continue
                failures = 0
                if raw is None:
                    with self._tx(ctx) as tx:
                        tx.mark_dead_letter(letter["id"], DeadLetterStatus.ABANDONED)
                else:
                    raws.append(raw)
            if raws:
                yield raws

    def cursor(self, tx: StoreTx, ctx: RunContext, side: Side, *, moves: bool = True) -> CursorState:
        """Where the job's extraction of ``side`` stands; ``moves=False``: a copy that never stores (a worker's
        boundary dedupe: its dispatcher moves the cursor)."""
        c = tx.get_cursor(ctx.name, side.cursor_key)
        ordered = moves and bool(getattr(side.adapter, "ordered_extract", True))
        if c is None or c.value is None or side.cursor_key in ctx.from_start:   # from the start (versions.py)
            return CursorState(side.cursor_key, None, {}, ctx.job.overlap_seconds, ordered)
        return CursorState(side.cursor_key, parse_iso(c.value), dict(c.boundary), ctx.job.overlap_seconds, ordered)

    def _due_dead_letters(self, tx: StoreTx, ctx: RunContext) -> list[dict[str, Any]]:
        letters = tx.list_dead_letters(ctx.name, status=[DeadLetterStatus.OPEN.value],
                                       due_before=datetime.now(UTC), limit=10_000)
        return [d for d in letters if d["external_id"] and d["source_system"] == ctx.source.system
                and d["source_object"] == ctx.source.object and d["attempts"] < ctx.job.dead_letter_max_attempts]

    def _one_way_batch(self, ctx: RunContext, raws: list[RawRecord], cursor: CursorState | None, *,
                       retry: bool = False) -> None:
        ctx.report.read += len(raws)
        # decide, and commit new parties' ids before any write so a crash cannot mint a second id
        with self._tx(ctx) as tx:
            self._prefetch(tx, ctx, raws, retry=retry)
            try:
                decisions = [self._decide(tx, ctx, raw, cursor, retry=retry) for raw in raws]
            finally:
                ctx.failed_hashes = None
            self._guard_intents(tx, ctx, decisions)
        # two-way: a create a dead run may have applied, found at the target, is merged with what the target holds
        recovered = [d for d in decisions if d.party_id is not None and d.party_id in ctx.recovered]
        if recovered:
            decisions = [d for d in decisions if d.party_id is None or d.party_id not in ctx.recovered]
        if ctx.dry_run:
            self._plan(ctx, decisions)
            if recovered:
                self._merge_batch(ctx, [(d.party_id or "", d.raw, None) for d in recovered])
            return
        self._write(ctx, decisions)
        for d in decisions:
            ctx.report.count(d.outcome if d.silent else outcome_of(d.action or Action.FAILED))
        ctx.batches += 1
        with self.rt.store.transaction() as tx:
            ctx.open_letters = self._open_letters(tx, ctx, [d.raw.external_id for d in decisions if not d.silent])
            tx.prepare_party_keys(self.rt.cipher, {
                d.party_id for d in decisions if d.party_id and d.canonical is not None and not d.silent})
            try:
                entries = self._record_batch(tx, ctx, decisions)
            finally:
                ctx.open_letters = None
            tx.ledger(self.rt.signer, cipher=self.rt.cipher).append(entries)
            if cursor is not None:
                self._advance(tx, ctx, cursor, decisions)
            self._note_progress(tx, ctx)
        if recovered:
            self._merge_batch(ctx, [(d.party_id or "", d.raw, None) for d in recovered])
        self.heartbeat(ctx)
        if self.progress is not None:
            self.progress(len(decisions) + len(recovered))

    def _prefetch(self, tx: StoreTx, ctx: RunContext, raws: list[RawRecord], *, retry: bool) -> None:
        """What deciding a batch reads, in one query per kind for the whole batch instead of one per record:
        failed-as-is dead letters, the source cross-references, and the known parties' snapshots and target
        links (StoreTx answers the per-record lookups from it)."""
        src, tgt = ctx.source, ctx.target
        ids = [r.external_id for r in raws]
        if not retry:
            ctx.failed_hashes = self._failed_hashes(tx, ctx, ids)
        tx.prefetch_xrefs(src.system, src.object, ids)
        pids = [p for p in (tx.get_xref(src.system, src.object, e) for e in ids) if p is not None]
        tx.prefetch_read_hashes(ctx.name, src.system, src.object, ids)
        tx.prefetch_parties(pids, snapshots_of=[(tgt.system, tgt.object)], xrefs_of=[(tgt.system, tgt.object)])

    def _decide(self, tx: StoreTx, ctx: RunContext, raw: RawRecord, cursor: CursorState | None, *,
                retry: bool = False) -> Decision:
        src = ctx.source
        d = Decision(raw, raw_hash=record_hash(raw, ctx.hash_key))
        if self._suppress_erased(tx, ctx, d, src, tx.erasure_for_record(src.system, src.object, raw.external_id)):
            return d   # an erased party's record: never ingested or pushed again (ledgered suppressed-erased)
        if cursor is not None and cursor.boundary.get(raw.external_id) == d.raw_hash:
            return d.quiet("unchanged")   # read again at the watermark, handled before
        if not retry and self._failed_as_is(tx, ctx, raw, d.raw_hash):
            return d.quiet("deferred")    # failed before exactly as it is now: the dead-letter schedule retries it
        if raw.error is not None:         # unusable as read (e.g. a version that is not an integer)
            d.action, d.error, d.stage = Action.FAILED, raw.error, "read"
            return d
        d.party_id = tx.get_xref(src.system, src.object, raw.external_id)
        if d.party_id is not None and not raw.deleted and not ctx.rederive:
            seen = tx.get_read_hash(ctx.name, src.system, src.object, raw.external_id)
            if seen is not None and seen.record_hash == d.raw_hash:
                return d.quiet("unchanged")   # re-read in the overlap window, unchanged since it was handled
        if raw.deleted or src.mapping.is_deleted(raw.data):
            return self._decide_tombstone(tx, ctx, d)
        party = self._map_in(tx, ctx, d)
        if party is None:
            return d
        scope = ctx.target.mapping.fixed_party_type
        if scope is not None and str(party.party_type) != scope:
            return d.quiet("out_of_scope")   # not this job's kind of party (e.g. organisations for Contacts)
        if party.lifecycle_stage in CLOSED_STAGES and ctx.job.delete_policy != "ignore":
            return self._decide_tombstone(tx, ctx, d)
        derived = self.derive_party(tx, ctx, d, party)   # the job's rules, if any (derive.py)
        if derived is None:
            return d
        party = derived
        # the consent records' own status, capture order and withdrawal decide, never this host's clock against
        # stamps the source's clock made (a core running ahead would otherwise refuse every fresh consent)
        if ctx.job.consent_purpose and not party.has_consent(ctx.job.consent_purpose):
            d.action, d.reason = Action.SKIPPED_NO_CONSENT, f"no granted consent for {ctx.job.consent_purpose}"
            return d
        self._plan_write(tx, ctx, d, party)
        return d

    def _failed_hashes(self, tx: StoreTx, ctx: RunContext, external_ids: list[str]) -> dict[str, set[str]]:
        """Record hashes of the unresolved dead letters of ``external_ids`` (one query per batch)."""
        return tx.open_dead_letter_hashes(ctx.name, ctx.source.system, ctx.source.object, external_ids)

    def _failed_as_is(self, tx: StoreTx, ctx: RunContext, raw: RawRecord, raw_hash: str) -> bool:
        if ctx.failed_hashes is not None:
            return raw_hash in ctx.failed_hashes.get(raw.external_id, ())
        return tx.failed_as_is(ctx.name, ctx.source.system, ctx.source.object, raw.external_id, raw_hash)

    def _map_in(self, tx: StoreTx, ctx: RunContext, d: Decision) -> Party | None:
        """Map a source record to a party and identify it (cross-reference, then match rules)."""
        src, raw = ctx.source, d.raw
        try:
            refuse_c3(raw.data, where=f"{src.system}:{src.object}/{raw.external_id}")
            party = src.mapping.to_party(raw.data, party_id=uuid.UUID(d.party_id) if d.party_id else uuid.uuid4())
        except RecordError as exc:
            d.action, d.error, d.stage = Action.FAILED, exc, "map_in"
            return None
        if d.party_id is None:
            if self._suppress_erased(tx, ctx, d, src, self._erased_identity(tx, ctx, party, d.raw)):
                return None   # a new record of an erased person (same identifier): suppressed until lifted
            try:
                matched = match_party(tx, self._identity_keys(ctx, party))
            except RecordError as exc:
                d.action, d.error, d.stage = Action.FAILED, exc, "identify"
                return None
            if matched is not None:
                party = parse_party({**party.canonical_dict(include_volatile=True), "party_id": matched})
            else:   # a party id minted just now has no snapshot and no link anywhere yet: nothing to look up
                tx.assume_new_party(str(party.party_id), snapshots_of=[(ctx.target.system, ctx.target.object)],
                                    xrefs_of=[(ctx.target.system, ctx.target.object)])
            tx.put_xref(src.system, src.object, raw.external_id, str(party.party_id))
            index_identities(tx, self._identity_keys(ctx, party), str(party.party_id))
        d.party_id, d.party = str(party.party_id), party
        return party

    def _plan_write(self, tx: StoreTx, ctx: RunContext, d: Decision, party: Party) -> None:
        """Map the party out for the target and decide whether a write is needed."""
        tgt = ctx.target
        if d.party_id is None:
            raise FatalSyncError(f"internal: {ctx.source.system} record {d.raw.external_id} has no party id at map-out")
        try:
            payload = tgt.mapping.map_out(party)
        except RecordError as exc:
            d.action, d.error, d.stage = Action.FAILED, exc, "map_out"
            return
        d.party = party
        d.canonical = party.canonical_dict()
        d.content_hash = hash_canonical(d.canonical, ctx.hash_key)
        d.payload_hash = payload_hash(payload, ctx.hash_key)
        snap = tx.get_snapshot(d.party_id, tgt.system, tgt.object)
        linked = tx.xrefs_for_party(d.party_id, tgt.system, tgt.object)
        d.target_id = linked[0][2] if linked else None
        if snap is not None and snap.written_hash == d.payload_hash and d.target_id is not None:
            d.action = Action.SKIPPED_UNCHANGED
            return
        if snap is not None and snap.written_hash != TOMBSTONE:
            try:
                d.previous = flatten(tx.unseal(self.rt.cipher, "snapshots", "blob",
                                            row=snapshot_row(d.party_id, tgt.system, tgt.object), token=snap.blob))
            except CrmBridgeError:
                d.previous = None  # erased or unreadable: the diff shows every field as new
        d.item = WriteItem(key=d.party_id, payload=payload, external_id=d.target_id,
                           key_field=tgt.mapping.spec.key_field, duplicate_search=ctx.job.duplicate_search)
        if ctx.job.direction == "two_way":
            d.canonical = {k: v for k, v in d.canonical.items() if k != "source_refs"}  # bookkeeping, not merged
            d.echo_hash = echo_hash(flatten(d.canonical), path_filter(tgt.mapping.owned_canonical_paths("in")),
                                    ctx.hash_key)

    def derive_party(self, tx: StoreTx, ctx: RunContext, d: Decision, party: Party) -> Party | None:
        """The party with derived fields (the rules step, :mod:`crmbridge.sync.engine.derive`); here: as it is."""
        return party

    def _identity_keys(self, ctx: RunContext, party: Party) -> list[tuple[str, str]]:
        return identity_keys(self.rt.indexer(), ctx.job.match_rules, party)

    def _decide_tombstone(self, tx: StoreTx, ctx: RunContext, d: Decision) -> Decision:
        job, tgt = ctx.job, ctx.target
        if d.party_id is None:
            return d.quiet("out_of_scope")   # closed or deleted before it was ever synced: nothing to delete
        linked = tx.xrefs_for_party(d.party_id, tgt.system, tgt.object)
        d.target_id = linked[0][2] if linked else None
        if job.delete_policy == "ignore" or d.target_id is None:
            d.action, d.reason = Action.SKIPPED_UNCHANGED, f"closed at the source; delete policy {job.delete_policy}"
            return d
        d.action, d.reason = Action.DELETED, f"closed at the source; delete policy {job.delete_policy}"
        if job.delete_policy == "deactivate":
            snap = tx.get_snapshot(d.party_id, tgt.system, tgt.object)
            if snap is not None and snap.written_hash != TOMBSTONE:
                try:
                    data = tx.unseal(self.rt.cipher, "snapshots", "blob",
                                  row=snapshot_row(d.party_id, tgt.system, tgt.object), token=snap.blob)
                    closed = parse_party({**data, "party_id": d.party_id, "lifecycle_stage": "CLOSED"})
                    payload = tgt.mapping.map_out(closed)
                except CrmBridgeError as exc:
                    d.action, d.stage = Action.FAILED, "deactivate"
                    d.error = exc if isinstance(exc, RecordError) else RecordError(str(exc), code="deactivate")
                    return d
                d.party, d.canonical = closed, closed.canonical_dict()
                d.payload_hash = payload_hash(payload, ctx.hash_key)
                d.item = WriteItem(key=d.party_id, payload=payload, external_id=d.target_id,
                                   key_field=tgt.mapping.spec.key_field, duplicate_search=job.duplicate_search)
        return d

