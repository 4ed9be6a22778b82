"""Recovery never overwrites what it did not see (issue 14, item 1).

A two-way run creates an account in Fxiaoke and is SIGKILLed before it records that (the create applied, the
process dies waiting for the reply); a relationship manager then corrects the account's e-mail, a field the CRM
owns. The next run finds the account by ``party_id__c``: it must merge the account as it is now with the core's
record, not write the core's projection over it. Real simulators, a real process kill at a deterministic point
(the simulator holds the create's reply back until the process is gone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crmbridge.adapters.base import WriteItem
from crmbridge.adapters.simulator import Fault
from crmbridge.sync.engine import RECOVERED, run_job
from crmbridge.sync.merge import ConflictPolicy, merge_unseen
from crmbridge.sync.report import COMPLETED
from crmbridge.sync.state.ledger import Action, Ledger
from crmbridge.sync.state.store import write_intents

JOB = "core_fxiaoke"
REPO = Path(__file__).resolve().parents[2]
EMAIL = "contact_points[type=EMAIL].value"
RM_EMAIL = "corrected.by.rm@example.com"


def _pending(rt: Any) -> list[dict[str, Any]]:
    with rt.store.transaction() as tx:
        return [dict(r) for r in tx.connection.execute(
            select(write_intents).where(write_intents.c.status == "pending")).mappings()]


def crash_after_first_create(env: Any, rt: Any, tmp_path: Path) -> dict[str, Any]:
    """Run the job in a process, let Fxiaoke apply its first create, and SIGKILL the process while it waits for
    the reply (nothing of the batch is recorded). Returns the Fxiaoke account the dead run left behind."""
    env.fxiaoke.knobs.timeout_delay = 3.0      # the reply is held back; the process is killed long before
    env.fxiaoke.inject_at("/data/create", Fault.TIMEOUT_AFTER_APPLY)
    out = (tmp_path / "killed-run.out").open("wb")
    p = subprocess.Popen([sys.executable, "-m", "crmbridge", "run", JOB, "--config", str(env.config_path), "--json"],
                         stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while not env.fxiaoke.records("AccountObj"):
            assert p.poll() is None, f"the run ended before its first create ({p.returncode})"
            assert time.monotonic() < deadline, "no create within 60 s"
            time.sleep(0.002)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
        out.close()
    (account,) = env.fxiaoke.records("AccountObj")
    with rt.store.transaction() as tx:   # applied at the target, recorded nowhere: only its intent is left
        assert tx.get_xref("fxiaoke", "AccountObj", account["_id"]) is None
    assert account["party_id__c"] in {i["key"] for i in _pending(rt)}
    return account


def rm_edit(rt: Any, external_id: str, **fields: str) -> None:
    """A relationship manager's edit in Fxiaoke, made through Fxiaoke's API."""
    (result,) = rt.adapter("fxiaoke").write("AccountObj", [WriteItem(key="rm", payload=fields,
                                                                     external_id=external_id)])
    assert result.status.value == "updated"


def custno_of_party(rt: Any, party_id: str) -> str:
    with rt.store.transaction() as tx:
        return tx.xrefs_for_party(party_id, "corebank", "Customer")[0][2]


def accounts_of(env: Any, party_id: str) -> list[dict[str, Any]]:
    return [r for r in env.fxiaoke.records("AccountObj") if r.get("party_id__c") == party_id]


def test_an_rm_edit_after_a_crashed_create_survives_the_recovery_and_reaches_core_banking(
        env, rt, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    account = crash_after_first_create(env, rt, tmp_path)
    pid = account["party_id__c"]
    custno = custno_of_party(rt, pid)   # the party's id was committed before the write, as designed
    assert env.core.store.get(custno)["email"] != RM_EMAIL
    rm_edit(rt, account["_id"], email=RM_EMAIL)

    report = run_job(rt, JOB)
    assert report.status in COMPLETED, report.error
    assert sum(report.outcomes.values()) == report.read
    # the RM's value survives in Fxiaoke, in one account, and flows to core banking (the CRM owns e-mail)
    (now,) = accounts_of(env, pid)
    assert now["_id"] == account["_id"] and now["email"] == RM_EMAIL
    assert env.core.store.get(custno)["email"] == RM_EMAIL
    assert not report.actions[Action.CONFLICT]
    # the recovery is in the ledger: the e-mail written back to the core, for this party, saying why
    with rt.store.transaction() as tx:
        entries = [e for e in Ledger(tx.connection).iter_entries(job=JOB) if e.get("party_id") == pid
                   and e["target_system"] == "corebank"]
        assert tx.xrefs_for_party(pid, "fxiaoke", "AccountObj")[0][2] == account["_id"]
    assert [e["action"] for e in entries] == [Action.UPDATED]
    assert EMAIL in entries[0]["changed_fields"] and entries[0]["reason"] == RECOVERED
    assert RM_EMAIL not in str(entries)   # masked in the ledger
    assert not _pending(rt)
    # settled: the next runs carry nothing and the e-mail stays
    again = run_job(rt, JOB)
    assert not again.actions[Action.UPDATED] and not again.actions[Action.CONFLICT]
    assert accounts_of(env, pid)[0]["email"] == RM_EMAIL and env.core.store.get(custno)["email"] == RM_EMAIL


def test_a_crashed_create_nobody_touched_is_recovered_without_a_write_back(
        env, rt, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    account = crash_after_first_create(env, rt, tmp_path)
    pid = account["party_id__c"]
    custno = custno_of_party(rt, pid)
    modno = int(env.core.store.get(custno)["modno"])
    report = run_job(rt, JOB)
    assert report.status in COMPLETED, report.error
    assert len(accounts_of(env, pid)) == 1 and not _pending(rt)
    assert int(env.core.store.get(custno)["modno"]) == modno   # nothing to carry back: the core is not written
    assert not report.actions[Action.CONFLICT]
    with rt.store.transaction() as tx:
        entries = [e for e in Ledger(tx.connection).iter_entries(job=JOB) if e.get("party_id") == pid]
    assert [e["target_system"] for e in entries] == ["fxiaoke"] and entries[0]["reason"] == RECOVERED
    again = run_job(rt, JOB)   # our recovery write comes back as an echo, nothing else
    assert not again.actions[Action.UPDATED] and not again.actions[Action.CONFLICT]


def test_an_rm_edit_of_a_golden_field_after_a_crashed_create_goes_through_the_jobs_policy(
        env, rt, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A value the target holds for a field the source owns is settled by the job's policy, as a field both sides
    changed: under source_of_truth the core's name (the golden record) wins, and that write is ledgered."""
    account = crash_after_first_create(env, rt, tmp_path)
    pid = account["party_id__c"]
    custno = custno_of_party(rt, pid)
    name = env.core.store.get(custno)["name"]
    rm_edit(rt, account["_id"], name="张三丰")
    report = run_job(rt, JOB)
    assert report.status in COMPLETED, report.error
    assert env.core.store.get(custno)["name"] == name
    (now,) = accounts_of(env, pid)
    assert now["name"] != "张三丰" and now["name"] == account["name"]   # the core's name, as the CRM shows it
    with rt.store.transaction() as tx:
        (entry,) = [e for e in Ledger(tx.connection).iter_entries(job=JOB) if e.get("party_id") == pid]
    assert entry["target_system"] == "fxiaoke" and "name.legal_zh" in entry["changed_fields"]
    assert "张三丰" not in str(entry)


