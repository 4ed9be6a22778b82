"""Durable erasure (PIPL Art. 47) end to end against the simulators (DemoEnvironment): an erased party is never
ingested or pushed again (one-way and two-way), the erasure reaches each CRM by the job's delete policy (also after
a crash between the CRM's answer and the commit), ``ledger history --identifier`` still finds it, and
``erase --lift`` is the deliberate way back (the person is ingested as a new party)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from crmbridge.adapters.simulator import Fault
from crmbridge.cli import erase_cmd, ledger_cmd
from crmbridge.cli.actor import os_actor
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.report import COMPLETED
from crmbridge.sync.state.ledger import Action, Ledger
from crmbridge.sync.state.store import erasure_keys

ONE_WAY, TWO_WAY = "core_to_zoho", "core_fxiaoke"
CUSTOMERS = 24


@pytest.fixture
def env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[DemoEnvironment]:
    monkeypatch.setenv("COLUMNS", "250")
    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=0.0, seed=5, state_url=db_url) as e:
        e.core.store.reseed(CUSTOMERS - 1)   # the last customer opens an account later (see the lift test)
        yield e


@pytest.fixture
def rt(env: DemoEnvironment) -> Iterator[Runtime]:
    runtime = bootstrap(env.config_path)
    yield runtime
    runtime.close()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        pass

    for mod in (erase_cmd, ledger_cmd):
        mod.register(app)
    try:
        app(list(argv), standalone_mode=False)
    except SystemExit as exc:   # ledger history exits 1 when it finds nothing
        assert not exc.code, capsys.readouterr()
    out = capsys.readouterr()
    return out.out + out.err


def run(rt: Runtime, job: str = ONE_WAY):  # type: ignore[no-untyped-def]
    report = run_job(rt, job)
    assert report.status in COMPLETED, (report.status, report.error)
    assert sum(report.outcomes.values()) == report.read
    return report


def entries(rt: Runtime, **filters: Any) -> list[dict[str, Any]]:
    with rt.store.transaction() as tx:
        return list(Ledger(tx.connection).iter_entries(**filters))


def party_of(rt: Runtime, custno: str) -> str | None:
    with rt.store.transaction() as tx:
        return tx.get_xref("corebank", "Customer", custno)


def synced_person(env: DemoEnvironment, rt: Runtime) -> tuple[str, str, str]:
    """(core customer number, party id, Zoho id) of an individual the first run pushed to Zoho."""
    for zid, rec in sorted(env.zoho.stores["Contacts"].records.items()):
        pid = rec["Party_ID"]
        with rt.store.transaction() as tx:
            custno = tx.xrefs_for_party(pid, "corebank", "Customer")[0][2]
        if env.core.store.get(custno)["mobile"]:
            return custno, pid, zid
    raise AssertionError("no synced individual")


def erase(capsys: pytest.CaptureFixture[str], env: DemoEnvironment, pid: str) -> str:
    return cli(capsys, "erase", pid, "-y", "-c", str(env.config_path), "--reason", "customer request 2026-118",
               "--actor", "user:dpo")


def set_policy(env: DemoEnvironment, rt: Runtime, job: str, policy: str) -> None:
    import yaml

    rt.config.jobs[job] = rt.config.jobs[job].model_copy(update={"delete_policy": policy})
    cfg = yaml.safe_load(env.config_path.read_text())
    cfg["jobs"][job]["delete_policy"] = policy
    env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


def pending(rt: Runtime) -> list[dict[str, Any]]:
    from sqlalchemy import select

    with rt.store.transaction() as tx:
        return [dict(r) for r in tx.connection.execute(select(erasure_keys).where(
            erasure_keys.c.kind == "target")).mappings()]


# ------------------------------------------------------------------------------------------------ one-way


def test_an_erased_party_is_never_ingested_or_pushed_again_and_its_crm_record_is_anonymised(
        env, rt, capsys) -> None:  # type: ignore[no-untyped-def]
    run(rt)
    custno, pid, zid = synced_person(env, rt)
    ric = env.core.store.get(custno)["id_number"]
    contacts = len(env.zoho.stores["Contacts"].records)
    job = rt.config.jobs[ONE_WAY]
    with rt.store.transaction() as tx:   # the keyed hash of the core record as the job read it
        assert tx.get_read_hash(ONE_WAY, job.source_system, job.source_object, custno) is not None
    out = erase(capsys, env, pid)
    assert "zoho_cn.Contacts/" + zid in out and "fxiaoke" not in out   # synced to Zoho only so far
    with rt.store.transaction() as tx:   # erased with the party's other rows
        assert tx.get_read_hash(ONE_WAY, job.source_system, job.source_object, custno) is None

    env.core.store.touch(custno, segment="PRIVATE")   # the core changes the customer after the erasure
    dry = run_job(rt, ONE_WAY, dry_run=True)          # plans the same, carries nothing out
    assert dry.outcomes["suppressed"] == 1 and any("1 erasure(s) to propagate" in w for w in dry.warnings)
    assert env.zoho.stores["Contacts"].records[zid]["Lifecycle_Stage"] != "CLOSED"
    report = run(rt)
    # no re-ingestion, no push: the record is suppressed and ledgered as such
    assert report.outcomes["suppressed"] == 1 and not report.outcomes["created"] and not report.outcomes["updated"]
    assert party_of(rt, custno) == pid                              # no new party minted
    (sup,) = [e for e in entries(rt, run_id=report.run_id) if e["source_id"] == custno]
    assert sup["action"] == Action.SUPPRESSED_ERASED == "suppressed-erased" and sup["party_id"] == pid
    assert "PIPL Art. 47" in sup["reason"]
    # the erasure reached Zoho by the job's delete policy (deactivate): closed and emptied, not pushed again
    rec = env.zoho.stores["Contacts"].records[zid]
    assert rec["Lifecycle_Stage"] == "CLOSED" and rec["Last_Name"] == "已**"
    assert rec.get("Mobile") is None and rec.get("ID_Number_Masked") is None and rec.get("AUM_Band") is None
    assert len(env.zoho.stores["Contacts"].records) == contacts     # nothing created
    (deact,) = [e for e in entries(rt, run_id=report.run_id) if e["action"] == "deleted"]
    assert deact["party_id"] == pid and deact["target_id"] == zid and "anonymised" in deact["reason"]
    assert [k["propagation"] for k in pending(rt)] == ["deactivated"]

    # the core changes the customer again: still suppressed, ledgered again; Zoho untouched
    modified = rec["Modified_Time"]
    env.core.store.touch(custno, segment="MASS")
    again = run(rt)
    assert again.outcomes["suppressed"] == 1 and not again.outcomes["created"] + again.outcomes["updated"]
    assert [e["action"] for e in entries(rt, run_id=again.run_id) if e["party_id"] == pid] == ["suppressed-erased"]
    assert env.zoho.stores["Contacts"].records[zid]["Modified_Time"] == modified
    # an unchanged re-read (a full scan) is suppressed without a second entry for the same version
    with rt.store.transaction() as tx:
        tx.connection.execute(__import__("sqlalchemy").text("DELETE FROM cursors"))
    full = run(rt)
    assert full.outcomes["suppressed"] == 1
    assert not [e for e in entries(rt, run_id=full.run_id) if e["party_id"] == pid]

    # reconcile accounts for the erased party as not pushed on purpose, not as a difference
    from crmbridge.sync.reconcile import ERASED, reconcile

    rec_report = reconcile(rt, ONE_WAY)
    assert rec_report.not_pushed.get(ERASED) == 1 and zid not in rec_report.extra + rec_report.missing
    assert pid not in rec_report.different and custno not in rec_report.missing
    # the history is still found by identifier (blind index), erasure included; the ledger verifies
    hist = cli(capsys, "ledger", "history", "--identifier", f"CN_RIC:{ric}", "-c", str(env.config_path))
    assert pid in hist and "erased" in hist and "suppressed-erased" in hist and ric not in hist
    with rt.store.transaction() as tx:
        assert Ledger(tx.connection).verify(rt.signer.public_key).ok   # type: ignore[union-attr]


def test_delete_policy_propagate_deletes_the_crm_record(env, rt, capsys) -> None:  # type: ignore[no-untyped-def]
    run(rt)
    custno, pid, zid = synced_person(env, rt)
    set_policy(env, rt, ONE_WAY, "propagate")
    erase(capsys, env, pid)
    report = run(rt)
    assert zid not in env.zoho.stores["Contacts"].records          # deleted (Zoho's recycle bin)
    (gone,) = [e for e in entries(rt, run_id=report.run_id) if e["party_id"] == pid]
    assert gone["action"] == "deleted" and "deleted at the target" in gone["reason"]
    assert [k["propagation"] for k in pending(rt)] == ["deleted"]
    env.core.store.touch(custno, segment="PRIVATE")
    after = run(rt)
    assert after.outcomes["suppressed"] == 1 and not after.outcomes["created"]
    assert all(r["Party_ID"] != pid for r in env.zoho.stores["Contacts"].records.values())


# ------------------------------------------------------------------------------------------------ two-way


def test_the_two_way_job_records_suppressed_erased_instead_of_skipping_silently(
        env, rt, capsys) -> None:  # type: ignore[no-untyped-def]
    run(rt, TWO_WAY)
    run(rt, TWO_WAY)   # the CRM's echo of our creates
    fx = {r["_id"]: r for r in env.fxiaoke.records("AccountObj")}
    fx_id, rec = next((i, r) for i, r in sorted(fx.items()) if r.get("party_type__c") == "INDIVIDUAL")
    pid = rec["party_id__c"]
    with rt.store.transaction() as tx:
        custno = tx.xrefs_for_party(pid, "corebank", "Customer")[0][2]
    erase(capsys, env, pid)
    first = run(rt, TWO_WAY)
    now = next(r for r in env.fxiaoke.records("AccountObj") if r["_id"] == fx_id)
    assert now["lifecycle__c"] == "CLOSED" and now["name"] == "已**" and not now.get("mobile_masked__c")
    assert any(e["action"] == "deleted" and e["party_id"] == pid for e in entries(rt, run_id=first.run_id))

    run(rt, TWO_WAY)   # reads our anonymising write back from Fxiaoke: an erased party's, not merged
    stamp = next(r for r in env.fxiaoke.records("AccountObj") if r["_id"] == fx_id)["last_modified_time"]
    env.core.store.touch(custno, segment="PRIVATE")
    report = run(rt, TWO_WAY)
    assert report.outcomes["suppressed"] >= 1 and not report.outcomes["updated"] + report.outcomes["created"]
    mine = [e for e in entries(rt, run_id=report.run_id) if e["party_id"] == pid]
    assert any(e["action"] == "suppressed-erased" and e["source_system"] == "corebank"
               and e["source_id"] == custno for e in mine)
    assert {e["action"] for e in mine} == {"suppressed-erased"}
    assert next(r for r in env.fxiaoke.records("AccountObj") if r["_id"] == fx_id)["last_modified_time"] == stamp


# ------------------------------------------------------------------------------------------------ lift


def test_a_returning_customer_is_suppressed_until_the_erasure_is_lifted_then_ingested_as_a_new_party(
        env, rt, capsys) -> None:  # type: ignore[no-untyped-def]
    run(rt)
    custno, pid, zid = synced_person(env, rt)
    person = env.core.store.get(custno)
    erase(capsys, env, pid)
    run(rt)
    # the same person opens a new account under a new customer number: found by the blind index, suppressed
    env.core.store.reseed(CUSTOMERS)
    newno = env.core.store.custno(CUSTOMERS - 1)
    env.core.store.touch(newno, **{k: v for k, v in person.items() if k not in (
        "custno", "record_stat", "auth_stat", "modno", "stamp", "maker", "maker_stamp", "checker", "created")})
    report = run(rt)
    assert report.outcomes["suppressed"] == 1 and party_of(rt, newno) is None
    (sup,) = [e for e in entries(rt, run_id=report.run_id) if e["source_id"] == newno]
    assert sup["action"] == "suppressed-erased" and sup["party_id"] == pid
    assert all(r["Party_ID"] != pid or r["id"] == zid for r in env.zoho.stores["Contacts"].records.values())

    # lifted on purpose, by identifier, with a reason and the actor in the ledger
    out = cli(capsys, "erase", "--lift", "--identifier", f"CN_RIC:{person['id_number']}", "--reason",
              "new account opened, ticket 4711", "--actor", "user:dpo", "-y", "-c", str(env.config_path))
    assert pid in out and person["id_number"] not in out
    (lifted,) = [e for e in entries(rt, party_ids=[pid]) if e["action"] == "erasure-lifted"]
    # the operating-system user and host decided; --actor is the annotation beside them
    assert (lifted["actor"], lifted["actor_note"]) == (os_actor(), "user:dpo")
    assert lifted["reason"] == "new account opened, ticket 4711"

    # the next run ingests the person (both customer numbers: one identity) as a NEW party and pushes it
    after = run(rt)
    new_pid = party_of(rt, newno)
    assert new_pid is not None and new_pid != pid and party_of(rt, custno) == new_pid
    assert after.outcomes["created"] == 1 and after.outcomes["suppressed"] == 0
    pushed = [r for r in env.zoho.stores["Contacts"].records.values() if r["Party_ID"] == new_pid]
    assert len(pushed) == 1 and pushed[0]["Lifecycle_Stage"] != "CLOSED"
    # the old CRM record stays as the erasure left it; the erased history stays with the erased party id
    assert env.zoho.stores["Contacts"].records[zid]["Last_Name"] == "已**"
    assert not [e for e in entries(rt, party_ids=[new_pid]) if e["action"] in ("erased", "suppressed-erased")]
    # a lift is deliberate: there is nothing left to lift, and a lift without a reason is refused
    from crmbridge.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="no erasure in force"):
        cli(capsys, "erase", "--lift", pid, "--reason", "again", "-y", "-c", str(env.config_path))
    with pytest.raises(ConfigurationError, match="needs a reason"):
        cli(capsys, "erase", "--lift", pid, "-y", "-c", str(env.config_path))


def test_a_refused_propagation_is_ledgered_warned_and_done_by_the_next_run(env, rt, capsys) -> None:  # type: ignore[no-untyped-def]
    run(rt)
    custno, pid, zid = synced_person(env, rt)
    erase(capsys, env, pid)
    env.zoho.inject(Fault.SERVER_ERROR, times=5, path="/crm/v8/Contacts/upsert")   # every retry of the write
    report = run(rt)
    assert any(f"{pid} did not reach zoho_cn.Contacts/{zid}" in w for w in report.warnings)
    (failed,) = [e for e in entries(rt, run_id=report.run_id) if e["party_id"] == pid]
    assert failed["action"] == "failed" and "not propagated" in failed["reason"]
    assert [k["propagation"] for k in pending(rt)] == ["pending"]
    assert env.zoho.stores["Contacts"].records[zid]["Lifecycle_Stage"] != "CLOSED"
    env.zoho.clear_faults()
    after = run(rt)
    assert [e["action"] for e in entries(rt, run_id=after.run_id) if e["party_id"] == pid] == ["deleted"]
    assert env.zoho.stores["Contacts"].records[zid]["Lifecycle_Stage"] == "CLOSED"
    assert [k["propagation"] for k in pending(rt)] == ["deactivated"]


# ------------------------------------------------------------------------------------------------ crash safety


@pytest.mark.slow   # slow tier: a crash mid-propagation, on both databases
@pytest.mark.parametrize("policy", ["deactivate", "propagate"])
def test_a_crash_between_the_crms_answer_and_the_commit_leaves_the_propagation_pending_then_done(
        env, rt, capsys, policy: str) -> None:  # type: ignore[no-untyped-def]
    run(rt)
    custno, pid, zid = synced_person(env, rt)
    set_policy(env, rt, ONE_WAY, policy)
    erase(capsys, env, pid)
    contacts = len(env.zoho.stores["Contacts"].records)
    # the CRM applies the call, then its answer stalls: the run is killed before it can record anything
    env.zoho.knobs.timeout_delay = 60
    path = "/crm/v8/Contacts/upsert" if policy == "deactivate" else "/crm/v8/Contacts"
    env.zoho.inject(Fault.TIMEOUT_AFTER_APPLY, path=path)
    child = subprocess.Popen([sys.executable, "-m", "crmbridge", "run", ONE_WAY, "-c", str(env.config_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rec = env.zoho.stores["Contacts"].records.get(zid)
            if rec is None or rec.get("Lifecycle_Stage") == "CLOSED":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the CRM never received the erasure")
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    env.zoho.clear_faults()
    env.zoho.knobs.timeout_delay = 0.1
    assert [k["propagation"] for k in pending(rt)] == ["pending"]        # nothing was recorded
    assert not [e for e in entries(rt, party_ids=[pid]) if e["action"] == "deleted"]

    report = run(rt)   # takes over the dead run's lease; repeats the propagation harmlessly
    (done,) = [e for e in entries(rt, party_ids=[pid]) if e["action"] == "deleted"]
    assert done["run_id"] == report.run_id
    assert [k["propagation"] for k in pending(rt)] == (["deactivated"] if policy == "deactivate" else ["gone"])
    assert len(env.zoho.stores["Contacts"].records) == contacts - (policy == "propagate")
    assert all(r["Party_ID"] != pid or r["id"] == zid for r in env.zoho.stores["Contacts"].records.values())


# ------------------------------------------------------------------------------------------------ distributed


class _ThreadWorker:
    """Stands in for Celery's transport: ``send_task`` queues a batch id, a thread with its own runtime runs it
    through crmbridge's own worker step (as tests/distributed/test_distributed_parties.py does)."""

    def __init__(self, config_path: Path) -> None:
        import queue
        import threading
        import types

        self.conf = types.SimpleNamespace(crmbridge_queue="in-process")
        self.queue: queue.Queue[int | None] = queue.Queue()
        self.errors: list[BaseException] = []
        self.rt = bootstrap(config_path, migrate=False)
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def send_task(self, name: str, args: list[Any], **_: Any) -> None:
        self.queue.put(args[0])

    def _work(self) -> None:
        from crmbridge.sync.runners.distributed import process_batch

        while (batch_id := self.queue.get()) is not None:
            try:
                process_batch(self.rt, batch_id, worker="t0")
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=30)
        self.rt.close()


