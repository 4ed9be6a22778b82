"""Settling a conflict from the review queue (``crmbridge conflicts resolve ID --take source|target|value``).

The chosen value is written to whichever side does not hold it yet (through the job's mappings, with the record
version for optimistic concurrency), the last synced state is updated so the next run sees no change, and the
decision is a ledger entry naming its actor.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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
    flat[path] = chosen
    party = parse_party({**unflatten(flat), "party_id": str(uuid.UUID(pid))})
    wrote: list[str] = []
    # each write's lineage for the ledger: (written to the job's target?, its mapping, item, answer, correlation id)
    sent: list[tuple[bool, Any, WriteItem, Any, str]] = []
    if values["target"].get(path) != chosen and t_ext:
        item = WriteItem(key=pid, payload=tmap.map_out(party), external_id=t_ext[0][2], key_field=tmap.spec.key_field)
        call = new_call_id()
        r = tgt.write(job.target_object, [item])[0]
        _check(r.status, r.error, job.target_system)
        wrote.append(job.target_system)
        sent.append((True, tmap, item, r, correlation_id(r, call)))
    if values["source"].get(path) != chosen and s_ext and path_filter(smap.owned_canonical_paths("out"))(path):
        item = WriteItem(key=pid, payload=smap.map_out(party), external_id=s_ext[0][2],
                         expected_version=s_read.version if s_read else None)
        call = new_call_id()
        r = src.write(job.source_object, [item])[0]
        _check(r.status, r.error, job.source_system)
        wrote.append(job.source_system)
        sent.append((False, smap, item, r, correlation_id(r, call)))
    key = rt.indexer().field_key("content-hash")
    t_paths = path_filter(tmap.owned_canonical_paths("in"))
    canonical = party.canonical_dict()
    with rt.store.transaction() as tx:
        blob = tx.seal(rt.cipher, "snapshots", "blob",
                    row=snapshot_row(pid, job.target_system, job.target_object), value=canonical)
        tx.put_snapshot(pid, job.target_system, job.target_object, content_hash=party.content_hash(key), blob=blob,
                        written_hash=echo_hash(flatten(canonical), t_paths, key),
                        mapping_versions=mapping_versions(smap, tmap))
        if not tx.resolve_conflict(conflict_id, take, actor=actor):
            raise ConfigurationError(f"conflict {conflict_id} was resolved by someone else meanwhile")
        ptype = str(party.party_type)
        ledger = tx.ledger(rt.signer, cipher=rt.cipher)
        reason = f"conflict {conflict_id} resolved: took {take}; written to {', '.join(wrote) or 'none'}"
        s_id, t_id = (s_ext[0][2] if s_ext else None), (t_ext[0][2] if t_ext else None)
        source = {"system": job.source_system, "object": job.source_object, "id": s_id}
        target = {"system": job.target_system, "object": job.target_object, "id": t_id}
        entries = []
        # the decision carries its first write's lineage; a second write (--take value) is an entry of its own,
        # each labelled in the direction it went
        for n, (to_target, mapping, item, answer, cid) in enumerate(sent):
            frm, to = (source, target) if to_target else (target, source)
            entries.append(LedgerEntryIn(
                action=Action.CONFLICT_RESOLVED if n == 0 else Action.UPDATED, job=row["job"], party_id=pid,
                **{f"{k}_{f}": v for k, side in (("source", frm), ("target", to)) for f, v in side.items()},
                mapping_version=mapping.version_hash, actor=actor, reason=reason, **write_lineage(
                    mapping=mapping, payload=item.payload, result=answer, party_type=ptype, correlation_id=cid,
                    changed={path: (values["target" if to_target else "source"].get(path), chosen)},
                    mappings=(smap, tmap))))
        if not entries:
            entries.append(LedgerEntryIn(
                action=Action.CONFLICT_RESOLVED, job=row["job"], party_id=pid,
                **{f"{k}_{f}": v for k, side in (("source", source), ("target", target)) for f, v in side.items()},
                changed_fields=[path], before={path: masked_value(path, values["target"].get(path), ptype)},
                after={path: masked_value(path, chosen, ptype)}, diff={path: [values["base"].get(path), chosen]},
                actor=actor, reason=reason))
        ledger.append(entries)
        ledger.checkpoint()   # the decision is signed now, not at the next run's end
    publish_configured(rt.config, rt.store.engine)
    return Resolution(conflict_id, path, wrote)


def _check(status: WriteStatus, error: CrmBridgeError | None, system: str) -> None:
    if status is WriteStatus.CONFLICT:
        raise ConflictError(f"{system} changed the record again since the conflict was raised; run the job and retry")
    if status is WriteStatus.FAILED:
        raise ConfigurationError(f"{system} refused the resolution: {error}")
