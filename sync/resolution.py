"""Settling a conflict from the review queue (``crmbridge conflicts resolve ID --take source|target|value``).

The chosen value is written to whichever side does not hold it yet (through the job's mappings, with the record
version for optimistic concurrency), the last synced state is updated so the next run sees no change, and the
decision is a ledger entry naming its actor.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.canonical.model import parse_party
from crmbridge.core.errors import ConfigurationError, ConflictError, CrmBridgeError
from crmbridge.sync.bootstrap import Runtime
from crmbridge.sync.engine import correlation_id, echo_hash, masked_value, new_call_id, path_filter, snapshot_row
from crmbridge.sync.merge import flatten, unflatten
from crmbridge.sync.state.ledger import Action, LedgerEntryIn
from crmbridge.sync.state.ledger_trust import publish_configured
from crmbridge.sync.state.lineage import mapping_versions, write_lineage

__all__ = ["Resolution", "conflict_values", "resolve_conflict"]


@dataclass
class Resolution:
    conflict_id: int
    path: str
    wrote_to: list[str]


def conflict_values(rt: Runtime, conflict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The decrypted base / source / target values of a conflict row: ``{"source": {path: value}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    with rt.store.transaction() as tx:
        for side in ("base", "source", "target"):
            token = conflict.get(f"{side}_value")
            out[side] = {} if not token else tx.unseal(
                rt.cipher, "conflicts", f"{side}_value",
                row={"job": conflict["job"], "party_id": conflict["party_id"]}, token=token)
    return out


def resolve_conflict(rt: Runtime, conflict_id: int, *, take: Literal["source", "target", "value"],
                     value: str | None = None, actor: str) -> Resolution:
    """Apply a reviewer's decision on one conflict."""
    with rt.store.transaction() as tx:
        row = tx.get_conflict(conflict_id)
    if row is None:
        raise ConfigurationError(f"no conflict {conflict_id}")
    if row["status"] != "open":
        raise ConfigurationError(f"conflict {conflict_id} is already {row['status']}")
    if take == "value" and value is None:
        raise ConfigurationError("--take value needs --value")
    job = rt.config.jobs.get(row["job"])
    if job is None:
        raise ConfigurationError(f"conflict {conflict_id} belongs to job {row['job']!r}, which is not configured")
    values = conflict_values(rt, row)
    path = row["field_paths"][0]
    chosen = value if take == "value" else values[take].get(path)
    pid = row["party_id"]
    src, tgt = rt.adapter(job.source_system), rt.adapter(job.target_system)
    smap, tmap = rt.mapping(job.source_mapping), rt.mapping(job.target_mapping)
    with rt.store.transaction() as tx:
        snap = tx.get_snapshot(pid, job.target_system, job.target_object)
        if snap is None:
            raise ConfigurationError(f"party of conflict {conflict_id} has no synced state; run the job first")
        flat = flatten(tx.unseal(rt.cipher, "snapshots", "blob",
                              row=snapshot_row(pid, job.target_system, job.target_object), token=snap.blob))
        t_ext = tx.xrefs_for_party(pid, job.target_system, job.target_object)
        s_ext = tx.xrefs_for_party(pid, job.source_system, job.source_object)
        s_read = tx.get_read_hash(row["job"], job.source_system, job.source_object, s_ext[0][2]) if s_ext else None
    source_writable = path_filter(smap.owned_canonical_paths("out"))(path)
    if values["source"].get(path) != chosen and not source_writable:
        # the source is the system of record for this field and the job never writes it there: a different value
        # kept in the CRM alone would be overwritten by the next run (or, for a name, contradict its parts)
        raise ConfigurationError(
            f"conflict {conflict_id}: {path} is owned by {job.source_system} (its mapping "
            f"{Path(smap.path).name} reads it and never writes it), so only {job.source_system}'s value can be "
            f"kept: resolve with --take source, or change it in {job.source_system} and run the job",
            where=f"conflicts resolve {conflict_id}")
    flat[path] = chosen
    party = parse_party({**unflatten(flat), "party_id": str(uuid.UUID(pid))})
    wrote: list[str] = []
    # each write's lineage for the ledger: (written to the job's target?, its mapping, item, answer, correlation id)
    sent: list[tuple[bool, Any, WriteItem, Any, str]] = []
    s_id, t_id = (s_ext[0][2] if s_ext else None), (t_ext[0][2] if t_ext else None)
    source = {"system": job.source_system, "object": job.source_object, "id": s_id}
    target = {"system": job.target_system, "object": job.target_object, "id": t_id}
    ptype = str(party.party_type)
    side = _Sides(source, target, row["job"], pid, path, ptype, values, chosen, smap, tmap, actor)
    plan: list[tuple[bool, Any, Any, WriteItem]] = []
    if values["target"].get(path) != chosen and t_ext:
        plan.append((True, tmap, tgt, WriteItem(key=pid, payload=tmap.map_out(party), external_id=t_ext[0][2],
                                                key_field=tmap.spec.key_field)))
    if values["source"].get(path) != chosen and s_ext and source_writable:
        plan.append((False, smap, src, WriteItem(key=pid, payload=smap.map_out(party), external_id=s_ext[0][2],
                                                 expected_version=s_read.version if s_read else None)))
    for to_target, mapping, adapter, item in plan:
        system = job.target_system if to_target else job.source_system
        obj = job.target_object if to_target else job.source_object
        call = new_call_id()
        try:
            r = adapter.write(obj, [item])[0]
            _check(r.status, r.error, system)
        except CrmBridgeError as exc:
            # a vendor that refused (or could not be reached) after another side was already written leaves a
            # changed vendor record: whatever was written is ledgered with the refusal, never lost; the conflict
            # stays open for another try
            _ledger_failure(rt, side, sent, system, (
                f"conflict {conflict_id} resolution not completed: {system} refused ({type(exc).__name__}: "
                f"{str(exc)[:200]}); already written to {', '.join(wrote) or 'none'}; the conflict stays open"))
            raise
        wrote.append(system)
        sent.append((to_target, mapping, item, r, correlation_id(r, call)))
    key = rt.indexer().field_key("content-hash")
    t_paths = path_filter(tmap.owned_canonical_paths("in"))
    canonical = party.canonical_dict()
    try:
        _settle(rt, side, sent, wrote, conflict_id, take, canonical=canonical, t_paths=t_paths, key=key, party=party)
    except _TakenMeanwhile:
        # two reviewers at once: the other one's decision stands; what this one already wrote is still ledgered
        err = ConfigurationError(f"conflict {conflict_id} was resolved by someone else meanwhile")
        if sent:
            _ledger_failure(rt, side, sent, side.target["system"], (
                f"conflict {conflict_id} was resolved by someone else meanwhile; this resolution had already "
                f"written to {', '.join(wrote)}"))
        raise err from None
    publish_configured(rt.config, rt.store.engine)
    return Resolution(conflict_id, path, wrote)


