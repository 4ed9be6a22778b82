"""Mappings that evolve (issue 16, the engine's side): a changed mapping reaches every record the job has written
(exactly those whose payload changes, resumable), the dry run says so first in the vendor's terms, full refresh
and resync on one-way and two-way jobs, and reconcile names the differing fields."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from crmbridge.config.model import PACKAGE_ROOT
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import JobRunner, run_job
from crmbridge.sync.reconcile import reconcile
from crmbridge.sync.state.ledger import Action

UPSERT = "POST /crm/v8/Contacts/upsert"
NEW_FIELD = "Department"


def _zoho_records(env) -> list[dict]:  # type: ignore[no-untyped-def]
    return list(env.zoho.stores["Contacts"].records.values())


def _edit_zoho_mapping(env, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """Copy the shipped Zoho mapping, add an outgoing field, and point the job at the copy."""
    copy = tmp_path / "zoho_contacts.yaml"
    shutil.copy(PACKAGE_ROOT / "mappings" / "zoho_contacts.yaml", copy)
    with copy.open("a", encoding="utf-8") as f:
        f.write(f"  - type: field\n    vendor: {NEW_FIELD}\n    canonical: home_branch.branch_code\n"
                "    direction: out\n")
    cfg = yaml.safe_load(env.config_path.read_text())
    cfg["jobs"]["core_to_zoho"]["target_mapping"] = str(copy)
    env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return copy


def test_a_changed_mapping_updates_exactly_the_records_whose_payload_changes(env, rt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = run_job(rt, "core_to_zoho")
    assert first.actions[Action.CREATED] > 0
    synced = len(_zoho_records(env))
    # no mapping change: nothing to write
    assert run_job(rt, "core_to_zoho").actions[Action.UPDATED] == 0
    _edit_zoho_mapping(env, tmp_path)
    rt2 = bootstrap(env.config_path)
    try:
        plan = run_job(rt2, "core_to_zoho", dry_run=True)
        carrying = [r for r in _zoho_records(env) if r.get(NEW_FIELD) is None]
        assert len(carrying) == synced   # the dry run wrote nothing
        assert plan.mapping_changes, "the dry run must say the mapping changed"
        change = plan.mapping_changes[0]
        assert change.mapping.endswith("zoho_contacts.yaml")
        assert change.fields == {NEW_FIELD}
        assert change.message.startswith(f"{change.records} records will be updated because mapping")
        planned = [p for p in plan.plan if p.action is Action.UPDATED]
        assert len(planned) == change.records
        assert all(NEW_FIELD in p.target_fields and p.target_fields[NEW_FIELD][0] == "" for p in planned)
        doc = plan.as_dict()
        assert doc["mapping_changes"][0]["fields"] == [NEW_FIELD]
        assert doc["estimated_api_calls"] >= doc["planned_write_calls"] >= 1
        before = env.zoho.requests_seen[UPSERT]
        report = run_job(rt2, "core_to_zoho")
        assert report.status in ("succeeded", "partial"), report.error
        with_field = [r for r in _zoho_records(env) if r.get(NEW_FIELD)]
        assert with_field, "the new field reached no record"
        # exactly the records whose payload changed were updated, each once, no duplicate
        assert report.actions[Action.UPDATED] == len(with_field) == change.records
        assert len(_zoho_records(env)) == synced
        assert env.zoho.requests_seen[UPSERT] > before
        # a second run: nothing left to write
        calls = env.zoho.requests_seen[UPSERT]
        again = run_job(rt2, "core_to_zoho")
        assert env.zoho.requests_seen[UPSERT] == calls
        assert again.actions[Action.UPDATED] == 0 and not again.mapping_changes
        assert reconcile(rt2, "core_to_zoho").complete
    finally:
        rt2.close()


def test_a_resync_stopped_mid_way_resumes_and_loses_and_duplicates_nothing(env, rt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = yaml.safe_load(env.config_path.read_text())
    cfg["jobs"]["core_to_zoho"]["batch_size"] = 5
    env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rt0 = bootstrap(env.config_path)
    try:
        run_job(rt0, "core_to_zoho")
    finally:
        rt0.close()
    synced = len(_zoho_records(env))
    _edit_zoho_mapping(env, tmp_path)
    rt2 = bootstrap(env.config_path)
    try:
        batches = iter(range(100))
        stopped = JobRunner(rt2, "core_to_zoho", should_stop=lambda: next(batches) >= 2).run()
        assert stopped.status == "stopped"
        done = [r for r in _zoho_records(env) if r.get(NEW_FIELD)]
        assert 0 < len(done) < synced
        resumed = run_job(rt2, "core_to_zoho")
        assert resumed.status in ("succeeded", "partial"), resumed.error
        records = _zoho_records(env)
        assert len(records) == synced, "a record was duplicated"
        assert all(r.get(NEW_FIELD) for r in records), "a record was lost by the stopped resync"
        ids = [r.get("Party_ID") for r in records]
        assert len(ids) == len(set(ids))
        # the resumed run re-read from the cursor: records the stopped run already updated cost no call again
        assert resumed.actions[Action.UPDATED] == synced - len(done)
        calls = env.zoho.requests_seen[UPSERT]
        assert run_job(rt2, "core_to_zoho").actions[Action.UPDATED] == 0
        assert env.zoho.requests_seen[UPSERT] == calls
    finally:
        rt2.close()


@pytest.mark.parametrize("job", ["core_to_zoho", "core_fxiaoke"])
def test_full_refresh_rereads_the_source_and_writes_nothing_unchanged(env, rt, job) -> None:  # type: ignore[no-untyped-def]
    run_job(rt, job)
    quiet = run_job(rt, job)
    report = run_job(rt, job, full_refresh=True)
    assert report.status in ("succeeded", "partial"), report.error
    assert report.read > quiet.read            # the source was read from the start
    assert report.actions[Action.CREATED] == 0 and report.actions[Action.UPDATED] == 0
    assert reconcile(rt, job).complete


def test_resync_repushes_stored_state_one_way_and_only_a_field(env, rt) -> None:  # type: ignore[no-untyped-def]
    run_job(rt, "core_to_zoho")
    records = _zoho_records(env)
    store = env.zoho.stores["Contacts"].records
    vid = next(k for k, v in store.items() if v is records[0])

    def victim() -> dict:
        return store[vid]

    kept_name = victim()["Last_Name"]
    victim()["Home_Branch"] = "EDITED"           # someone edited the CRM by hand
    victim()["Last_Name"] = "X*"
    assert not reconcile(rt, "core_to_zoho").complete
    rep = reconcile(rt, "core_to_zoho")
    assert rep.different_fields[rep.different[0]] == ["Home_Branch", "Last_Name"]
    assert "different_fields" in json.dumps(rep.as_dict())
    only = run_job(rt, "core_to_zoho", resync=True, only_field="Home_Branch")
    assert only.status == "succeeded", only.error
    assert only.actions[Action.UPDATED] == len(records)
    assert victim()["Home_Branch"] != "EDITED" and victim()["Last_Name"] == "X*"
    full = run_job(rt, "core_to_zoho", resync=True)
    assert full.status == "succeeded", full.error
    assert victim()["Last_Name"] == kept_name
    assert reconcile(rt, "core_to_zoho").complete
    bad = run_job(rt, "core_to_zoho", resync=True, only_field="No_Such_Field")
    assert bad.status == "failed" and "--only-field No_Such_Field" in (bad.error or "")


def test_resync_two_way_and_its_dry_run(env, rt) -> None:  # type: ignore[no-untyped-def]
    run_job(rt, "core_fxiaoke")
    plan = run_job(rt, "core_fxiaoke", resync=True, dry_run=True)
    assert plan.planned_write_calls >= 1 and plan.plan
    assert all(p.target_fields for p in plan.plan)
    report = run_job(rt, "core_fxiaoke", resync=True)
    assert report.status == "succeeded", report.error
    assert report.actions[Action.UPDATED] == len(plan.plan)
    assert report.actions[Action.CREATED] == 0
    assert reconcile(rt, "core_fxiaoke").complete


def test_a_changed_target_mapping_reaches_a_two_way_job_s_records(env, rt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run_job(rt, "core_fxiaoke")
    synced = {r["_id"] for r in env.fxiaoke.records("AccountObj") if r.get("party_id__c")}
    copy = tmp_path / "fxiaoke_accountobj.yaml"
    shutil.copy(PACKAGE_ROOT / "mappings" / "fxiaoke_accountobj.yaml", copy)
    with copy.open("a", encoding="utf-8") as f:
        f.write("  - type: field\n    vendor: remark\n    canonical: home_branch.branch_code\n    direction: out\n")
    cfg = yaml.safe_load(env.config_path.read_text())
    cfg["jobs"]["core_fxiaoke"]["target_mapping"] = str(copy)
    env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rt2 = bootstrap(env.config_path)
    try:
        plan = run_job(rt2, "core_fxiaoke", dry_run=True)
        assert [c.fields for c in plan.mapping_changes] == [{"remark"}]
        assert not any(r.get("remark") for r in env.fxiaoke.records("AccountObj"))
        report = run_job(rt2, "core_fxiaoke")
        assert report.status in ("succeeded", "partial"), report.error
        remarked = [r for r in env.fxiaoke.records("AccountObj") if r.get("remark")]
        assert remarked and {r["_id"] for r in remarked} <= synced
        assert plan.mapping_changes[0].records == len(remarked)
        assert report.actions[Action.CREATED] == 0
        again = run_job(rt2, "core_fxiaoke")
        assert again.actions[Action.UPDATED] == 0 and not again.mapping_changes
    finally:
        rt2.close()
