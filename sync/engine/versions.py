"""Mappings that evolve: a changed mapping is applied to every record a job has written; full refresh; resync.

* **A changed mapping.** A job remembers the mapping versions (content hashes) it last completed a run with, and
  their text (``StoreTx.get_job_mappings``). When a run starts with another version of either mapping, it reads
  the source from the start and re-derives every record, even those whose source record is unchanged since the
  job last read it; the payload hash comparison still makes a record whose target payload did not change cost no
  call, so exactly the records the new mapping changes are written, in the job's batches. The re-derivation is
  marked *under way* (``pending``) in the same transaction that resets the cursor, and the cursor moves with each
  committed batch as in any run: a run that crashes or is stopped mid-way is resumed from its cursor by the next
  run, still re-deriving, and the versions are recorded as the job's when a run completes it.
* **Full refresh** (``run --full-refresh``): the same re-derivation without a mapping change: the source (both
  sides of a two-way job) is read from the start.
* **Resync** (``run --resync [--only-field F]``): the target is re-pushed from stored state (the snapshot of what
  was last synced for each party), without reading the source: every party the job holds at the target is mapped
  out by the current mapping and written (only field F, beside the key field, when given).

A job that ran before versions were recorded records its versions at its next completed run (nothing to compare
with before that: ``run --full-refresh`` applies a mapping changed meanwhile).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from crmbridge.adapters.base import RawRecord, WriteItem
from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import Mapping, load_mapping
from crmbridge.canonical.model import parse_party
from crmbridge.core.errors import ConfigurationError, CrmBridgeError, RecordError
from crmbridge.sync.engine.context import Decision, RunContext
from crmbridge.sync.engine.hashing import payload_hash
from crmbridge.sync.engine.records import Recording, snapshot_row
from crmbridge.sync.engine.vendorplan import mapped_out, vendor_changes
from crmbridge.sync.merge import flatten
from crmbridge.sync.report import COMPLETED, MappingChange, PlannedChange
from crmbridge.sync.state.ledger import Action
from crmbridge.sync.state.store import StoreTx

__all__ = ["RESYNC_REASON", "Versions"]

log = logging.getLogger("crmbridge.sync")

#: ledger reason of a resync's writes
RESYNC_REASON = "resync: re-pushed from stored state"


def _mapping_from_text(ref: str, text: str) -> Mapping | None:
    """A mapping version from its archived text (``None``: it no longer loads)."""
    with tempfile.TemporaryDirectory(prefix="crmbridge-mapping-") as d:
        p = Path(d) / Path(ref).name
        p.write_text(text, encoding="utf-8")
        try:
            return load_mapping(p, profile=target_profile)
        except CrmBridgeError:
            return None


class Versions(Recording):
    """Mapping versions, full refresh and resync (a part of :class:`~crmbridge.sync.engine.runner.JobRunner`)."""

    def _mapping_refs(self) -> dict[str, str]:
        """The job's mappings by role (``source``, ``target``): a mapping file moved elsewhere keeps its role."""
        return {"source": self.job.source_mapping, "target": self.job.target_mapping}

    def mapping_versions(self) -> dict[str, str]:
        """The job's mappings' current versions, by role (``source``, ``target``)."""
        return {role: self.rt.mapping(ref).version_hash for role, ref in self._mapping_refs().items()}

    def _mapping_texts(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ref in self._mapping_refs().values():
            m = self.rt.mapping(ref)
            try:
                out[m.version_hash] = Path(m.path).read_text(encoding="utf-8")
            except OSError:
                continue
        return out

    def note_rederivation(self, tx: StoreTx, ctx: RunContext) -> None:
        """A re-derivation under way (left by a run that did not complete it) makes this run re-derive too: what a
        distributed worker's context asks."""
        state = tx.get_job_mappings(ctx.name)
        if state is not None and state["pending"] is not None:
            ctx.rederive = True

    def prepare_versions(self, ctx: RunContext, *, full_refresh: bool = False) -> dict[str, str | None]:
        """At a run's start: compare the job's mapping versions with those it last completed a run with; a change
        (or ``full_refresh``) resets the cursor(s) and starts a re-derivation (committed together, so a crash
        resumes it). Returns the mapping references that changed -> the version they had (``None``: unknown)."""
        refs, current = self._mapping_refs(), self.mapping_versions()
        keys = {ctx.source.cursor_key} | ({ctx.target.cursor_key} if ctx.job.direction == "two_way" else set())
        with self._tx(ctx) as tx:
            state = tx.get_job_mappings(ctx.name)
            changed: dict[str, str | None] = {}
            if state is not None:
                changed = {refs[role]: state["versions"].get(role) for role, v in current.items()
                           if state["versions"].get(role) != v}
            resuming = state is not None and state["pending"] == current
            if full_refresh or (changed and not resuming):
                ctx.from_start = set(keys)
                for key in sorted(keys):
                    tx.put_cursor(ctx.name, key, field="modified_at", value=None,
                                  overlap_seconds=ctx.job.overlap_seconds, boundary={})
                base = state or {"versions": current, "texts": self._mapping_texts()}
                tx.put_job_mappings(ctx.name, versions=base["versions"], texts=base["texts"], pending=current)
            ctx.rederive = bool(full_refresh or changed or (state is not None and state["pending"] is not None))
            for ref, old in changed.items():
                text = (state or {}).get("texts", {}).get(old or "") or (tx.mapping_text(old) if old else None)
                previous = _mapping_from_text(ref, text) if text else None
                if previous is not None:
                    ctx.previous_mappings[ref] = previous
        if changed:
            log.info("job %s: mapping %s changed since its last completed run: every record is re-derived",
                     ctx.name, ", ".join(sorted(changed)))
        return changed

    def complete_versions(self, ctx: RunContext) -> None:
        """After a run that went through to its end: its mapping versions are the job's, no re-derivation is under
        way any more."""
        if ctx.dry_run or ctx.report.status not in COMPLETED:
            return
        with self.rt.store.transaction() as tx:
            state = tx.get_job_mappings(ctx.name)
            current = self.mapping_versions()
            if state is not None and state["versions"] == current and state["pending"] is None:
                return
            tx.put_job_mappings(ctx.name, versions=current, texts=self._mapping_texts(), pending=None)

    # -- resync ----------------------------------------------------------------------------------
    def _run_resync(self, ctx: RunContext, only_field: str | None = None, *,
                    changed_since: Mapping | None = None) -> None:
        """Re-push every party the job holds at the target from its stored state, in the job's batches;
        ``changed_since``: only those whose payload that mapping version made differs from the current one's (a
        two-way job's changed target mapping: its merges compare canonical states, which a mapping change leaves
        as they were)."""
        tgt = ctx.target
        if only_field is not None:
            known = set(tgt.mapping.vendor_fields("out"))
            if only_field.split(".")[0].split("[")[0] not in known:
                raise ConfigurationError(f"--only-field {only_field}: not a field the mapping "
                                         f"{ctx.job.target_mapping} writes; it writes {', '.join(sorted(known))}")
        after: str | None = None
        while True:
            with self.rt.store.transaction(read_only=True) as tx:
                pids = tx.snapshot_party_ids(tgt.system, tgt.object, after=after, limit=ctx.job.batch_size)
            if not pids:
                return
            after = pids[-1]
            self._resync_batch(ctx, pids, only_field, changed_since)

    def _resync_batch(self, ctx: RunContext, pids: list[str], only_field: str | None,
                      changed_since: Mapping | None = None) -> None:
        src, tgt = ctx.source, ctx.target
        with self._tx(ctx) as tx:
            tx.prefetch_parties(pids, snapshots_of=[(tgt.system, tgt.object)],
                                xrefs_of=[(tgt.system, tgt.object), (src.system, src.object)])
            decisions = [self._resync_decide(tx, ctx, pid, only_field, changed_since) for pid in pids]
            self._guard_intents(tx, ctx, decisions)
        ctx.report.read += len(decisions)
        if ctx.dry_run:
            self._plan_resync(ctx, decisions, changed_since)
            return
        self._write(ctx, decisions)
        with self.rt.store.transaction() as tx:
            entries = []
            for d in decisions:
                if d.silent:
                    ctx.report.count(d.outcome or "unchanged")
                    continue
                if d.action is Action.UPDATED and d.canonical is not None and d.party is not None:
                    ctx.report.count("updated")
                    ctx.report.actions[Action.UPDATED] += 1
                    tx.put_snapshot(d.party_id or "", tgt.system, tgt.object,
                                    content_hash=d.content_hash or d.party.content_hash(ctx.hash_key),
                                    blob=tx.seal(self.rt.cipher, "snapshots", "blob",
                                                 row=snapshot_row(d.party_id or "", tgt.system, tgt.object),
                                                 value=d.canonical),
                                    written_hash=d.payload_hash, mapping_versions=ctx.mapping_versions)
                    if d.intent_id is not None:
                        tx.complete_write_intent(d.intent_id, external_id=d.target_id)
                    entries.append(self._entry(ctx, d, reason=d.reason))
                    continue
                ctx.report.count("dead_lettered")
                entries.extend(self._record(tx, ctx, d))   # a dead letter: a later run re-derives it
            tx.ledger(self.rt.signer, cipher=self.rt.cipher).append(entries)
            ctx.batches += 1
            self._note_progress(tx, ctx)
        self.heartbeat(ctx)
        if self.progress is not None:
            self.progress(len(decisions))

    def _resync_decide(self, tx: StoreTx, ctx: RunContext, pid: str, only_field: str | None,
                       changed_since: Mapping | None = None) -> Decision:
        src, tgt = ctx.source, ctx.target
        refs = tx.xrefs_for_party(pid, src.system, src.object)
        d = Decision(RawRecord(object=src.object, external_id=refs[0][2] if refs else pid, data={}), party_id=pid)
        linked = tx.xrefs_for_party(pid, tgt.system, tgt.object)
        snap = tx.get_snapshot(pid, tgt.system, tgt.object)
        if not linked or snap is None:
            return d.quiet("unchanged")   # never written to the target: nothing to re-push
        d.target_id = linked[0][2]
        try:
            data = tx.unseal(self.rt.cipher, "snapshots", "blob", row=snapshot_row(pid, tgt.system, tgt.object),
                             token=snap.blob)
            party = parse_party({**data, "party_id": pid})
            payload = tgt.mapping.map_out(party)
        except CrmBridgeError as exc:   # erased (its key destroyed) or no longer valid for the mapping
            if tx.erasure_for_record(src.system, src.object, d.raw.external_id) is not None:
                return d.quiet("suppressed")
            d.action, d.stage = Action.FAILED, "resync"
            d.error = exc if isinstance(exc, RecordError) else RecordError(str(exc), code="resync")
            return d
        full = payload
        if changed_since is not None:
            try:
                before = changed_since.map_out(party)
            except CrmBridgeError:
                before = None
            if before == payload:
                return d.quiet("unchanged")   # this party's payload is the same under both versions
            fields = vendor_changes(before, payload, tgt.mapping)
            change = next((c for c in ctx.report.mapping_changes if c.mapping == ctx.job.target_mapping), None)
            if change is None:
                change = MappingChange(ctx.job.target_mapping)
                ctx.report.mapping_changes.append(change)
            change.records += 1
            change.fields.update(fields)
            d.reason = f"mapping {ctx.job.target_mapping} changed"
        if only_field is not None:
            key = tgt.mapping.spec.key_field
            payload = {k: v for k, v in payload.items() if k == key or k == only_field.split(".")[0].split("[")[0]}
        d.party, d.canonical = party, party.canonical_dict()
        d.content_hash = snap.content_hash
        # what the target now holds: the full payload (one-way); a two-way snapshot keeps its echo hash
        d.payload_hash = (payload_hash(full, ctx.hash_key) if ctx.job.direction == "one_way" and only_field is None
                          else snap.written_hash)
        d.previous = flatten(d.canonical)   # the canonical state is what was synced: no field changes
        d.reason = d.reason or RESYNC_REASON + (f" (only {only_field})" if only_field else "")
        d.item = WriteItem(key=pid, payload=payload, external_id=d.target_id, key_field=tgt.mapping.spec.key_field,
                           duplicate_search=ctx.job.duplicate_search)
        return d

    def _plan_resync(self, ctx: RunContext, decisions: list[Decision], changed_since: Mapping | None = None) -> None:
        r = ctx.report
        writes = [d for d in decisions if d.item is not None]
        r.planned_write_calls += -(-len(writes) // ctx.target.adapter.max_batch_size) if writes else 0
        for d in decisions:
            if d.silent:
                r.count(d.outcome or "unchanged")
                continue
            action = d.action or Action.UPDATED
            r.actions[action] += 1
            r.count("updated" if action is Action.UPDATED else "dead_lettered")
            fields: dict[str, Any] = {}
            if d.item is not None:
                before = mapped_out(changed_since, d.canonical, d.party_id) if changed_since is not None else None
                fields = vendor_changes(before, d.item.payload, ctx.target.mapping)
            r.plan.append(PlannedChange(action=action, source_id=d.raw.external_id, party_id=d.party_id,
                                        reason=d.reason or (f"{d.stage}: {d.error}" if d.error else None),
                                        target_fields=fields))
