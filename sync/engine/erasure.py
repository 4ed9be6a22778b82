"""Durable erasure (PIPL Art. 47; docs/erasure.md) in a run: an erased party's records are suppressed (ledgered
``suppressed-erased``, never ingested or pushed), and the erasures pending at the job's target are carried out
first thing in the run by the job's delete policy."""

from __future__ import annotations

from typing import Any

from crmbridge.adapters.base import RawRecord, WriteItem, WriteResult, WriteStatus
from crmbridge.canonical.model import Party, parse_party
from crmbridge.core.errors import RecordError
from crmbridge.sync.engine.base import RunnerBase
from crmbridge.sync.engine.context import Decision, RunContext, Side
from crmbridge.sync.engine.hashing import record_hash
from crmbridge.sync.engine.records import correlation_id, new_call_id
from crmbridge.sync.engine.stream import count_reads
from crmbridge.sync.state.db import chunked
from crmbridge.sync.state.ledger import Action, LedgerEntryIn
from crmbridge.sync.state.lineage import write_lineage
from crmbridge.sync.state.store import StoreTx

__all__ = ["ERASED_NAME", "Erasure", "anonymised_payload"]

#: the name an erased party's CRM record keeps where the CRM requires one (masked by the mapping like any name)
ERASED_NAME = "已删除"


def anonymised_payload(side: Side, party_id: str, party_type: str | None) -> dict[str, Any]:
    """What an erased party's CRM record is overwritten with when it is deactivated rather than deleted: the key,
    lifecycle CLOSED, the placeholder name, and an empty value for every other field the mapping writes."""
    ptype = side.mapping.fixed_party_type or party_type or "INDIVIDUAL"
    party = parse_party({"party_id": party_id, "party_type": ptype, "lifecycle_stage": "CLOSED",
                         "name": {"legal_zh": ERASED_NAME}})
    payload = side.mapping.map_out(party)
    for name in side.mapping.vendor_fields("out"):
        payload.setdefault(name, None)
    return payload



