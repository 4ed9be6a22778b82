"""Cases job end to end: Zoho CRM Cases (real HTTP) → the bank's complaint service simulator (real HTTP), one way,
on SQLite and PostgreSQL: a case reaches the bank once, under its party's canonical id, with its text in full (the
bank is a system of record); a case of a contact crmbridge never synced waits as a parent_not_synced letter; a
change is patched; re-runs add nothing; a dry run writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cases_world import add_case, complaints_world

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.engine import run_job

JOB = "zoho_cases_to_complaints"
SUMMARY = "客户来电投诉：理财产品销售时未充分揭示风险，要求赔偿。"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with complaints_world(request, tmp_path, monkeypatch, customers=12, seed=4) as w:
        yield w


def _case(env: DemoEnvironment, contact: str, **over: Any) -> str:
    return add_case(env, contact, SUMMARY, **over)


def test_cases_reach_the_complaint_service_once_under_their_party(world) -> None:  # type: ignore[no-untyped-def]
    env, bank, rt = world
    contacts = sorted(env.zoho.stores["Contacts"].records)
    stranger = env.zoho.add("Contacts", Last_Name="李", First_Name="四")   # an RM's own contact: no party yet
    mine = [_case(env, c) for c in contacts[:3]]
    orphan = _case(env, stranger, Type="Question", Priority="Low")

    plan = run_job(rt, JOB, dry_run=True)
    assert bank.count() == 0 and sum(1 for p in plan.plan if str(p.action) == "created") == 3

    first = run_job(rt, JOB)
    assert first.outcomes["created"] == 3 and first.outcomes["dead_lettered"] == 1, first.outcomes
    rows = list(bank.complaints.values())
    assert len(rows) == 3
    with rt.store.transaction(read_only=True) as tx:
        parties = {tx.get_xref("zoho_cn", "Contacts", c) for c in contacts[:3]}
        letters = tx.list_dead_letters(JOB, status=["open"], limit=10)
    assert {r["party_id"] for r in rows} == parties, "the bank knows the party by its canonical id"
    assert all(r["summary"] == SUMMARY and r["priority"] == "HIGH" and r["channel_code"] == "PHONE" for r in rows)
    assert [d["external_id"] for d in letters] == [orphan] and letters[0]["reason_code"] == "parent_not_synced"
    assert SUMMARY not in str(letters), "the letter's message holds no case text"

    again = run_job(rt, JOB)
    assert again.outcomes.get("created", 0) == 0 and bank.count() == 3, "no duplicates on re-run"

    env.zoho.touch("Cases", mine[0], Priority="Low")   # an RM lowers the priority: patched at the bank
    third = run_job(rt, JOB)
    assert third.outcomes.get("updated", 0) == 1, third.outcomes
    assert sorted(r["priority"] for r in bank.complaints.values()) == ["HIGH", "HIGH", "LOW"]
    assert bank.count() == 3
