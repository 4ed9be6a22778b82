"""Case status back to the CRM, end to end over real HTTP on SQLite and PostgreSQL: cases go Zoho → the bank's
complaint service (job zoho_cases_to_complaints), the complaint team moves them on, and the status comes back to
the Zoho case (job complaints_status_to_zoho: complaints → Zoho Cases ``Status``, updated by the case's record id
with ``PUT /crm/{v}/Cases``). A status change reaches the case once; an unchanged re-run makes no write call; a
complaint that did not come from the CRM is out of scope (no case is created); a case deleted in Zoho is a dead
letter, not a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cases_world import CASES, STATUS, add_case, complaints_world

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.engine import run_job


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with complaints_world(request, tmp_path, monkeypatch, customers=8, seed=7, status_job=True) as w:
        yield w


def _case(env: DemoEnvironment, contact: str, **over: Any) -> str:
    return add_case(env, contact, "客户投诉：理财产品风险揭示不充分。", **over)


def _writes(env: DemoEnvironment) -> int:
    return sum(n for k, n in env.zoho.requests_seen.items()
               if k.split(" ")[0] in ("PUT", "POST") and "/Cases" in k)


def test_complaint_status_reaches_the_zoho_case_once(world) -> None:  # type: ignore[no-untyped-def]
    env, bank, rt = world
    contacts = sorted(env.zoho.stores["Contacts"].records)
    cases = [_case(env, c) for c in contacts[:3]]
    assert run_job(rt, CASES).outcomes["created"] == 3
    by_case = {r["source_case_id"]: r["complaint_id"] for r in bank.complaints.values()}
    with rt.store.transaction(read_only=True) as tx:
        complaint = {c: by_case[tx.get_xref("zoho_cn", "Cases", c) or ""] for c in cases}
    n_cases = env.zoho.count("Cases")

    first = run_job(rt, STATUS)   # nothing moved yet: RECEIVED is the case's own New
    assert first.status == "succeeded", first.outcomes
    assert {env.zoho.record("Cases", c)["Status"] for c in cases} == {"New"}

    bank.advance(complaint[cases[0]], "IN_PROGRESS")
    bank.advance(complaint[cases[1]], "RESOLVED", resolution="已退还手续费")
    before = _writes(env)
    second = run_job(rt, STATUS)
    assert second.outcomes.get("updated", 0) == 2, second.outcomes
    assert env.zoho.record("Cases", cases[0])["Status"] == "On Hold"
    assert env.zoho.record("Cases", cases[1])["Status"] == "Closed"
    assert env.zoho.record("Cases", cases[2])["Status"] == "New"
    assert _writes(env) - before == 1, "one PUT /Cases call for the batch"
    assert env.zoho.count("Cases") == n_cases, "the status job never creates a case"

    quiet = _writes(env)
    third = run_job(rt, STATUS)
    assert third.outcomes.get("updated", 0) == 0 and _writes(env) == quiet, "an unchanged re-run writes nothing"

    from crmbridge.sync.reconcile import reconcile

    rep = reconcile(rt, STATUS)   # the case statuses match the bank's, compared through the cross-reference
    assert rep.complete and rep.matched == 3, rep.as_dict()
    env.zoho.touch("Cases", cases[1], Status="Escalated")   # a user reopens a case the bank resolved
    rep = reconcile(rt, STATUS)
    with rt.store.transaction(read_only=True) as tx:
        oid = tx.get_xref("zoho_cn", "Cases", cases[1])
    assert rep.different == [oid] and rep.different_fields[oid] == ["Status"], rep.as_dict()

    # the cases job sees the cases it changed, and sends nothing back to the bank (status is not the bank's input)
    patches = sum(n for k, n in bank.requests_seen.items() if k.startswith(("PATCH", "POST")))
    back = run_job(rt, CASES)
    assert back.outcomes.get("created", 0) == 0 and back.outcomes.get("updated", 0) == 0, back.outcomes
    assert sum(n for k, n in bank.requests_seen.items() if k.startswith(("PATCH", "POST"))) == patches


def test_a_complaint_from_elsewhere_and_a_deleted_case(world) -> None:  # type: ignore[no-untyped-def]
    env, bank, rt = world
    contacts = sorted(env.zoho.stores["Contacts"].records)
    cases = [_case(env, c) for c in contacts[:2]]
    assert run_job(rt, CASES).outcomes["created"] == 2
    with rt.store.transaction(read_only=True) as tx:
        party = tx.get_xref("zoho_cn", "Contacts", contacts[0])
    by_case = {r["source_case_id"]: r["complaint_id"] for r in bank.complaints.values()}
    with rt.store.transaction(read_only=True) as tx:
        complaint = {c: by_case[tx.get_xref("zoho_cn", "Cases", c) or ""] for c in cases}
    # a complaint the bank logged itself (a branch letter, with the bank's own JR/T 0169 channel code, which the
    # status mapping cannot read): its party is in Zoho, its case is not; out of scope, never a dead letter
    with bank.lock:
        own = bank._create({"source_system": "BRANCH", "source_case_id": "BR-0001", "party_id": party,
                            "priority": "LOW", "summary": "柜面投诉", "channel_code": "A0101",
                            "received_at": "2026-01-05T08:00:00.000Z"}, bank.clock())
    env.zoho.stores["Cases"].remove(cases[1])   # a relationship manager deletes the case in Zoho
    n_cases = env.zoho.count("Cases")
    bank.advance(complaint[cases[0]], "CLOSED")
    bank.advance(complaint[cases[1]], "REJECTED")
    bank.advance(own["complaint_id"], "ACCEPTED")

    run = run_job(rt, STATUS)
    assert run.status == "partial", run.outcomes   # a dead letter: partial, never a crash
    assert run.outcomes.get("updated", 0) == 1 and run.outcomes.get("dead_lettered", 0) == 1, run.outcomes
    assert env.zoho.record("Cases", cases[0])["Status"] == "Closed"
    assert env.zoho.count("Cases") == n_cases, "no case created for the bank's own complaint"
    with rt.store.transaction(read_only=True) as tx:
        letters = tx.list_dead_letters(STATUS, status=["open"], limit=10)
    assert [d["external_id"] for d in letters] == [complaint[cases[1]]], letters
    assert letters[0]["reason_code"] == "INVALID_DATA" and "id" in letters[0]["message"], letters[0]

    writes = _writes(env)
    again = run_job(rt, STATUS)   # the letter waits for its back-off: nothing written, nothing created
    assert again.outcomes.get("updated", 0) == 0 and _writes(env) == writes, again.outcomes
    assert env.zoho.count("Cases") == n_cases
    with rt.store.transaction(read_only=True) as tx:
        assert len(tx.list_dead_letters(STATUS, status=["open"], limit=10)) == 1, "the letter stays open"


def test_the_zoho_adapter_updates_by_record_id_and_never_creates(world) -> None:  # type: ignore[no-untyped-def]
    from crmbridge.adapters.base import WriteItem, WriteStatus

    env, _bank, rt = world
    contact = sorted(env.zoho.stores["Contacts"].records)[0]
    case = _case(env, contact)
    zoho = rt.adapter("zoho_cn")
    n = env.zoho.count("Cases")
    res = zoho.write("Cases", [WriteItem("k1", {"Status": "Escalated"}, external_id=case, key_field="id"),
                               WriteItem("k2", {"Status": "Closed"}, external_id=None, key_field="id"),
                               WriteItem("k3", {"Status": "Closed"}, external_id="5725767999999999999",
                                         key_field="id")])
    assert [r.status for r in res] == [WriteStatus.UPDATED, WriteStatus.FAILED, WriteStatus.FAILED]
    assert res[0].external_id == case and env.zoho.record("Cases", case)["Status"] == "Escalated"
    assert res[1].error is not None and res[1].error.code == "no_record_id"
    assert res[2].error is not None and res[2].error.code == "INVALID_DATA"
    assert env.zoho.count("Cases") == n, "no case created"
    assert env.zoho.requests_seen["PUT /crm/v8/Cases"] == 1, env.zoho.requests_seen