class Erasure(RunnerBase):
    """Erasure in a run (a part of :class:`~crmbridge.sync.engine.runner.JobRunner`)."""

    def _suppress_erased(self, tx: StoreTx, ctx: RunContext, d: Decision, side: Side,
                         hit: dict[str, Any] | None) -> bool:
        """Settle a record of an erased party (``hit``: its erasure, see StoreTx.erasure_for_record): counted
        ``suppressed``, ledgered ``suppressed-erased`` once per version of the record and job (in this
        transaction, so the decision and its entry commit together), nothing ingested, nothing pushed."""
        if hit is None:
            return False
        d.party_id = hit["party_id"]
        d.quiet("suppressed")
        if tx.note_suppressed(hit["key_id"], ctx.name, d.raw_hash or record_hash(d.raw, ctx.hash_key)):
            ctx.report.actions[Action.SUPPRESSED_ERASED] += 1
            other = ctx.target if side is ctx.source else ctx.source
            tx.ledger(self.rt.signer, cipher=self.rt.cipher).append([LedgerEntryIn(
                action=Action.SUPPRESSED_ERASED, run_id=str(ctx.run_id), job=ctx.name, source_system=side.system,
                source_object=side.object, source_id=d.raw.external_id, target_system=other.system,
                target_object=other.object, party_id=hit["party_id"], actor=ctx.actor,
                reason=f"party erased on {hit['erased_at']:%Y-%m-%d} (PIPL Art. 47): not ingested, not pushed; "
                       "if the person is a customer again: crmbridge erase --lift")])
        return True

    def _erased_identity(self, tx: StoreTx, ctx: RunContext, party: Party, raw: RawRecord) -> dict[str, Any] | None:
        """The erasure in force whose blind-indexed identities this new record carries (the job's match keys
        and the identifier of each scheme), or ``None``; the record becomes one of the erasure's source
        records, so its later reads are suppressed by id (and re-read when the erasure is lifted)."""
        if not tx.has_erasures():
            return None
        indexer = self.rt.indexer()
        keys = self._identity_keys(ctx, party) + [
            (str(getattr(i.scheme, "value", i.scheme)), indexer.identifier(str(getattr(i.scheme, "value", i.scheme)),
                                                                           i.value))
            for i in party.identifiers if i.value]
        hit = tx.erasure_by_identity(dict.fromkeys(keys))
        if hit is None:
            return None
        key_id = tx.add_erasure_key(hit["erasure_id"], "source", system=ctx.source.system, obj=ctx.source.object,
                                    external_id=raw.external_id)
        return {**hit, "key_id": key_id}

    def _drop_erased(self, ctx: RunContext, changes: list[tuple[str, RawRecord | None, RawRecord | None]]
                     ) -> list[tuple[str, RawRecord | None, RawRecord | None]]:
        """Two-way: the changes of erased parties (from either side) are ledgered suppressed-erased and counted
        suppressed instead of being merged (the job used to skip them silently, for ever)."""
        kept = []
        with self._tx(ctx) as tx:
            if not tx.has_erasures():
                return changes
            for pid, raw_s, raw_t in changes:
                side, raw = (ctx.target, raw_t) if raw_t is not None else (ctx.source, raw_s)
                if raw is None:   # nothing read: nothing to merge or to suppress
                    continue
                hit = tx.erasure_for_record(side.system, side.object, raw.external_id)
                if hit is None:
                    er = tx.erasure_for_party(pid)
                    hit = None if er is None else {
                        "party_id": pid, "erased_at": er["erased_at"], "key_id": tx.add_erasure_key(
                            er["id"], "target" if side is ctx.target else "source", system=side.system,
                            obj=side.object, external_id=raw.external_id)}
                if hit is None:
                    kept.append((pid, raw_s, raw_t))
                    continue
                self._suppress_erased(tx, ctx, Decision(raw, party_id=pid), side, hit)
                ctx.report.count("suppressed", count_reads(raw_s, raw_t))
        return kept

    def _erasure_write_item(self, ctx: RunContext, p: dict[str, Any]) -> WriteItem:
        """The write that anonymises the erased party's CRM record ``p`` (a pending propagation) under a
        deactivate policy (object jobs write their object's anonymised form instead)."""
        tgt = ctx.target
        return WriteItem(key=p["party_id"], payload=anonymised_payload(tgt, p["party_id"], p["party_type"]),
                         external_id=p["external_id"], key_field=tgt.mapping.spec.key_field, duplicate_search=False)

    def propagate_erasures(self, ctx: RunContext) -> None:
        """Carry out the erasures pending at this job's target, first thing in the run, by the job's delete policy:
        ``propagate`` deletes the CRM record; ``deactivate`` (and ``ignore``: an erasure is never ignored)
        anonymises it (lifecycle CLOSED, every field the mapping writes emptied, a placeholder name where the
        CRM requires one). Each outcome is ledgered (``deleted``) and marked done in one transaction after the
        CRM's answer; a crash before that commit leaves it pending and the next run repeats it: deleting a record
        already gone and rewriting the same anonymised values are both harmless. A refusal stays pending (a
        ``failed`` ledger entry and a warning) and is tried again by the next run."""
        tgt, job = ctx.target, ctx.job
        with self.rt.store.transaction() as tx:
            pending = tx.pending_propagations(tgt.system, tgt.object) if tx.has_erasures() else []
        if not pending:
            return
        how = "delete" if job.delete_policy == "propagate" else "deactivate"
        if ctx.dry_run:
            ctx.report.warnings.append(f"{len(pending)} erasure(s) to propagate to {tgt.system}.{tgt.object} "
                                       f"({how}): not carried out in a dry run")
            return
        for chunk in chunked(pending, job.batch_size):
            outcomes: list[tuple[dict[str, Any], str, str | None]] = []
            # key id -> (payload sent or None, the vendor's answer, correlation id): the entries' lineage
            sent: dict[Any, tuple[Any, WriteResult, str]] = {}
            call = new_call_id()
            if how == "delete":
                results = tgt.adapter.delete(tgt.object, [p["external_id"] for p in chunk])
                for p, r in zip(chunk, results, strict=True):
                    sent[p["key_id"]] = (None, r, correlation_id(r, call))
                    if r.status is WriteStatus.DELETED:
                        outcomes.append((p, "deleted", None))
                    elif tgt.adapter.get(tgt.object, p["external_id"]) is None:
                        outcomes.append((p, "gone", None))   # already deleted (by us before a crash, or by hand)
                    else:
                        outcomes.append((p, "failed", f"{r.error.code if r.error else 'rejected'}: {r.error}"))
            else:
                items: list[tuple[dict[str, Any], WriteItem]] = []
                for p in chunk:
                    if tgt.adapter.get(tgt.object, p["external_id"]) is None:
                        outcomes.append((p, "gone", None))   # an upsert must not create it again
                        continue
                    try:
                        item = self._erasure_write_item(ctx, p)
                    except RecordError as exc:
                        outcomes.append((p, "failed", f"anonymise: {exc.code}: {exc}"))
                        continue
                    items.append((p, item))
                results = tgt.adapter.write(tgt.object, [i for _, i in items]) if items else []
                for (p, item), r in zip(items, results, strict=True):
                    sent[p["key_id"]] = (item.payload, r, correlation_id(r, call))
                    ok = r.status in (WriteStatus.UPDATED, WriteStatus.UNCHANGED, WriteStatus.CREATED)
                    outcomes.append((p, "deactivated", None) if ok else
                                    (p, "failed", f"{r.error.code if r.error else 'rejected'}: {r.error}"))
            with self.rt.store.transaction() as tx:
                entries = []
                for p, outcome, error in outcomes:
                    if outcome == "failed":
                        ctx.report.actions[Action.FAILED] += 1
                        ctx.report.refusals[f"erasure {how}: {(error or '').split(':', 1)[0]}"] += 1
                        ctx.report.warnings.append(f"the erasure of party {p['party_id']} did not reach "
                                                   f"{tgt.system}.{tgt.object}/{p['external_id']} ({error}); "
                                                   "it stays pending and the next run tries again")
                    else:
                        ctx.report.actions[Action.DELETED] += 1
                        tx.finish_propagation(p["key_id"], outcome)
                        if outcome != "deactivated":
                            tx.delete_xref(tgt.system, tgt.object, p["external_id"])
                    done = {"deleted": "deleted at the target", "gone": "already gone from the target",
                            "deactivated": "anonymised and closed at the target"}.get(outcome, f"not propagated: "
                                                                                             f"{error}")
                    payload, answer, cid = sent.get(p["key_id"], (None, None, None))
                    entries.append(LedgerEntryIn(
                        action=Action.FAILED if outcome == "failed" else Action.DELETED, run_id=str(ctx.run_id),
                        job=ctx.name, target_system=tgt.system, target_object=tgt.object,
                        target_id=p["external_id"], party_id=p["party_id"], actor=ctx.actor,
                        mapping_version=tgt.mapping.version_hash,
                        reason=f"erasure (PIPL Art. 47), delete policy {job.delete_policy}: {done}",
                        **write_lineage(mapping=tgt.mapping, payload=payload, result=answer,
                                        party_type=p.get("party_type"), correlation_id=cid,
                                        mappings=(ctx.source.mapping, tgt.mapping))))
                tx.ledger(self.rt.signer, cipher=self.rt.cipher).append(entries)
            self._breaker(ctx, tgt)

