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
        raise ConfigurationError(f"job {job_name} syncs {smap.canonical} records: reconcile compares parties only so "
                                 "far (object jobs: compare with `crmbridge runs show` and the dead letters)")
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