class _TakenMeanwhile(Exception):
    """Another reviewer resolved the conflict between this one's read and its decision."""


def _settle(rt: Runtime, side: _Sides, sent: list[tuple[bool, Any, WriteItem, Any, str]], wrote: list[str],
            conflict_id: int, take: str, *, canonical: dict[str, Any], t_paths: Any, key: bytes, party: Any) -> None:
    """The decision's own transaction: the new synced state, the conflict closed, the ledger entries, signed."""
    pid = side.party_id
    target, tobj = side.target["system"], side.target["object"]
    with rt.store.transaction() as tx:
        blob = tx.seal(rt.cipher, "snapshots", "blob", row=snapshot_row(pid, target, tobj), value=canonical)
        tx.put_snapshot(pid, target, tobj, content_hash=party.content_hash(key), blob=blob,
                        written_hash=echo_hash(flatten(canonical), t_paths, key),
                        mapping_versions=mapping_versions(side.smap, side.tmap))
        if not tx.resolve_conflict(conflict_id, take, actor=side.actor):
            raise _TakenMeanwhile
        ledger = tx.ledger(rt.signer, cipher=rt.cipher)
        reason = f"conflict {conflict_id} resolved: took {take}; written to {', '.join(wrote) or 'none'}"
        entries = side.written_entries(sent, reason, Action.CONFLICT_RESOLVED)
        if not entries:
            entries.append(side.decision_entry(Action.CONFLICT_RESOLVED, reason))
        ledger.append(entries)
        ledger.checkpoint()   # the decision is signed now, not at the next run's end