# ---------------------------------------------------------------------------------------- merge_unseen
POLICY = ConflictPolicy(type="source_of_truth", owners={"contact_points*": "target", "name.*": "source"},
                        default_owner="source")


def seen(path: str) -> bool:
    return path.startswith(("contact_points", "name", "segment"))


def test_merge_unseen_keeps_what_the_target_owns_and_settles_the_rest_by_policy() -> None:
    source = {"name.legal_zh": "张三", EMAIL: "core@example.com", "segment.code": "MASS", "kyc.risk": "LOW"}
    target = {"name.legal_zh": "李四", EMAIL: "rm@example.com", "segment.code": "MASS"}
    r = merge_unseen(source, target, POLICY, seen=seen)
    assert r.merged[EMAIL] == "rm@example.com" and r.to_source == {EMAIL: "rm@example.com"}
    assert r.merged["name.legal_zh"] == "张三" and r.to_target["name.legal_zh"] == "张三"   # the owner wins
    assert "segment.code" not in r.to_source and r.merged["segment.code"] == "MASS"
    assert r.to_target["kyc.risk"] == "LOW" and not r.conflicts   # a field the target never shows is written


def test_merge_unseen_under_manual_review_leaves_the_target_value_in_place() -> None:
    manual = ConflictPolicy(type="manual", owners={"contact_points*": "target"})
    r = merge_unseen({"name.legal_zh": "张三"}, {"name.legal_zh": "李四"}, manual, seen=seen)
    assert [c.path for c in r.conflicts] == ["name.legal_zh"]
    assert r.merged["name.legal_zh"] == "李四" and not r.to_target and not r.to_source
