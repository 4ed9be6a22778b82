"""Two-way runs end to end: core banking (SOAP simulator) ⇄ Fxiaoke AccountObj (simulator)."""

from __future__ import annotations

import pytest

from crmbridge.adapters.base import WriteItem
from crmbridge.sync.engine import run_job
from crmbridge.sync.reconcile import reconcile
from crmbridge.sync.resolution import conflict_values, resolve_conflict
from crmbridge.sync.state.ledger import Action, Ledger

JOB = "core_fxiaoke"


def individuals_with_email(env):  # type: ignore[no-untyped-def]
    return [r for r in env.fxiaoke.records("AccountObj") if r.get("party_type__c") == "INDIVIDUAL" and r.get("email")]


def rm_edit(rt, external_id: str, **fields: str) -> None:  # type: ignore[no-untyped-def]
    """A relationship manager's edit in Fxiaoke, made through Fxiaoke's API."""
    (result,) = rt.adapter("fxiaoke").write("AccountObj", [WriteItem(key="rm", payload=fields,
                                                                     external_id=external_id)])
    assert result.status.value == "updated"


def custno_of(rt, fx_id: str) -> str:  # type: ignore[no-untyped-def]
    with rt.store.transaction() as tx:
        pid = tx.get_xref("fxiaoke", "AccountObj", fx_id)
        return tx.xrefs_for_party(pid, "corebank", "Customer")[0][2]


@pytest.fixture
def synced(env, rt):  # type: ignore[no-untyped-def]
    first = run_job(rt, JOB)
    assert first.status in ("succeeded", "partial") and first.actions[Action.CREATED] > 0
    assert sum(first.outcomes.values()) == first.read
    second = run_job(rt, JOB)   # the CRM reports its new records back: all recognised as our own writes
    assert second.actions[Action.SKIPPED_ECHO] == first.actions[Action.CREATED]
    assert not second.actions[Action.UPDATED] and not second.actions[Action.CONFLICT]
    return first


def test_a_crm_owned_edit_flows_back_to_core_banking_with_its_version(env, rt, synced) -> None:  # type: ignore
    person = individuals_with_email(env)[0]
    custno = custno_of(rt, person["_id"])
    modno_before = int(env.core.store.get(custno)["modno"])
    rm_edit(rt, person["_id"], email="corrected.by.rm@example.com")
    report = run_job(rt, JOB)
    assert report.actions[Action.UPDATED] == 1 and not report.actions[Action.CONFLICT]
    core = env.core.store.get(custno)
    assert core["email"] == "corrected.by.rm@example.com"
    assert int(core["modno"]) == modno_before + 1
    # the core's new version coming back is not a change to carry again
    again = run_job(rt, JOB)
    assert not again.actions[Action.UPDATED] and not again.actions[Action.CONFLICT]


def test_a_crm_edit_of_a_golden_field_is_a_conflict_not_an_overwrite(env, rt, synced) -> None:  # type: ignore
    person = individuals_with_email(env)[1]
    custno = custno_of(rt, person["_id"])
    name_before = env.core.store.get(custno)["name"]
    rm_edit(rt, person["_id"], name="张三丰")
    report = run_job(rt, JOB)
    assert report.actions[Action.CONFLICT] == 1
    assert env.core.store.get(custno)["name"] == name_before
    with rt.store.transaction() as tx:
        (conflict,) = tx.list_conflicts(JOB)
        entries = [e for e in Ledger(tx.connection).iter_entries(job=JOB) if e["action"] == "conflict"]
    assert conflict["field_paths"] == ["name.legal_zh"]
    assert "张三丰" not in str(entries) and "张三丰" not in str(conflict)   # values encrypted, ledger masked
    rep = reconcile(rt, JOB)   # the held-back record is accounted for, not reported as a difference
    assert rep.complete and rep.not_pushed.get("conflict waiting for review") == 1
    values = conflict_values(rt, conflict)
    assert values["target"]["name.legal_zh"] == "张三丰"
    assert values["source"]["name.legal_zh"] == name_before
    # the reviewer keeps the core's name: Fxiaoke gets its masked projection back, the conflict is closed
    res = resolve_conflict(rt, conflict["id"], take="source", actor="user:reviewer")
    assert res.wrote_to == ["fxiaoke"]
    fx_now = next(r for r in env.fxiaoke.records("AccountObj") if r["_id"] == person["_id"])
    assert fx_now["name"] != "张三丰" and fx_now["name"].startswith(name_before[0])
    with rt.store.transaction() as tx:
        assert tx.get_conflict(conflict["id"])["status"] == "resolved"
        resolved = [e for e in Ledger(tx.connection).iter_entries(job=JOB) if e["action"] == "conflict-resolved"]
    assert len(resolved) == 1 and resolved[0]["actor"] == "user:reviewer"
    followup = run_job(rt, JOB)
    assert not followup.actions[Action.CONFLICT] and not followup.actions[Action.UPDATED]
    with rt.store.transaction() as tx:
        assert Ledger(tx.connection, rt.signer, cipher=rt.cipher).verify(rt.signer.public_key).ok