@dataclass(frozen=True)
class _Sides:
    """What every ledger entry of one resolution shares: the two sides' records, the field, its values, the
    mappings and the actor."""

    source: dict[str, Any]
    target: dict[str, Any]
    job: str
    party_id: str
    path: str
    party_type: str
    values: dict[str, dict[str, Any]]
    chosen: Any
    smap: Any
    tmap: Any
    actor: str

    def _sides(self, to_target: bool) -> dict[str, Any]:
        frm, to = (self.source, self.target) if to_target else (self.target, self.source)
        return {f"{k}_{f}": v for k, side in (("source", frm), ("target", to)) for f, v in side.items()}

    def written_entries(self, sent: list[tuple[bool, Any, WriteItem, Any, str]], reason: str,
                        first: Action) -> list[LedgerEntryIn]:
        """One entry per vendor write: the first carries the decision, a second (--take value) is an entry of its
        own; each labelled in the direction it went, with what was sent and what the vendor answered."""
        return [LedgerEntryIn(
            action=first if n == 0 else Action.UPDATED, job=self.job, party_id=self.party_id,
            **self._sides(to_target), mapping_version=mapping.version_hash, actor=self.actor, reason=reason,
            **write_lineage(mapping=mapping, payload=item.payload, result=answer, party_type=self.party_type,
                            correlation_id=cid, mappings=(self.smap, self.tmap),
                            changed={self.path: (self.values["target" if to_target else "source"].get(self.path),
                                                 self.chosen)}))
            for n, (to_target, mapping, item, answer, cid) in enumerate(sent)]

    def decision_entry(self, action: Action, reason: str, *, to_target: bool = True) -> LedgerEntryIn:
        """The decision alone (nothing written, or a write that failed), with masked values."""
        return LedgerEntryIn(
            action=action, job=self.job, party_id=self.party_id, **self._sides(to_target),
            changed_fields=[self.path],
            before={self.path: masked_value(self.path, self.values["target"].get(self.path), self.party_type)},
            after={self.path: masked_value(self.path, self.chosen, self.party_type)},
            diff={self.path: [self.values["base"].get(self.path), self.chosen]}, actor=self.actor, reason=reason)


def _ledger_failure(rt: Runtime, side: _Sides, sent: list[tuple[bool, Any, WriteItem, Any, str]], system: str,
                    reason: str) -> None:
    """Ledger a resolution a vendor refused: the writes already made (so no vendor change goes unrecorded) and
    the refusal itself, signed at once."""
    with rt.store.transaction() as tx:
        ledger = tx.ledger(rt.signer, cipher=rt.cipher)
        entries = side.written_entries(sent, reason, Action.UPDATED)
        entries.append(side.decision_entry(Action.FAILED, reason, to_target=system == side.target["system"]))
        ledger.append(entries)
        ledger.checkpoint()


def _check(status: WriteStatus, error: CrmBridgeError | None, system: str) -> None:
    if status is WriteStatus.CONFLICT:
        raise ConflictError(f"{system} changed the record again since the conflict was raised; run the job and retry")
    if status is WriteStatus.FAILED:
        raise ConfigurationError(f"{system} refused the resolution: {error}")
