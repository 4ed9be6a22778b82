"""Two-way: both sides' changes since their cursors, merged per party against the last synced state.

A merge reads each side's record through its mapping (a CRM sees fewer fields than the core), recognises the
echo of crmbridge's own write, merges three ways (:mod:`crmbridge.sync.merge`), writes what moved to each side and
records the batch in one transaction: ledger entries, conflicts for review, dead letters of refused writes, the
records read (overlap dedupe) and the merged state as the new synced state.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from crmbridge.adapters.base import RawRecord, WriteItem, WriteResult, WriteStatus
from crmbridge.canonical.c3 import refuse_c3
from crmbridge.canonical.model import Party, parse_party
from crmbridge.core.errors import RecordError
from crmbridge.sync.engine.context import BatchKind, Decision, RunContext, Side
from crmbridge.sync.engine.hashing import content, echo_hash, path_filter, payload_hash, record_hash, watermark_of
from crmbridge.sync.engine.oneway import OneWay
from crmbridge.sync.engine.records import TOMBSTONE, correlation_id, masked_value, new_call_id, snapshot_row
from crmbridge.sync.engine.stream import count_reads, reading
from crmbridge.sync.merge import ConflictPolicy, MergeResult, flatten, merge_unseen, three_way_merge, unflatten
from crmbridge.sync.report import PlannedChange
from crmbridge.sync.state.db import chunked
from crmbridge.sync.state.ledger import Action, LedgerEntryIn
from crmbridge.sync.state.store import Snapshot, StoreTx

__all__ = ["RECOVERED", "TwoWay"]

#: ledger reason of the writes that recover a create a run which did not finish may have applied (two-way)
RECOVERED = "recovered a create a run that did not finish may have applied: merged with the target's current record"
#: write outcomes that leave the side holding what was written
_WRITTEN = (WriteStatus.UPDATED, WriteStatus.CREATED, WriteStatus.UNCHANGED)


@dataclass
class _Merge:
    """One batch of two-way changes being merged."""

    policy: ConflictPolicy
    s_paths: Callable[[str], bool]     # canonical paths the source's mapping reads
    t_paths: Callable[[str], bool]     # ... and the target's
    reads: dict[str, tuple[RawRecord | None, RawRecord | None]]   # party id -> (source record, target record)
    to_target: list[tuple[Decision, dict[str, Any]]] = field(default_factory=list)
    to_source: list[tuple[Decision, dict[str, Any]]] = field(default_factory=list)
    records: list[tuple[Decision, list[Any], dict[str, Any]]] = field(default_factory=list)
    #: party id -> the intent of a recovered create (see JobRunner._guard_intents), completed when its merge commits
    recovered_intents: dict[str, int] = field(default_factory=dict)


def _overlay(under: dict[str, Any], flat: dict[str, Any], covered: Callable[[str], bool]) -> dict[str, Any]:
    """A side's view: the common ground, with the side's values at the paths its mapping reads."""
    return {p: v for p, v in under.items() if not covered(p)} | {p: v for p, v in flat.items() if covered(p)}


class TwoWay(OneWay):
    """The two-way steps (a part of :class:`~crmbridge.sync.engine.runner.JobRunner`)."""

    def _policy(self, ctx: RunContext) -> ConflictPolicy:
        cp = ctx.job.conflict_policy
        owners: dict[str, Literal["source", "target"]] = {
            glob: ("source" if system == ctx.source.system else "target") for glob, system in cp.owners.items()}
        return ConflictPolicy(type=cp.type, owners=owners, default_owner="source",
                              clock_tolerance_seconds=cp.clock_tolerance_seconds)

    def _run_two_way(self, ctx: RunContext) -> bool:
        """Both sides' changes since their cursors, merged per party against the last synced state.

        The target's changes are read first and held until merged (a CRM's changes between runs are few); the
        source is then streamed: parties new to the target are created as in a one-way job, known ones merged
        with the target's change if it has one; the target's remaining changes are merged last. Each cursor moves
        only after what it covers is committed.
        """
        src, tgt, job = ctx.source, ctx.target, ctx.job
        with self.rt.store.transaction() as tx:
            cur_s, cur_t = self.cursor(tx, ctx, src), self.cursor(tx, ctx, tgt)
            self.load_intents(tx, ctx)
            due = self._due_dead_letters(tx, ctx)
        # source records that failed before (a CRM record that failed is tried again when the CRM changes it)
        for raws in self._refetch_dead_letters(ctx, due):
            known, fresh = self._split_known(ctx, src, raws, retry=True)
            if fresh:
                self.process_batch(ctx, fresh, BatchKind.RETRY)
            if known:
                ctx.report.read += len(known)
                self._merge_batch(ctx, [(pid, raw, None) for pid, raw in known])
        changed_t: dict[str, RawRecord] = {}
        seen_t: list[Decision] = []
        for page in reading(tgt, tgt.adapter.extract(tgt.object, since=cur_t.since,
                                                      fields=tgt.mapping.vendor_fields("in") or None), ctx.report):
            with self.rt.store.transaction() as tx:
                for raw in page.records:
                    ctx.report.read += 1
                    seen_t.append(Decision(raw, raw_hash=record_hash(raw, ctx.hash_key)))
                    pid = tx.get_xref(tgt.system, tgt.object, raw.external_id)
                    if pid is None:
                        # created in the CRM: core banking creates customers, not crmbridge
                        ctx.report.count("unmanaged")
                        continue
                    seen = tx.get_read_hash(ctx.name, tgt.system, tgt.object, raw.external_id)
                    if seen is not None and seen.record_hash == seen_t[-1].raw_hash:
                        ctx.report.count("unchanged")   # an overlap re-read of a record already merged
                    elif pid in changed_t:
                        ctx.report.count("unchanged")   # read twice in one run (paging): the newer one is merged
                        changed_t[pid] = raw
                    else:
                        changed_t[pid] = raw
        for page in reading(src, src.adapter.extract(src.object, since=cur_s.since,
                                                      fields=src.mapping.vendor_fields("in") or None), ctx.report):
            for chunk in chunked(page.records, job.batch_size):
                known, fresh = self._split_known(ctx, src, chunk)
                if fresh:
                    self._one_way_batch(ctx, fresh, None)   # new parties; the source cursor moves below
                if known:
                    ctx.report.read += len(known)
                    self._merge_batch(ctx, [(pid, raw, changed_t.pop(pid, None)) for pid, raw in known])
                top, at_top = watermark_of(chunk, ctx.hash_key)
                if not ctx.dry_run and top is not None:
                    with self.rt.store.transaction() as tx:
                        self.advance_cursor(tx, ctx, cur_s, top, at_top)
        for chunk in chunked(sorted(changed_t.items()), job.batch_size):
            self._merge_batch(ctx, [(pid, None, raw) for pid, raw in chunk])
        if seen_t and not ctx.dry_run:
            with self.rt.store.transaction() as tx:
                self._advance(tx, ctx, cur_t, seen_t)
        return cur_s.since is None and cur_t.since is None

    def _split_known(self, ctx: RunContext, side: Side, raws: list[RawRecord], *,
                     retry: bool = False) -> tuple[list[tuple[str, RawRecord]], list[RawRecord]]:
        """Source records of parties already at the target (to merge) and the others (to create); overlap
        re-reads of records merged before are read, and counted, as unchanged."""
        known: list[tuple[str, RawRecord]] = []
        fresh: list[RawRecord] = []
        with self.rt.store.transaction() as tx:
            for raw in raws:
                if tx.erasure_for_record(side.system, side.object, raw.external_id) is not None:
                    fresh.append(raw)   # an erased party's: the shared decide step records it suppressed-erased
                    continue
                pid = tx.get_xref(side.system, side.object, raw.external_id)
                if raw.error is not None or pid is None or not tx.xrefs_for_party(pid, ctx.target.system,
                                                                                  ctx.target.object):
                    fresh.append(raw)
                    continue
                seen = tx.get_read_hash(ctx.name, side.system, side.object, raw.external_id)
                if retry or ctx.rederive or seen is None or seen.record_hash != record_hash(raw, ctx.hash_key):
                    known.append((pid, raw))
                else:
                    ctx.report.read += 1
                    ctx.report.count("unchanged")
        return known, fresh

    def _read_side(self, side: Side, raw: RawRecord, pid: str, base: dict[str, Any]) -> dict[str, Any]:
        """One side's current state of a party, as a flat canonical record.

        A side's mapping reads only some fields (a CRM sees a masked name, no ID number): what it reads is laid
        over the last synced state, and the result validated as a whole party, so values compare in the same
        normalised form. Source references are bookkeeping, not content, and are left out of the merge.
        """
        refuse_c3(raw.data, where=f"{side.system}:{side.object}/{raw.external_id}")   # two-way reads too
        partial = side.mapping.map_in_partial(raw.data, party_id=uuid.UUID(pid))
        overlay = {k: v for k, v in flatten(partial).items() if not k.startswith("source_refs")}
        view = {**base, **overlay}
        try:
            return content(flatten(parse_party({**unflatten(view), "party_id": pid}).canonical_dict()))
        except RecordError:
            # not a valid party as it stands (e.g. a CRM edit of a name the core owns, which leaves the name parts
            # inconsistent): compare it as read; the merge decides, and the merged party is validated afterwards
            return view

    def _merge_batch(self, ctx: RunContext, changes: list[tuple[str, RawRecord | None, RawRecord | None]]) -> None:
        """Merge each party's changes (its source record, its target record, or both) against what was last
        synced, write what moved to each side, and record the batch in one transaction."""
        src, tgt = ctx.source, ctx.target
        changes = self._drop_erased(ctx, changes)   # an erased party's changes: ledgered, never merged
        m = _Merge(self._policy(ctx), path_filter(src.mapping.owned_canonical_paths("in")),
                   path_filter(tgt.mapping.owned_canonical_paths("in")),
                   {pid: (raw_s, raw_t) for pid, raw_s, raw_t in changes})
        with self._tx(ctx) as tx:
            for pid, raw_s, raw_t in changes:
                self._merge_party(tx, ctx, m, pid, raw_s, raw_t)
        if ctx.dry_run:
            self._plan_merges(ctx, m)
            return
        t_call, s_call = new_call_id(), new_call_id()
        t_results = tgt.adapter.write(tgt.object, [d.item for d, _ in m.to_target if d.item]) if m.to_target else []
        s_results = src.adapter.write(src.object, [d.item for d, _ in m.to_source if d.item]) if m.to_source else []
        # each decision keeps its write's answer until its ledger entry is built
        for (d, _), r in zip(m.to_target, t_results, strict=True):
            d.result, d.correlation_id = r, correlation_id(r, t_call)
        for (d, _), r in zip(m.to_source, s_results, strict=True):
            d.result, d.correlation_id = r, correlation_id(r, s_call)
        outcome_t = {d.party_id: r for (d, _), r in zip(m.to_target, t_results, strict=True)}
        outcome_s = {d.party_id: (d, r, f) for (d, f), r in zip(m.to_source, s_results, strict=True)}
        with self.rt.store.transaction() as tx:
            entries: list[LedgerEntryIn] = []
            with tx.batched_writes():   # one executemany per statement kind for the batch
                for d, conflicts, moves in m.records:
                    entries.extend(self._record_merge(tx, ctx, m, d, conflicts, moves, outcome_t, outcome_s))
            tx.ledger(self.rt.signer, cipher=self.rt.cipher).append(entries)
            ctx.batches += 1
            self._note_progress(tx, ctx)
        self.heartbeat(ctx)

    # -- merging one party ---------------------------------------------------------------------
    def _merge_party(self, tx: StoreTx, ctx: RunContext, m: _Merge, pid: str, raw_s: RawRecord | None,
                     raw_t: RawRecord | None) -> None:
        tgt = ctx.target
        d = Decision(raw_s or raw_t, party_id=pid)  # type: ignore[arg-type]
        snap = tx.get_snapshot(pid, tgt.system, tgt.object)
        found: RawRecord | None = None
        if pid in ctx.recovered:   # a create a dead run may have applied: the target's record as it is now
            found, m.recovered_intents[pid] = ctx.recovered.pop(pid)
        elif snap is None or snap.written_hash == TOMBSTONE:
            # never synced, or deleted: a two-way job never resurrects a party
            ctx.report.count("suppressed", count_reads(raw_s, raw_t))
            return
        base = self._synced_base(tx, ctx, pid, snap)   # None: never recorded as synced (a recovered create)
        views = self._side_views(ctx, m, d, base, snap, raw_s, raw_t, found)
        if views is None:
            return
        cur_t = raw_t or found
        modified = {"source_modified": raw_s.modified_at if raw_s else None,
                    "target_modified": cur_t.modified_at if cur_t else None}
        result = (three_way_merge(base, *views, m.policy, **modified) if base is not None
                  else merge_unseen(*views, m.policy, seen=m.t_paths, **modified))
        self._plan_merged(tx, ctx, m, d, result, base, raw_s, raw_t, found)

    def _synced_base(self, tx: StoreTx, ctx: RunContext, pid: str, snap: Snapshot | None) -> dict[str, Any] | None:
        """What was last synced to the target, as flat canonical content (``None``: nothing, or deleted)."""
        if snap is None or snap.written_hash == TOMBSTONE:
            return None
        tgt = ctx.target
        return content(flatten(tx.unseal(self.rt.cipher, "snapshots", "blob",
                                         row=snapshot_row(pid, tgt.system, tgt.object), token=snap.blob)))

    def _side_views(self, ctx: RunContext, m: _Merge, d: Decision, base: dict[str, Any] | None,
                    snap: Snapshot | None, raw_s: RawRecord | None, raw_t: RawRecord | None,
                    found: RawRecord | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Each side's view of the party for the merge: what its mapping reads laid over the common ground;
        ``None`` when a side's record cannot be read (dead-lettered under the system it came from)."""
        src, tgt, pid = ctx.source, ctx.target, d.party_id or ""
        cur_t = raw_t or found
        try:
            s_flat = self._read_side(src, raw_s, pid, base or {}) if raw_s else dict(base or {})
            d.origin = "target" if found is None else "source"   # a recovery retries from the source
            under = s_flat if base is None else base   # never synced: the target's view over the source's
            t_flat = self._read_side(tgt, cur_t, pid, under) if cur_t else dict(under)
            d.origin = "source"
        except RecordError as exc:
            d.raw = (raw_t if d.origin == "target" else raw_s) or d.raw
            d.action, d.error, d.stage = Action.FAILED, exc, "map_in"
            m.records.append((d, [], {}))
            return None
        if raw_t is not None and snap is not None and base is not None \
                and echo_hash(t_flat, m.t_paths, ctx.hash_key) == snap.written_hash:
            t_flat = dict(base)  # our own write coming back, whatever else the CRM's automation touched
            d.reason = "echo of crmbridge's own write"
        under = s_flat if base is None else base
        return _overlay(under, s_flat, m.s_paths), _overlay(under, t_flat, m.t_paths)

    def _plan_merged(self, tx: StoreTx, ctx: RunContext, m: _Merge, d: Decision, result: MergeResult,
                     base: dict[str, Any] | None, raw_s: RawRecord | None, raw_t: RawRecord | None,
                     found: RawRecord | None) -> None:
        """The writes a merge result needs: the merged party must itself be valid and map to both sides."""
        src, tgt, pid = ctx.source, ctx.target, d.party_id or ""
        try:
            merged_party = parse_party({**unflatten(result.merged), "party_id": pid})
            payload = tgt.mapping.map_out(merged_party) if result.to_target else None
            payload_s = src.mapping.map_out(merged_party) if result.to_source else None
        except RecordError as exc:
            d.raw = raw_t or raw_s or d.raw
            d.origin = "target" if raw_t is not None else "source"
            d.action, d.error, d.stage = Action.FAILED, exc, "merge"
            m.records.append((d, [], {}))
            return
        d.party, d.canonical, d.previous = merged_party, merged_party.canonical_dict(), base
        linked = tx.xrefs_for_party(pid, tgt.system, tgt.object)
        d.target_id = linked[0][2] if linked else (found.external_id if found is not None else None)
        if payload is not None:
            d.payload_hash = payload_hash(payload, ctx.hash_key)
            d.item = WriteItem(key=pid, payload=payload, external_id=d.target_id,
                               key_field=tgt.mapping.spec.key_field, duplicate_search=ctx.job.duplicate_search)
            m.to_target.append((d, result.to_target))
        if payload_s is not None:
            m.to_source.append((self._source_write(tx, ctx, d, merged_party, payload_s, raw_s), result.to_source))
        d.echo_hash = echo_hash(flatten(d.canonical), m.t_paths, ctx.hash_key)
        m.records.append((d, result.conflicts, {"to_target": result.to_target, "to_source": result.to_source}))

    def _source_write(self, tx: StoreTx, ctx: RunContext, d: Decision, party: Party, payload: dict[str, Any],
                      raw_s: RawRecord | None) -> Decision:
        """The write back to the source, against the version of its record last read (optimistic concurrency)."""
        src, pid = ctx.source, d.party_id or ""
        linked = tx.xrefs_for_party(pid, src.system, src.object)
        ext = linked[0][2] if linked else None
        seen = tx.get_read_hash(ctx.name, src.system, src.object, ext) if ext is not None else None
        item = WriteItem(key=pid, payload=payload, external_id=ext,
                         expected_version=(raw_s.version if raw_s else None) or (seen.version if seen else None))
        return Decision(d.raw, party_id=pid, party=party, item=item, target_id=item.external_id)

    # -- a dry run's plan, a real run's record -------------------------------------------------
    def _plan_merges(self, ctx: RunContext, m: _Merge) -> None:
        for d, conflicts, moves in m.records:
            n = count_reads(*m.reads[d.party_id or ""])
            ctx.report.count("dead_lettered" if d.action is Action.FAILED else "conflict" if conflicts
                             else "updated" if any(moves.values()) else "echo" if d.reason else "unchanged", n)
            ctx.report.actions[Action.CONFLICT] += len(conflicts)
            for side, fields_ in moves.items():
                if fields_:
                    ctx.report.actions[Action.UPDATED] += 1
                    ctx.report.plan.append(PlannedChange(Action.UPDATED, d.raw.external_id, d.party_id,
                                                         {p: ("", masked_value(p, v, None) or "")
                                                          for p, v in fields_.items()}, reason=side,
                                                         target_fields=self._target_fields(ctx, d)
                                                         if side == "to_target" else {}))
        ctx.report.planned_write_calls += len([1 for x in (m.to_target, m.to_source) if x])

    def _record_merge(self, tx: StoreTx, ctx: RunContext, m: _Merge, d: Decision, conflicts: list[Any],
                      moves: dict[str, Any], outcome_t: dict[str | None, WriteResult],
                      outcome_s: dict[str | None, tuple[Decision, WriteResult, dict[str, Any]]]
                      ) -> list[LedgerEntryIn]:
        """Record one party's merge: ledger entries of each write, dead letters of refused ones, conflicts for
        review; what was read and what is now synced, if every write went through."""
        pid = d.party_id or ""
        n = count_reads(*m.reads[pid])
        ids = self._merge_ids(tx, ctx, m, d)
        if d.action is Action.FAILED:
            ctx.report.count("dead_lettered", n)
            return self._record(tx, ctx, d, ids)
        note = RECOVERED if pid in m.recovered_intents else None
        entries: list[LedgerEntryIn] = []
        written: list[tuple[Decision, WriteResult, dict[str, Any], Literal["to_target", "to_source"]]] = []
        if moves["to_target"]:
            written.append((d, outcome_t[pid], moves["to_target"], "to_target"))
        if moves["to_source"]:
            ds, r, f = outcome_s[pid]
            written.append((ds, r, f, "to_source"))
        ok, refused = True, []
        for dw, r, moved, direction in written:
            entries.append(self._outcome_entry(ctx, dw, r, moved, direction, note, ids))
            ok = ok and r.status in _WRITTEN
            if r.status is WriteStatus.FAILED:
                refused.append((dw, r))
        for dr, r in refused:
            self._dead_letter_refused(tx, ctx, m, pid, dr, r)
        ctx.report.count("dead_lettered" if refused else "conflict" if conflicts or not ok
                         else "updated" if moves["to_target"] or moves["to_source"]
                         else "echo" if d.reason else "unchanged", n)
        entries.extend(self._record_conflicts(tx, ctx, d, conflicts, ids))
        if not moves["to_target"] and not moves["to_source"] and not conflicts:
            quiet = Action.SKIPPED_ECHO if d.reason else Action.SKIPPED_UNCHANGED
            ctx.report.actions[quiet] += 1
            # labelled the way of the record read: an echo is the target's record coming back
            entries.append(self._entry(ctx, Decision(d.raw, action=quiet, party_id=pid, target_id=d.target_id),
                                       reason=d.reason or "no change to carry", ids=ids,
                                       direction="to_target" if m.reads[pid][0] is not None else "to_source"))
        if ok:
            self._record_synced(tx, ctx, m, d)
        return entries

    def _dead_letter_refused(self, tx: StoreTx, ctx: RunContext, m: _Merge, pid: str, dr: Decision,
                             r: WriteResult) -> None:
        """A refused write is a dead letter of the record read (retried by later runs), never just a ledger
        line: the cursor has moved past it."""
        raw_s, raw_t = m.reads[pid]
        letter = Decision(raw_s or raw_t or dr.raw, party_id=pid, stage="target",
                          origin="source" if raw_s is not None else "target",
                          error=r.error or RecordError("the system refused the write", code="rejected"))
        letter.raw_hash = record_hash(letter.raw, ctx.hash_key)
        self._dead_letter(tx, ctx, letter)

    def _merge_ids(self, tx: StoreTx, ctx: RunContext, m: _Merge, d: Decision) -> tuple[str | None, str | None]:
        """The party's record id at the job's source and at its target, for the labels of its ledger entries."""
        src, tgt, pid = ctx.source, ctx.target, d.party_id or ""
        raw_s, raw_t = m.reads[pid]
        s_id = raw_s.external_id if raw_s is not None else None
        t_id = d.target_id or (raw_t.external_id if raw_t is not None else None)
        if s_id is None:
            linked = tx.xrefs_for_party(pid, src.system, src.object)
            s_id = linked[0][2] if linked else None
        if t_id is None:
            linked = tx.xrefs_for_party(pid, tgt.system, tgt.object)
            t_id = linked[0][2] if linked else None
        return s_id, t_id

    def _record_conflicts(self, tx: StoreTx, ctx: RunContext, d: Decision, conflicts: list[Any],
                          ids: tuple[str | None, str | None] = (None, None)) -> list[LedgerEntryIn]:
        """Each conflict to the review queue (its values sealed), with its ledger entry."""
        src, tgt, pid = ctx.source, ctx.target, d.party_id or ""
        entries = []
        for c in conflicts:
            ctx.report.actions[Action.CONFLICT] += 1
            cid = tx.add_conflict(
                ctx.name, pid, [c.path], run_id=ctx.run_id or None,
                **{f"{k}_value": tx.seal(self.rt.cipher, "conflicts", f"{k}_value",
                                         row={"job": ctx.name, "party_id": pid}, value={c.path: v})
                   for k, v in (("base", c.base), ("source", c.source), ("target", c.target))})
            entries.append(LedgerEntryIn(
                action=Action.CONFLICT, run_id=str(ctx.run_id), job=ctx.name, source_system=src.system,
                source_object=src.object, source_id=ids[0], target_system=tgt.system, target_object=tgt.object,
                target_id=ids[1] or d.target_id, party_id=pid, changed_fields=[c.path],
                before={c.path: masked_value(c.path, c.source, None)},
                after={c.path: masked_value(c.path, c.target, None)},
                actor=ctx.actor, reason=f"conflict {cid}: {c.reason}, waiting for review"))
        return entries

    def _record_synced(self, tx: StoreTx, ctx: RunContext, m: _Merge, d: Decision) -> None:
        """Every write of a merge went through: a recovered create is linked, the records read are remembered
        (overlap re-reads), the source's dead letters resolved, and the merged state is the new synced state."""
        tgt, pid = ctx.target, d.party_id or ""
        raw_s, raw_t = m.reads[pid]
        if pid in m.recovered_intents:   # the recovered create is now linked and recorded as synced
            if d.target_id:
                tx.put_xref(tgt.system, tgt.object, d.target_id, pid)
            tx.complete_write_intent(m.recovered_intents[pid], external_id=d.target_id)
        self._remember_reads(tx, ctx, raw_s, raw_t)
        if raw_s is not None:
            self._resolve_letters(tx, ctx, raw_s)
        if d.canonical is not None and d.party is not None:
            blob = tx.seal(self.rt.cipher, "snapshots", "blob", row=snapshot_row(pid, tgt.system, tgt.object),
                           value=d.canonical)
            tx.put_snapshot(pid, tgt.system, tgt.object, content_hash=d.party.content_hash(ctx.hash_key),
                            blob=blob, written_hash=d.echo_hash, mapping_versions=ctx.mapping_versions)

    def _remember_reads(self, tx: StoreTx, ctx: RunContext, raw_s: RawRecord | None,
                        raw_t: RawRecord | None) -> None:
        """Keyed hashes of the records just merged, so overlap re-reads of them are recognised."""
        for side, raw in ((ctx.source, raw_s), (ctx.target, raw_t)):
            if raw is not None:
                tx.put_read_hash(ctx.name, side.system, side.object, raw.external_id,
                                 record_hash=record_hash(raw, ctx.hash_key), version=raw.version)

    def _outcome_entry(self, ctx: RunContext, d: Decision, r: WriteResult, moved: dict[str, Any],
                       direction: Literal["to_target", "to_source"], note: str | None = None,
                       ids: tuple[str | None, str | None] | None = None) -> LedgerEntryIn:
        base = d.previous or {}
        changed = {p: (base.get(p), v) for p, v in moved.items()}
        if r.status in (WriteStatus.UPDATED, WriteStatus.CREATED, WriteStatus.UNCHANGED):
            d.action, reason = Action.UPDATED, note
        elif r.status is WriteStatus.CONFLICT:
            d.action, reason = Action.CONFLICT, "stale version: the record changed since it was read"
        else:
            d.action, reason = Action.FAILED, f"{r.error.code if r.error else 'rejected'}: {r.error}"
        ctx.report.actions[d.action] += 1
        return self._entry(ctx, d, reason=reason, changed=changed, direction=direction, ids=ids)


