"""Campaign responses CRM → core banking: an opt-out withdraws the party's marketing consent at the core.

A job whose source mapping declares ``canonical: CampaignResponse`` (``mappings/zoho_campaign_members.yaml``,
``mappings/fxiaoke_campaign_members.yaml``) and whose target is the core's customer through a consent mapping
(``mappings/corebank_soap_consent.yaml``) runs here instead of the party path. Per batch of responses read (a full
scan where the CRM has no change signal, Zoho; incrementally by the cursor otherwise, Fxiaoke):

1. **Change detection.** A response's keyed hash covers what it says (campaign, response, channel, party): a
   response read again unchanged is skipped without a ledger entry (a re-run does nothing); a member of a campaign
   with no response yet (Sent, Bounced...) is out of scope.
2. **The party.** The member's own cross-reference (``party_source``: the CRM record crmbridge linked) decides,
   else the ``party_id`` the CRM carries; the two disagreeing, or no party, or a party the core does not hold (no
   cross-reference at the target), is a **retryable dead letter**: the dead-letter schedule reads the response again.
3. **Consent.** An ``OPTED_OUT`` response withdraws the consents :meth:`CampaignResponse.withdrawn_consents` names
   (PIPL Art. 15: as easily as given). Each purpose is mapped out through the target mapping alone (the payload of
   the withdrawn consent minus that of a granted one: exactly the core field of that purpose) and written to the
   core's customer, under a write intent committed before the call (crash-safe; the write sets a flag, so repeating
   it after a crash changes nothing). The ledger entry of each withdrawal names the consent's purpose, its legal
   basis (``PIPL13_1_CONSENT``: marketing rests on consent only), the campaign, the channel and the actor, with the
   masked payload sent and the core's answer. A purpose the core keeps no field for is withdrawn in the ledger
   only, and the run warns.
4. **Preferences.** Interested, declined and converted are ledgered as preference facts (``skipped-unchanged``: no
   write) and never touch a consent.

Dry runs plan the same (the core fields that would change) and write nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crmbridge.adapters.base import RawRecord, WriteItem, WriteStatus
from crmbridge.canonical.c3 import refuse_c3
from crmbridge.canonical.objects import CampaignResponse, parse_object
from crmbridge.core.errors import CrmBridgeError, RecordError
from crmbridge.sync.engine.context import BatchKind, CursorState, Decision, RunContext
from crmbridge.sync.engine.hashing import keyed_hash, payload_hash
from crmbridge.sync.engine.oneway import OneWay
from crmbridge.sync.engine.records import correlation_id, new_call_id
from crmbridge.sync.engine.stream import batched, reading
from crmbridge.sync.report import PlannedChange
from crmbridge.sync.state.ledger import Action, LedgerEntryIn
from crmbridge.sync.state.lineage import write_lineage
from crmbridge.sync.state.store import StoreTx

__all__ = ["RESPONSE_OBJECT", "Responses", "is_response_job"]

log = logging.getLogger("crmbridge.sync")

#: the canonical object of a campaign-response job's source mapping
RESPONSE_OBJECT = "CampaignResponse"
#: the legal basis of every marketing consent (canonical Consent: marketing rests on consent only, PIPL 13(1))
MARKETING_LEGAL_BASIS = "PIPL13_1_CONSENT"


def is_response_job(ctx: RunContext) -> bool:
    """Whether the job reads campaign responses (its source mapping declares ``canonical: CampaignResponse``)."""
    return getattr(ctx.source.mapping, "canonical", "Party") == RESPONSE_OBJECT


def _only_changed(a: Any, b: Any) -> Any:
    """What payload ``a`` holds that ``b`` does not: changed keys, list elements absent from ``b``'s list."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = {}
        for k, v in a.items():
            if k in b and b[k] == v:
                continue
            sub = _only_changed(v, b.get(k)) if k in b else v
            if sub not in (None, {}, []):
                out[k] = sub
        return out
    if isinstance(a, list) and isinstance(b, list):
        return [x for x in a if x not in b]
    return a


