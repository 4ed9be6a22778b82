"""Reconciliation: prove completeness by comparing both sides of a job, record by record.

Every source record is mapped and projected as the job would write it; every target record is read and keyed by
crmbridge's external key (the party id in the target's key field) or by the cross-reference. Each party is then
*matched* (the target holds what the source projects), *different* (it holds something else), *missing* (nothing
at the target) or *extra* (a target record crmbridge wrote, or holds a cross-reference to, that no source record
accounts for). Records the job deliberately does not push (no consent, dead-lettered) are counted apart, so
"missing" means work lost.

Target records crmbridge never wrote (no cross-reference and no party id in the key field: contacts the CRM's
users created themselves) are *unmanaged*: listed, but they do not make the job incomplete unless asked
(``count_unmanaged``), since a CRM is expected to hold records of its own.

Object jobs (holdings, cases: a canonical object other than the party on both sides) are compared the same way,
keyed by the object's own id through its cross-reference (or the target's key field): every source object is mapped
in, given its parent's target id as the job does, and projected out (see :func:`_reconcile_objects`).

Memory grows with the number of parties (an id and a hash per mapped field each: a different record names the
target fields that differ), not with the records' size.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crmbridge.canonical.mapping import parse_path, path_get
from crmbridge.core.errors import ConfigurationError, RecordError
from crmbridge.sync.bootstrap import Runtime
from crmbridge.sync.engine import keyed_hash

#: ``not_pushed`` reason of an erased party's source records (suppressed on purpose, docs/erasure.md)
ERASED = "erased (PIPL Art. 47)"

__all__ = ["ReconcileReport", "reconcile"]


@dataclass
class ReconcileReport:
    job: str
    source_records: int = 0
    target_records: int = 0
    matched: int = 0
    different: list[str] = field(default_factory=list)     # party ids
    #: party id -> the target fields whose values differ from what the source projects (names, never values)
    different_fields: dict[str, list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)       # source external ids
    extra: list[str] = field(default_factory=list)         # target external ids (crmbridge's records)
    unmanaged: list[str] = field(default_factory=list)     # target external ids crmbridge never wrote
    not_pushed: dict[str, int] = field(default_factory=dict)  # reason -> count
    count_unmanaged: bool = False                          # unmanaged records make it incomplete

    @property
    def complete(self) -> bool:
        return not (self.different or self.missing or self.extra or (self.count_unmanaged and self.unmanaged))

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.job, "source_records": self.source_records, "target_records": self.target_records,
                "matched": self.matched, "different": self.different,
                "different_fields": {p: self.different_fields.get(p, []) for p in self.different},
                "missing": self.missing,
                "extra": self.extra, "unmanaged": self.unmanaged, "count_unmanaged": self.count_unmanaged,
                "not_pushed": self.not_pushed, "complete": self.complete}


def _norm(v: Any) -> Any:
    if isinstance(v, dict) and set(v) >= {"id"}:
        return str(v["id"])          # lookups come back as {"id", "name"}
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v if v is None or isinstance(v, (bool, int)) else str(v)


def reconcile(rt: Runtime, job_name: str, *, progress: Callable[[int], None] | None = None,
              count_unmanaged: bool = False) -> ReconcileReport:
    """Compare the source and target of ``job_name`` (reads both sides in full; writes nothing).

    Args:
        count_unmanaged: target records crmbridge never wrote make the job incomplete too.
    """
    job = rt.config.jobs[job_name]
    src, tgt = rt.adapter(job.source_system), rt.adapter(job.target_system)
    smap, tmap = rt.mapping(job.source_mapping), rt.mapping(job.target_mapping)
    if smap.canonical != "Party":
        if tmap.canonical != smap.canonical:
            raise ConfigurationError(f"job {job_name} maps {smap.canonical} records onto {tmap.canonical}: reconcile "
                                     "compares parties, or objects of one kind on both sides")
        return _reconcile_objects(rt, job_name, progress=progress, count_unmanaged=count_unmanaged)
    key = rt.indexer().field_key("content-hash")
    report = ReconcileReport(job_name, count_unmanaged=count_unmanaged)
    # party id -> (hash of projected payload, keyed hash of each field's value)
    expected: dict[str, tuple[str, dict[str, str]]] = {}
    with rt.store.transaction() as tx:
        for page in src.extract(job.source_object, fields=smap.vendor_fields("in") or None):
            for raw in page.records:
                report.source_records += 1
                if raw.deleted or smap.is_deleted(raw.data):
                    continue
                pid = tx.get_xref(job.source_system, job.source_object, raw.external_id)
                if tx.erasure_for_record(job.source_system, job.source_object, raw.external_id) is not None:
                    report.not_pushed[ERASED] = report.not_pushed.get(ERASED, 0) + 1   # suppressed on purpose
                    continue
                try:
                    party = smap.to_party(raw.data, party_id=uuid.UUID(pid) if pid else uuid.uuid4())
                except RecordError:
                    report.not_pushed["invalid at the source (dead letters)"] = (
                        report.not_pushed.get("invalid at the source (dead letters)", 0) + 1)
                    continue
                if tmap.fixed_party_type and str(party.party_type) != tmap.fixed_party_type:
                    continue  # not this job's kind of party
                if job.consent_purpose and not party.has_consent(job.consent_purpose):
                    report.not_pushed["no consent"] = report.not_pushed.get("no consent", 0) + 1
                    continue
                if pid is None:
                    report.missing.append(raw.external_id)
                    continue
                payload = tmap.map_out(party)
                fields_ = sorted(k for k in payload if k != tmap.spec.key_field)
                expected[pid] = (keyed_hash({k: _norm(payload[k]) for k in fields_}, key),
                                 {k: keyed_hash(_norm(payload[k]), key) for k in fields_})
            if progress:
                progress(len(page.records))
        key_path = parse_path(tmap.spec.key_field) if tmap.spec.key_field else None
        in_review = {c["party_id"] for c in tx.list_conflicts(job_name, limit=100_000)}
        seen: set[str] = set()
        for page in tgt.extract(job.target_object, fields=None):
            for raw in page.records:
                if raw.deleted:
                    continue
                report.target_records += 1
                if tx.erasure_for_record(job.target_system, job.target_object, raw.external_id) is not None:
                    continue   # an erased party's CRM record, deleted or anonymised by the erasure (counted above)
                pid = tx.get_xref(job.target_system, job.target_object, raw.external_id)
                if pid is None and key_path is not None:
                    v = path_get(raw.data, key_path)
                    pid = str(v) if v else None
                if pid is None:   # no cross-reference, no party id: a record the CRM's users made
                    report.unmanaged.append(raw.external_id)
                    continue
                if pid not in expected:
                    report.extra.append(raw.external_id)
                    continue
                seen.add(pid)
                want, per_field = expected[pid]
                got = keyed_hash({k: _norm(raw.data.get(k)) for k in per_field}, key)
                if got == want:
                    report.matched += 1
                elif pid in in_review:   # held back on purpose until a reviewer settles its conflict
                    report.not_pushed["conflict waiting for review"] = (
                        report.not_pushed.get("conflict waiting for review", 0) + 1)
                else:
                    report.different.append(pid)
                    report.different_fields[pid] = sorted(
                        k for k, h in per_field.items() if keyed_hash(_norm(raw.data.get(k)), key) != h)
            if progress:
                progress(len(page.records))
    for pid in expected.keys() - seen:
        with rt.store.transaction() as tx:
            refs = tx.xrefs_for_party(pid, job.source_system, job.source_object)
        report.missing.append(refs[0][2] if refs else pid)
    return report


def _count(report: ReconcileReport, reason: str) -> None:
    report.not_pushed[reason] = report.not_pushed.get(reason, 0) + 1


def _norm_object(v: Any) -> Any:
    """:func:`_norm`, and numbers compared as numbers (a balance sent as ``"1000.00"`` reads back as ``1000.0``)."""
    from decimal import Decimal, InvalidOperation

    v = _norm(v)
    if isinstance(v, str) and v and (v[0].isdigit() or v[0] == "-"):
        try:
            d = Decimal(v)
        except InvalidOperation:
            return v
        if d.is_finite():
            return format(d.normalize(), "f") if d != d.to_integral_value() else str(int(d))
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return v


def _reconcile_objects(rt: Runtime, job_name: str, *, progress: Callable[[int], None] | None,
                       count_unmanaged: bool) -> ReconcileReport:
    """Reconcile an object job: objects keyed by their canonical id (``holding_id``, ``interaction_id``).

    A source object is projected as the job writes it: mapped in, its owner found through the parent's
    cross-reference and its lookup filled with the parent's target id. Not pushed on purpose (counted apart): an
    object whose parent is not in the target (a ``parent_not_synced`` letter), one invalid at the source, one of an
    erased party, one closed under ``delete_policy: ignore`` (its target record is left as it was, so it is neither
    compared nor extra), and, for an update-only target (``key_field`` = its record id, e.g. a case's status), an
    object the target never held. A closed object under ``propagate`` is expected to be gone from the target;
    under ``deactivate`` its deactivated projection is compared. Field values are compared as keyed hashes: the
    report names fields, never values.
    """
    import json

    from crmbridge.canonical.model import SourceRef
    from crmbridge.sync.engine.objects import map_source_object, personal_record_id, record_pseudonym, update_only

    job = rt.config.jobs[job_name]
    src, tgt = rt.adapter(job.source_system), rt.adapter(job.target_system)
    smap, tmap = rt.mapping(job.source_mapping), rt.mapping(job.target_mapping)
    parent = job.parent
    if parent is None:
        raise ConfigurationError(f"job {job_name}: an object job needs 'parent' to be reconciled", where="jobs")
    key = rt.indexer().field_key("content-hash")
    report = ReconcileReport(job_name, count_unmanaged=count_unmanaged)
    expected: dict[str, tuple[str, dict[str, str]]] = {}
    left_alone: set[str] = set()   # objects whose target record is not compared (closed under ignore)
    gone: set[str] = set()         # closed under propagate: the target must not hold them
    only_updates = update_only(tmap)
    personal = personal_record_id(smap)
    with rt.store.transaction() as tx:
        for page in src.extract(job.source_object, fields=smap.vendor_fields("in") or None):
            for raw in page.records:
                report.source_records += 1
                ext = (record_pseudonym(rt, job.source_system, job.source_object, raw.external_id) if personal
                       else raw.external_id)
                oid = tx.get_xref(job.source_system, job.source_object, ext)
                if raw.deleted and oid is None:
                    continue
                if only_updates and (oid is None or not tx.xrefs_for_party(oid, job.target_system,
                                                                            job.target_object)):
                    continue   # not a record the target holds: the job never creates one
                try:
                    obj = map_source_object(smap, raw, oid, where=f"{job.source_system}:{job.source_object}")
                except RecordError:
                    if raw.deleted:
                        continue
                    _count(report, "invalid at the source (dead letters)")
                    continue
                owner = str(obj.party_id) if obj.party_id is not None else None
                if owner is None and obj.party_source is not None:
                    owner = tx.get_xref(parent.source_system, parent.source_object, obj.party_source.system_id)
                if owner is not None and tx.erasure_for_party(owner) is not None:
                    _count(report, ERASED)
                    if oid:
                        left_alone.add(oid)
                    continue
                closed = raw.deleted or (str(getattr(obj, "status", "")) == "CLOSED" and obj.id_field == "holding_id")
                if closed and oid is None:
                    continue   # closed before it was ever synced: out of scope, as in a run
                if closed and job.delete_policy == "ignore":
                    _count(report, "closed at the source (delete policy ignore)")
                    left_alone.add(oid or "")
                    continue
                if closed and job.delete_policy == "propagate":
                    gone.add(oid or "")
                    continue
                if owner is None:
                    _count(report, "parent not synced (dead letters)")
                    continue
                parent_tid = owner
                if parent.target_object is not None:
                    linked = tx.xrefs_for_party(owner, job.target_system, parent.target_object)
                    parent_tid = linked[0][2] if linked else None
                if parent_tid is None:
                    _count(report, "parent not synced (dead letters)")
                    continue
                if oid is None:
                    report.missing.append(ext)   # a personal record id only as its pseudonym
                    continue
                obj = obj.model_copy(update={obj.id_field: uuid.UUID(oid), "party_id": uuid.UUID(owner),
                                             "party_source": SourceRef(system=job.target_system, system_id=parent_tid,
                                                                       object=parent.target_object)})
                try:
                    payload = json.loads(json.dumps(tmap.map_out(obj), default=str))
                except RecordError:
                    _count(report, "refused by the target mapping (dead letters)")
                    continue
                fields_ = sorted(k for k in payload if k != tmap.spec.key_field)
                expected[oid] = (keyed_hash({k: _norm_object(payload[k]) for k in fields_}, key),
                                 {k: keyed_hash(_norm_object(payload[k]), key) for k in fields_})
            if progress:
                progress(len(page.records))
        key_path = parse_path(tmap.spec.key_field) if tmap.spec.key_field and not only_updates else None
        seen: set[str] = set()
        for page in tgt.extract(job.target_object, fields=None):
            for raw in page.records:
                if raw.deleted:
                    continue
                report.target_records += 1
                oid = tx.get_xref(job.target_system, job.target_object, raw.external_id)
                if oid is None and key_path is not None:
                    v = path_get(raw.data, key_path)
                    oid = str(v) if v else None
                if oid is None:
                    report.unmanaged.append(raw.external_id)
                    continue
                if oid in left_alone:
                    continue
                if oid not in expected:
                    if only_updates and oid not in gone:
                        continue   # a record the job did not update (its object is in no source record it read)
                    report.extra.append(raw.external_id)
                    continue
                seen.add(oid)
                want, per_field = expected[oid]
                if keyed_hash({k: _norm_object(raw.data.get(k)) for k in per_field}, key) == want:
                    report.matched += 1
                else:
                    report.different.append(oid)
                    report.different_fields[oid] = sorted(
                        k for k, h in per_field.items() if keyed_hash(_norm_object(raw.data.get(k)), key) != h)
            if progress:
                progress(len(page.records))
        for oid in sorted(expected.keys() - seen):
            refs = tx.xrefs_for_party(oid, job.source_system, job.source_object)
            report.missing.append(refs[0][2] if refs else oid)
    return report