def test_a_resolution_the_crm_refuses_is_ledgered_and_the_conflict_stays_open(env, rt, synced,  # type: ignore
                                                                                fast_retry) -> None:
    """A vendor that refuses (here: Fxiaoke busy on every call) leaves the conflict open and a signed 'failed'
    entry naming the reviewer; the next try resolves it."""
    from crmbridge.core.errors import CrmBridgeError

    person = individuals_with_email(env)[3]
    rm_edit(rt, person["_id"], name="李四光")
    assert run_job(rt, JOB).actions[Action.CONFLICT] == 1
    with rt.store.transaction() as tx:
        (conflict,) = tx.list_conflicts(JOB)
        before = len(list(Ledger(tx.connection).iter_entries(job=JOB)))
    env.fxiaoke.knobs.error_rate = 1.0
    try:
        with pytest.raises(CrmBridgeError):
            resolve_conflict(rt, conflict["id"], take="source", actor="user:reviewer")
    finally:
        env.fxiaoke.knobs.error_rate = 0.0
    with rt.store.transaction() as tx:
        assert tx.get_conflict(conflict["id"])["status"] == "open"
        new = list(Ledger(tx.connection).iter_entries(job=JOB))[before:]
    assert [e["action"] for e in new] == ["failed"]
    assert new[0]["actor"] == "user:reviewer" and "not completed: fxiaoke refused" in new[0]["reason"]
    assert "李四光" not in str(new)
    assert resolve_conflict(rt, conflict["id"], take="source", actor="user:reviewer").wrote_to == ["fxiaoke"]
    with rt.store.transaction() as tx:
        assert tx.get_conflict(conflict["id"])["status"] == "resolved"
        assert Ledger(tx.connection, rt.signer, cipher=rt.cipher).verify(rt.signer.public_key).ok


def test_keeping_the_crm_value_of_a_field_the_core_owns_is_refused_clearly(env, rt, synced) -> None:  # type: ignore
    """The name is golden in the core (its mapping reads it, never writes it): --take target cannot stick, so it is
    refused with what to do instead, nothing is written and the conflict stays open."""
    from crmbridge.core.errors import ConfigurationError

    person = individuals_with_email(env)[4]
    rm_edit(rt, person["_id"], name="赵六")
    assert run_job(rt, JOB).actions[Action.CONFLICT] == 1
    with rt.store.transaction() as tx:
        (conflict,) = tx.list_conflicts(JOB)
        before = len(list(Ledger(tx.connection).iter_entries()))
    calls = sum(env.fxiaoke.requests_seen.values()) + sum(env.core.requests_seen.values())
    for take, value in (("target", None), ("value", "孙七")):
        with pytest.raises(ConfigurationError) as err:
            resolve_conflict(rt, conflict["id"], take=take, value=value, actor="user:reviewer")  # type: ignore[arg-type]
        assert "name.legal_zh is owned by corebank" in str(err.value) and "--take source" in str(err.value)
        assert "赵六" not in str(err.value) and "孙七" not in str(err.value)
    with rt.store.transaction() as tx:
        assert tx.get_conflict(conflict["id"])["status"] == "open"
        assert len(list(Ledger(tx.connection).iter_entries())) == before
    assert sum(env.fxiaoke.requests_seen.values()) + sum(env.core.requests_seen.values()) == calls   # no vendor call
    fx_now = next(r for r in env.fxiaoke.records("AccountObj") if r["_id"] == person["_id"])
    assert fx_now["name"] == "赵六"