@dataclass
class _Write:
    """One consent withdrawn: the core write that carries it (``item`` None: the core keeps no field for it)."""

    purpose: str
    item: WriteItem | None
    d: Decision


@dataclass
class _Response:
    """What the job decided for one response read."""

    d: Decision
    response: CampaignResponse | None = None
    core_id: str | None = None
    writes: list[_Write] = field(default_factory=list)


class Responses(OneWay):
    """The campaign-response job (a part of :class:`~crmbridge.sync.engine.runner.JobRunner`)."""

    def _run_responses(self, ctx: RunContext) -> bool:
        src = ctx.source
        with self.rt.store.transaction() as tx:
            cur = self.cursor(tx, ctx, src)
            due = self._due_dead_letters(tx, ctx)
            self.load_intents(tx, ctx)   # writes a run that did not finish journaled (crash recovery)
        for raws in self._refetch_dead_letters(ctx, due):
            self._response_batch(ctx, raws, None, retry=True)
        for chunk in batched(reading(src, src.adapter.extract(src.object, since=cur.since, fields=None), ctx.report),
                             ctx.job.batch_size):
            self._response_batch(ctx, chunk, cur)
        self.finish_cursor(ctx, cur)
        return cur.since is None

    def process_batch(self, ctx: RunContext, raws: list[RawRecord], kind: BatchKind = BatchKind.EXTRACT, *,
                      cursor: CursorState | None = None) -> None:
        """One batch, as a distributed worker hands it over: responses go their own way, parties the party path."""
        if not is_response_job(ctx):
            super().process_batch(ctx, raws, kind, cursor=cursor)
            return
        if kind is BatchKind.DELETE:   # a deleted membership withdraws nothing: the response it carried stands
            ctx.report.read += len(raws)
            ctx.report.count("out_of_scope", len(raws))
            return
        self._response_batch(ctx, raws, cursor if kind is BatchKind.EXTRACT else None, retry=kind is BatchKind.RETRY)

    # -- deciding --------------------------------------------------------------------------------------
    def _response_hash(self, ctx: RunContext, raw: RawRecord, canon: dict[str, Any]) -> str:
        """The keyed hash of what a response says (not of the record: Zoho's member carries the contact's own
        modification time, which moves with every edit of the contact)."""
        src = canon.get("party_source") or {}
        return keyed_hash({"id": raw.external_id, "campaign": canon.get("campaign_id"),
                           "response": canon.get("response"), "channel": canon.get("channel"),
                           "party": canon.get("party_id"), "member": src.get("system_id")}, ctx.hash_key)

    def _decide_response(self, tx: StoreTx, ctx: RunContext, raw: RawRecord, *, retry: bool) -> _Response:
        src = ctx.source
        d = Decision(raw)
        r = _Response(d)
        where = f"{src.system}:{src.object}/{raw.external_id}"
        if raw.error is not None:
            d.action, d.error, d.stage = Action.FAILED, raw.error, "read"
            return r
        try:
            refuse_c3(raw.data, where=where)
            canon = src.mapping.map_in(raw.data)
        except RecordError as exc:
            d.raw_hash = keyed_hash(dict(raw.data), ctx.hash_key)
            d.action, d.error, d.stage = Action.FAILED, exc, "map_in"
            return r
        d.raw_hash = self._response_hash(ctx, raw, canon)
        if not retry and self._failed_as_is(tx, ctx, raw, d.raw_hash):
            d.quiet("deferred")   # failed before exactly as it is now: the dead-letter schedule retries it
            return r
        seen = tx.get_read_hash(ctx.name, src.system, src.object, raw.external_id)
        if seen is not None and seen.record_hash == d.raw_hash:
            d.quiet("unchanged")  # handled before exactly as it is: a re-run does nothing
            return r
        if not canon.get("response"):
            d.quiet("out_of_scope")   # a member without a response yet (Sent, Bounced...)
            return r
        if not canon.get("responded_at"):   # the CRM keeps no response time: the time crmbridge first read it
            canon["responded_at"] = (raw.modified_at or datetime.now(UTC)).isoformat()
        try:
            resp = parse_object(RESPONSE_OBJECT, canon, where=where)
        except CrmBridgeError as exc:
            d.action, d.stage = Action.FAILED, "map_in"
            d.error = exc if isinstance(exc, RecordError) else RecordError(str(exc), code="invalid")
            return r
        r.response = resp
        try:
            d.party_id, r.core_id = self._response_party(tx, ctx, resp)
        except RecordError as exc:
            d.action, d.error, d.stage = Action.FAILED, exc, "identify"
            return r
        d.target_id = r.core_id
        purposes = [str(p) for p in resp.withdrawn_consents()]
        if not purposes:
            d.action = Action.SKIPPED_UNCHANGED
            d.reason = (f"preference: {resp.response.value} in campaign {resp.campaign_id} via "
                        f"{resp.channel.value} at {resp.responded_at.isoformat()}; consents untouched")
            return r
        for purpose in purposes:
            wd = Decision(raw, party_id=d.party_id, target_id=r.core_id, raw_hash=d.raw_hash)
            try:
                payload = self._consent_payload(ctx, d.party_id or "", purpose, resp)
            except RecordError as exc:
                wd.action, wd.error, wd.stage = Action.FAILED, exc, "map_out"
                d.action, d.error, d.stage = Action.FAILED, exc, "map_out"
                return r
            item = None
            if payload:
                item = WriteItem(key=f"{raw.external_id}:{purpose}", payload=payload, external_id=r.core_id)
                wd.item, wd.payload_hash = item, payload_hash(payload, ctx.hash_key)
            wd.reason = self._withdrawal_reason(ctx, resp, purpose, written=item is not None)
            r.writes.append(_Write(purpose, item, wd))
        d.action = Action.UPDATED
        return r

    def _response_party(self, tx: StoreTx, ctx: RunContext, resp: CampaignResponse) -> tuple[str, str]:
        """The response's party and its id at the core; a party crmbridge cannot name, or one the core does not
        hold, is a record error (a retryable dead letter: the party may be synced later)."""
        src, tgt = ctx.source, ctx.target
        linked: str | None = None
        ref = resp.party_source
        if ref is not None:
            linked = tx.get_xref(src.system, ref.object or "Contacts", ref.system_id)
        carried = str(resp.party_id) if resp.party_id is not None else None
        if linked is not None and carried is not None and linked != carried:
            raise RecordError(f"the member's record is linked to party {linked} but carries party {carried}: "
                              "fix the CRM record", code="party_mismatch")
        pid = linked or carried
        if pid is None:
            raise RecordError(f"unknown party: no cross-reference for {src.system} "
                              f"{ref.object if ref else 'Contacts'} {ref.system_id if ref else '?'} and no party id "
                              "on the record; retried when the party is synced", code="unknown_party")
        at_core = tx.xrefs_for_party(pid, tgt.system, tgt.object)
        if not at_core:
            raise RecordError(f"unknown party: party {pid} has no {tgt.system} {tgt.object} record; retried when "
                              "the party is synced", code="unknown_party")
        return pid, at_core[0][2]

    def _consent_payload(self, ctx: RunContext, party_id: str, purpose: str,
                         resp: CampaignResponse) -> dict[str, Any]:
        """The core fields of ``purpose``'s consent, withdrawn: what the target mapping writes for a withdrawn
        consent and not for a granted one ({} where it writes no field for that purpose)."""
        at = resp.responded_at.isoformat()
        base = {"purpose": purpose, "legal_basis": MARKETING_LEGAL_BASIS, "captured_at": at}
        withdrawn = {"party_id": party_id, "consents": [{**base, "status": "WITHDRAWN", "withdrawn_at": at}]}
        granted = {"party_id": party_id, "consents": [{**base, "status": "GRANTED"}]}
        m = ctx.target.mapping
        out = _only_changed(m.map_out(withdrawn), m.map_out(granted))
        return out if isinstance(out, dict) else {}

    @staticmethod
    def _withdrawal_reason(ctx: RunContext, resp: CampaignResponse, purpose: str, *, written: bool) -> str:
        where = (f"written to {ctx.target.system} {ctx.target.object}" if written else
                 f"{ctx.target.system} keeps no field for it (mapping {ctx.job.target_mapping}): withdrawn in this "
                 "ledger only")
        return (f"consent withdrawn: {purpose}, legal basis {MARKETING_LEGAL_BASIS} (withdrawal, PIPL Art. 15), by "
                f"an opt-out from campaign {resp.campaign_id} via {resp.channel.value} at "
                f"{resp.responded_at.isoformat()}; {where}")

    # -- a batch ---------------------------------------------------------------------------------------
    def _response_batch(self, ctx: RunContext, raws: list[RawRecord], cursor: CursorState | None, *,
                        retry: bool = False) -> None:
        ctx.report.read += len(raws)
        tgt = ctx.target
        with self._tx(ctx) as tx:
            decided = [self._decide_response(tx, ctx, raw, retry=retry) for raw in raws]
            writes = [w for r in decided for w in r.writes if w.item is not None]
            for w in writes:   # journaled before the call: a crash between the call and the record is visible
                earlier = ctx.pending_intents.pop(w.item.key if w.item else "", None)
                if earlier is not None:   # a dead run's write of the same withdrawal: setting the flag again is
                    tx.complete_write_intent(earlier["id"], failed=True)   # harmless, and this one supersedes it
                w.d.intent_id = tx.add_write_intent(
                    ctx.name, target_system=tgt.system, target_object=tgt.object, key=w.item.key if w.item else "",
                    operation="update", payload_hash=w.d.payload_hash or "", run_id=ctx.run_id or None)
        if ctx.dry_run:
            self._plan_responses(ctx, decided)
            return
        if writes:
            call = new_call_id()
            results = tgt.adapter.write(tgt.object, [w.item for w in writes if w.item is not None])
            self._breaker(ctx, tgt)
            for w, res in zip(writes, results, strict=True):
                w.d.result, w.d.correlation_id = res, correlation_id(res, call)
                if res.status in (WriteStatus.UPDATED, WriteStatus.UNCHANGED, WriteStatus.CREATED):
                    w.d.action = Action.UPDATED
                else:
                    w.d.action, w.d.stage = Action.FAILED, "target"
                    w.d.error = res.error or RecordError("the core refused the consent update", code="rejected")
        for r in decided:
            failed = next((w.d for w in r.writes if w.d.action is Action.FAILED), None)
            if failed is not None:   # one purpose refused: the response is retried as a whole (writes repeat)
                r.d.action, r.d.error, r.d.stage = Action.FAILED, failed.error, failed.stage
        with self.rt.store.transaction() as tx:
            entries: list[LedgerEntryIn] = []
            for r in decided:
                entries.extend(self._record_response(tx, ctx, r))
            tx.ledger(self.rt.signer, cipher=self.rt.cipher).append(entries)
            if cursor is not None:
                self._advance(tx, ctx, cursor, [r.d for r in decided])
            ctx.batches += 1
            self._note_progress(tx, ctx)
        self.heartbeat(ctx)
        if self.progress is not None:
            self.progress(len(decided))

    def _record_response(self, tx: StoreTx, ctx: RunContext, r: _Response) -> list[LedgerEntryIn]:
        src, d = ctx.source, r.d
        if d.silent:
            ctx.report.count(d.outcome or "unchanged")
            return []
        action = d.action or Action.FAILED
        ctx.report.actions[action] += 1
        if action is Action.FAILED:
            ctx.report.count("dead_lettered")
            self._dead_letter(tx, ctx, d)
            for w in r.writes:
                if w.d.intent_id is not None:
                    tx.complete_write_intent(w.d.intent_id, failed=True)
            err = d.error
            return [self._response_entry(ctx, d, reason=f"{d.stage}: {err.code if err else 'error'}: {err}")]
        wrote = action is Action.UPDATED and any(w.item is not None for w in r.writes)
        ctx.report.count("updated" if wrote else "unchanged")   # withdrawn in the ledger only: nothing written
        self._resolve_letters(tx, ctx, d.raw)
        tx.put_read_hash(ctx.name, src.system, src.object, d.raw.external_id, record_hash=d.raw_hash or "",
                         version=d.raw.version)
        if action is not Action.UPDATED:
            return [self._response_entry(ctx, d, reason=d.reason)]
        entries = []
        for w in r.writes:
            if w.d.intent_id is not None:
                tx.complete_write_intent(w.d.intent_id, external_id=r.core_id)
            note = f"consent {w.purpose} withdrawn by an opt-out, but {ctx.target.system} keeps no field for it"
            if w.item is None and note not in ctx.report.warnings:
                ctx.report.warnings.append(note)
            w.d.action = Action.UPDATED if w.item is not None else Action.SKIPPED_UNCHANGED
            entries.append(self._response_entry(ctx, w.d, reason=w.d.reason, purpose=w.purpose))
        return entries

    def _response_entry(self, ctx: RunContext, d: Decision, *, reason: str | None,
                        purpose: str | None = None) -> LedgerEntryIn:
        src, tgt = ctx.source, ctx.target
        # its state before is not known: the core does not say
        changed = ({f"consents[purpose={purpose}].status": (None, "WITHDRAWN")}
                   if purpose is not None and d.item is not None else None)
        lineage = write_lineage(mapping=tgt.mapping, payload=d.item.payload if d.item is not None else None,
                                result=d.result, changed=changed, correlation_id=d.correlation_id,
                                mappings=(src.mapping, tgt.mapping), diff=False)
        lineage.pop("diff", None)
        return LedgerEntryIn(
            action=d.action or Action.FAILED, run_id=str(ctx.run_id), job=ctx.name, source_system=src.system,
            source_object=src.object, source_id=d.raw.external_id, target_system=tgt.system,
            target_object=tgt.object, target_id=d.target_id, party_id=d.party_id,
            mapping_version=tgt.mapping.version_hash, actor=ctx.actor, reason=reason, **lineage)

    def _plan_responses(self, ctx: RunContext, decided: list[_Response]) -> None:
        rep = ctx.report
        writes = [w for r in decided for w in r.writes if w.item is not None]
        rep.planned_write_calls += -(-len(writes) // ctx.target.adapter.max_batch_size) if writes else 0
        for r in decided:
            d = r.d
            if d.silent:
                rep.count(d.outcome or "unchanged")
                continue
            action = d.action or Action.FAILED
            rep.actions[action] += 1
            rep.count({Action.UPDATED: "updated", Action.FAILED: "dead_lettered"}.get(action, "unchanged"))
            if action is Action.FAILED:
                err = d.error
                rep.refusals[f"{d.stage or 'unknown'}: {(err.code if err else None) or 'failed'}"] += 1
                rep.plan.append(PlannedChange(action=action, source_id=d.raw.external_id, party_id=d.party_id,
                                              reason=f"{d.stage}: {err}" if err else d.stage))
                continue
            if not r.writes:
                rep.plan.append(PlannedChange(action=action, source_id=d.raw.external_id, party_id=d.party_id,
                                              reason=d.reason))
            for w in r.writes:
                fields = {f"consents[purpose={w.purpose}].status": ("", "WITHDRAWN")}
                target = ({p: ("", str(v)) for p, v in _flat(w.item.payload).items()} if w.item is not None else {})
                rep.plan.append(PlannedChange(action=Action.UPDATED, source_id=d.raw.external_id,
                                              party_id=d.party_id, fields=fields, reason=w.d.reason,
                                              target_fields=target))


def _flat(payload: Any, prefix: str = "") -> dict[str, Any]:
    """A payload's leaves by path (``UDFDETAILS[0].FLDVAL``), for a plan (consent flags: C1, shown as they are)."""
    if isinstance(payload, dict):
        return {k: v for key, val in payload.items() for k, v in _flat(val, f"{prefix}.{key}" if prefix
                                                                       else str(key)).items()}
    if isinstance(payload, list):
        return {k: v for i, val in enumerate(payload) for k, v in _flat(val, f"{prefix}[{i}]").items()}
    return {prefix: payload}

