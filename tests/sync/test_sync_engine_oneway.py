"""One-way runs end to end: core banking (SOAP simulator) → Zoho CRM (simulator), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter

import pytest
from sync_helpers import CUSTOMERS, custno, expected_in_zoho, share_granted, synthetic, zoho_party_ids

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.reconcile import reconcile
from crmbridge.sync.state.ledger import Action, Ledger

UPSERT = "POST /crm/v8/Contacts/upsert"


def rejected() -> set[str]:
    return {custno(i) for i in range(CUSTOMERS) if not synthetic(i).should_validate}


def ledger_ok(rt) -> bool:  # type: ignore[no-untyped-def]
    with rt.store.transaction() as tx:
        result = Ledger(tx.connection, rt.signer, cipher=rt.cipher).verify(rt.signer.public_key)
    return result.ok


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_every_valid_consented_individual_lands_once_and_bad_records_are_dead_lettered(
        tmp_path, request, backend) -> None:  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=0.1, seed=11, state_url=url) as env:
        rt = bootstrap(env.config_path)
        try:
            report = run_job(rt, "core_to_zoho")
            # bad records were refused (dead letters): the run says partial, never succeeded
            assert report.status == "partial", report.error
            assert report.outcomes["dead_lettered"] == len(rejected())
            assert sum(report.outcomes.values()) == report.read
            ids = zoho_party_ids(env)
            assert len(ids) == len(set(ids)), "a party was written twice"
            with rt.store.transaction() as tx:
                linked = {tx.xrefs_for_party(pid, "corebank", "Customer")[0][2] for pid in ids}
                letters = tx.list_dead_letters("core_to_zoho", status=["open"], limit=1000)
            assert linked == expected_in_zoho()
            assert {d["external_id"] for d in letters} == rejected()
            assert all(d["message"] and d["payload"] for d in letters)
            assert report.actions[Action.CREATED] == len(expected_in_zoho())
            assert report.read == CUSTOMERS
            assert ledger_ok(rt)
            assert reconcile(rt, "core_to_zoho").complete
        finally:
            rt.close()


def test_a_second_run_without_source_changes_makes_no_write_call(env, rt) -> None:  # type: ignore[no-untyped-def]
    first = run_job(rt, "core_to_zoho")
    calls = env.zoho.requests_seen[UPSERT]
    assert first.actions[Action.CREATED] > 0 and calls >= 1
    second = run_job(rt, "core_to_zoho")
    # the bad records' dead letters are not due yet, and nothing else was read: every record read is accounted
    assert second.status in ("succeeded", "partial") and sum(second.outcomes.values()) == second.read
    assert env.zoho.requests_seen[UPSERT] == calls
    assert second.actions[Action.CREATED] == second.actions[Action.UPDATED] == 0


def test_one_changed_source_record_costs_one_update(env, rt) -> None:  # type: ignore[no-untyped-def]
    run_job(rt, "core_to_zoho")
    target = sorted(expected_in_zoho())[0]
    record = env.core.store.get(target)
    env.core.store.touch(target, segment="PRIVATE" if record["segment"] != "PRIVATE" else "MASS")
    calls = env.zoho.requests_seen[UPSERT]
    report = run_job(rt, "core_to_zoho")
    assert report.actions[Action.UPDATED] == 1
    assert report.actions[Action.CREATED] == 0
    assert env.zoho.requests_seen[UPSERT] == calls + 1


def test_an_unchanged_field_change_at_the_source_costs_no_write(env, rt) -> None:  # type: ignore[no-untyped-def]
    run_job(rt, "core_to_zoho")
    target = sorted(expected_in_zoho())[0]
    env.core.store.touch(target)   # MODNO and timestamp move, nothing the CRM sees changes
    calls = env.zoho.requests_seen[UPSERT]
    report = run_job(rt, "core_to_zoho")
    assert report.actions[Action.SKIPPED_UNCHANGED] == 1
    assert env.zoho.requests_seen[UPSERT] == calls


def test_dry_run_writes_nothing_anywhere(env, rt) -> None:  # type: ignore[no-untyped-def]
    plan = run_job(rt, "core_to_zoho", dry_run=True)
    assert plan.dry_run and plan.status == "partial"   # the bad records would be dead-lettered
    assert sum(plan.outcomes.values()) == plan.read
    assert plan.actions[Action.CREATED] == len(expected_in_zoho())
    assert plan.planned_write_calls == 1
    assert env.zoho.requests_seen[UPSERT] == 0
    with rt.store.transaction() as tx:
        assert tx.get_cursor("core_to_zoho", "corebank.Customer") is None
        # the dry run is listed as a run (crmbridge runs list); nothing else it touched was kept
        assert [(r["dry_run"], r["status"]) for r in tx.list_runs("core_to_zoho")] == [(True, "partial")]
        assert Ledger(tx.connection).head()[0] == 0
        assert tx.list_dead_letters(limit=10) == []
    # field-level diffs are masked: no clear ID number or mobile in the plan
    shown = " ".join(v for p in plan.plan for pair in p.fields.values() for v in pair)
    for i in range(CUSTOMERS):
        c = synthetic(i)
        assert c.id_number not in shown
        if c.mobile:
            assert c.mobile not in shown
    real = run_job(rt, "core_to_zoho")
    assert real.actions[Action.CREATED] == plan.actions[Action.CREATED]


def test_withdrawn_consent_is_not_pushed_and_the_ledger_says_why(env, rt) -> None:  # type: ignore[no-untyped-def]
    target = sorted(expected_in_zoho())[0]
    env.core.store.touch(target, consent_crm="N")
    report = run_job(rt, "core_to_zoho")
    assert report.actions[Action.SKIPPED_NO_CONSENT] >= 1
    with rt.store.transaction() as tx:
        entries = [e for e in Ledger(tx.connection).iter_entries(job="core_to_zoho")
                   if e["source_id"] == target]
    assert [e["action"] for e in entries] == ["skipped-no-consent"]
    assert "SHARE_WITH_CRM_VENDOR" in (entries[0]["reason"] or "")
    assert target not in {r for r in expected_in_zoho() - {target}}
    with rt.store.transaction() as tx:
        assert tx.xrefs_for_party(entries[0]["party_id"], "zoho_cn", "Contacts") == []


def test_a_closed_customer_is_deactivated_at_the_target(env, rt) -> None:  # type: ignore[no-untyped-def]
    run_job(rt, "core_to_zoho")
    target = sorted(expected_in_zoho())[0]
    env.core.store.close(target)
    report = run_job(rt, "core_to_zoho")
    assert report.actions[Action.DELETED] == 1
    with rt.store.transaction() as tx:
        pid = tx.get_xref("corebank", "Customer", target)
        zoho_id = tx.xrefs_for_party(pid, "zoho_cn", "Contacts")
    assert len(zoho_id) == 1   # deactivated, not deleted: the CRM keeps the record, marked closed
    matches = env.zoho.find("Contacts", "Party_ID", pid)
    assert len(matches) == 1 and matches[0]["Lifecycle_Stage"] == "CLOSED"
    # closing is final: a further run does not write it again
    calls = env.zoho.requests_seen[UPSERT]
    run_job(rt, "core_to_zoho")
    assert env.zoho.requests_seen[UPSERT] == calls


def test_a_fixed_bad_record_is_retried_from_the_dead_letters(env, rt) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    run_job(rt, "core_to_zoho")
    bad = next(custno(i) for i in range(CUSTOMERS)
               if synthetic(i).defect == "malformed_mobile" and synthetic(i).is_individual
               and share_granted(synthetic(i)))
    env.core.store.touch(bad, mobile="13912345678")
    with rt.store.transaction() as tx:
        letter = next(d for d in tx.list_dead_letters(status=["open"], limit=1000) if d["external_id"] == bad)
        tx.mark_dead_letter(letter["id"], "open", next_attempt_at=datetime.now(UTC))
    report = run_job(rt, "core_to_zoho")
    assert report.actions[Action.CREATED] == 1
    with rt.store.transaction() as tx:
        assert tx.get_dead_letter(letter["id"])["status"] == "resolved"
        pid = tx.get_xref("corebank", "Customer", bad)
    assert len(env.zoho.find("Contacts", "Party_ID", pid)) == 1


def test_reconcile_finds_a_record_deleted_behind_crmbridges_back(env, rt) -> None:  # type: ignore[no-untyped-def]
    run_job(rt, "core_to_zoho")
    target = sorted(expected_in_zoho())[0]
    with rt.store.transaction() as tx:
        pid = tx.get_xref("corebank", "Customer", target)
    zoho = rt.adapter("zoho_cn")
    (row,) = env.zoho.find("Contacts", "Party_ID", pid)
    zoho.delete("Contacts", [row["id"]])
    rep = reconcile(rt, "core_to_zoho")
    assert not rep.complete
    assert rep.missing == [target]
    assert rep.matched == len(expected_in_zoho()) - 1


def test_ledger_and_logs_never_hold_personal_data_in_clear(env, rt, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from sqlalchemy import MetaData, select

    caplog.set_level(logging.DEBUG)
    run_job(rt, "core_fxiaoke")
    secrets: list[str] = []
    for i in range(CUSTOMERS):
        c = synthetic(i)
        secrets += [v for v in (c.id_number, c.mobile, c.email, c.address.street) if v and len(v) >= 6]
        if c.is_individual and c.name and len(c.name) >= 3:   # a company's name is not personal data
            secrets.append(c.name)
    meta = MetaData()
    meta.reflect(rt.store.engine)
    seen = Counter[str]()
    with rt.store.engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                text = " ".join(str(v) for v in row)
                for s in secrets:
                    if s in text:
                        seen[f"{table.name}:{s[:2]}…"] += 1
    assert not seen, f"personal data in clear in the state database: {dict(seen)}"
    logs = caplog.text
    assert not [s for s in secrets if s in logs]


def test_an_unchanged_bad_record_reread_in_the_overlap_is_not_failed_again(env, rt) -> None:  # type: ignore
    first = run_job(rt, "core_to_zoho")
    assert first.actions[Action.FAILED] == len(rejected())
    second = run_job(rt, "core_to_zoho")   # every record is still inside the overlap window
    assert second.actions[Action.FAILED] == 0
    with rt.store.transaction() as tx:
        letters = tx.list_dead_letters("core_to_zoho", status=["open"], limit=1000)
    assert {d["attempts"] for d in letters} == {1}


def test_a_core_clock_running_ahead_does_not_hide_consent(env, rt) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime, timedelta

    from crmbridge.adapters.corebank_soap.simulator import CORE_TZ

    run_job(rt, "core_to_zoho")
    env.core.store.clock = lambda: (datetime.now(CORE_TZ) + timedelta(seconds=90)).replace(tzinfo=None,
                                                                                          microsecond=0)
    target = sorted(expected_in_zoho())[0]
    record = env.core.store.get(target)
    env.core.store.touch(target, segment="PRIVATE" if record["segment"] != "PRIVATE" else "MASS")
    report = run_job(rt, "core_to_zoho")
    assert report.actions[Action.UPDATED] == 1
    assert report.actions[Action.SKIPPED_NO_CONSENT] == 0


@pytest.mark.slow   # slow tier: thousands of records
def test_an_unset_batch_size_fills_the_targets_concurrent_upserts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A batch's writes go out alone: with 100-record batches about a quarter of every 100-record Zoho upsert stays
    empty (bad, out-of-scope and unconsented records); unset, the batch fills concurrency × 100, so the upserts
    come within one call of the minimum. A configured batch size is honoured as it is."""
    from crmbridge.sync.engine import effective_batch_size

    n = 450
    with DemoEnvironment(tmp_path / "demo", customers=n, bad_fraction=0.1, seed=11) as env:
        rt = bootstrap(env.config_path)
        try:
            job = rt.config.jobs["core_to_zoho"]
            assert "batch_size" not in job.model_fields_set
            assert effective_batch_size(job, rt.adapter("zoho_cn")) == 2000          # enterprise: 20 × 100
            assert effective_batch_size(rt.config.jobs["core_fxiaoke"], rt.adapter("fxiaoke")) == 100
            from crmbridge.adapters.zoho import ZohoAdapter  # a system limited below its edition: 5 × 100
            limited = ZohoAdapter(rt.adapter("zoho_cn").config.model_copy(update={"max_concurrency": 5}),
                                  system="zoho_cn")
            assert limited.concurrency == 5 and effective_batch_size(job, limited) == 500
            limited.close()
            report = run_job(rt, "core_to_zoho")
            assert report.status in ("succeeded", "partial"), report.error
            written = report.actions[Action.CREATED]
            assert written > 300
            assert env.zoho.requests_seen[UPSERT] == -(-written // 100)
            explicit = job.model_copy(update={"batch_size": 100})
            explicit.__pydantic_fields_set__.add("batch_size")
            assert effective_batch_size(explicit, rt.adapter("zoho_cn")) == 100
        finally:
            rt.close()
    with DemoEnvironment(tmp_path / "demo100", customers=n, bad_fraction=0.1, seed=11,
                         jobs=None) as env:   # the same records in 100-record batches: more, partly empty, calls
        import yaml
        cfg = yaml.safe_load(env.config_path.read_text())
        cfg["jobs"]["core_to_zoho"]["batch_size"] = 100
        env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        rt = bootstrap(env.config_path)
        try:
            report = run_job(rt, "core_to_zoho")
            assert report.actions[Action.CREATED] == written
            assert env.zoho.requests_seen[UPSERT] > -(-written // 100)
        finally:
            rt.close()