def test_crm_automation_touching_other_fields_is_an_echo(env, rt, synced) -> None:  # type: ignore[no-untyped-def]
    person = individuals_with_email(env)[2]
    rm_edit(rt, person["_id"], remark="assigned to campaign 2026Q4")   # a field the job never reads
    report = run_job(rt, JOB)
    assert report.actions[Action.SKIPPED_ECHO] >= 1
    assert not report.actions[Action.UPDATED] and not report.actions[Action.CONFLICT]


def test_a_core_change_flows_to_the_crm(env, rt, synced) -> None:  # type: ignore[no-untyped-def]
    person = individuals_with_email(env)[0]
    custno = custno_of(rt, person["_id"])
    record = env.core.store.get(custno)
    env.core.store.touch(custno, segment="PRIVATE" if record["segment"] != "PRIVATE" else "MASS")
    report = run_job(rt, JOB)
    assert report.actions[Action.UPDATED] == 1
    fx_now = next(r for r in env.fxiaoke.records("AccountObj") if r["_id"] == person["_id"])
    assert fx_now["segment__c"] == ("PRIVATE" if record["segment"] != "PRIVATE" else "MASS")


def test_dry_run_of_a_two_way_job_writes_nowhere(env, rt, synced) -> None:  # type: ignore[no-untyped-def]
    person = individuals_with_email(env)[0]
    custno = custno_of(rt, person["_id"])
    rm_edit(rt, person["_id"], email="dry.run@example.com")
    before = env.core.store.get(custno)
    plan = run_job(rt, JOB, dry_run=True)
    assert plan.actions[Action.UPDATED] == 1
    assert env.core.store.get(custno) == before
    real = run_job(rt, JOB)
    assert real.actions[Action.UPDATED] == 1


def test_a_two_way_job_retries_its_dead_letters(env, rt, synced) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from sync_helpers import CUSTOMERS, custno, synthetic

    bad = next(custno(i) for i in range(CUSTOMERS) if synthetic(i).defect == "malformed_mobile")
    with rt.store.transaction() as tx:
        letter = next(d for d in tx.list_dead_letters(JOB, status=["open"], limit=1000) if d["external_id"] == bad)
    assert letter["source_system"] == "corebank"
    # the core corrects the mobile and the letter falls due: the record is created once and its letter resolved
    env.core.store.touch(bad, mobile="13912345678")
    with rt.store.transaction() as tx:
        tx.mark_dead_letter(letter["id"], "open", next_attempt_at=datetime.now(UTC))
    report = run_job(rt, JOB)
    assert report.actions[Action.CREATED] == 1
    with rt.store.transaction() as tx:
        assert tx.get_dead_letter(letter["id"])["status"] == "resolved"


def test_an_invalid_crm_edit_is_a_dead_letter_not_a_failed_run(env, rt, synced) -> None:  # type: ignore
    import time

    person = individuals_with_email(env)[0]
    # a value the CRM's own validation let through (written straight into the simulator's table)
    table = env.fxiaoke.tables["AccountObj"]
    with env.fxiaoke._data_lock:
        row = dict(table.rows[person["_id"]])
        old = row["last_modified_time"]
        row.update(email="not-an-email-address", last_modified_time=int(time.time() * 1000))
        table.put(row, old)
    report = run_job(rt, JOB)
    assert report.status == "partial", report.error   # one record refused: partial, the run went on
    assert report.actions[Action.FAILED] == 1 and report.outcomes["dead_lettered"] == 1
    with rt.store.transaction() as tx:
        letters = [d for d in tx.list_dead_letters(JOB, status=["open"], limit=1000)
                   if d["external_id"] == person["_id"]]
    assert len(letters) == 1 and letters[0]["source_system"] == "fxiaoke"
    assert "not-an-email-address" not in letters[0]["message"]