@pytest.mark.postgres
def test_distributed_runs_suppress_and_propagate_as_a_single_process_does(tmp_path, pg_url, capsys,
                                                                        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from crmbridge.sync.runners.distributed import dispatch

    monkeypatch.setenv("COLUMNS", "250")
    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=0.0, seed=5, state_url=pg_url) as env:
        data = yaml.safe_load(env.config_path.read_text(encoding="utf-8"))
        data["jobs"][ONE_WAY]["batch_size"] = 5
        data["distributed"] = {"broker_url": "redis://127.0.0.1:6379/15", "batch_timeout_seconds": 5,
                               "lock_timeout_seconds": 30, "wait_timeout_seconds": 60}
        env.config_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        rt = bootstrap(env.config_path)
        pool = _ThreadWorker(env.config_path)
        try:
            assert dispatch(rt, ONE_WAY, app=pool, poll_seconds=0.05).status in COMPLETED
            custno, pid, zid = synced_person(env, rt)
            erase(capsys, env, pid)
            env.core.store.touch(custno, segment="PRIVATE")
            report = dispatch(rt, ONE_WAY, app=pool, poll_seconds=0.05)
        finally:
            pool.close()
        assert not pool.errors, pool.errors
        assert report.status in COMPLETED, report.error
        assert report.outcomes["suppressed"] == 1 and not report.outcomes["updated"] + report.outcomes["created"]
        mine = {e["action"] for e in entries(rt, run_id=report.run_id) if e["party_id"] == pid}
        assert mine == {"suppressed-erased", "deleted"}
        assert env.zoho.stores["Contacts"].records[zid]["Lifecycle_Stage"] == "CLOSED"
        assert party_of(rt, custno) == pid
        rt.close()
