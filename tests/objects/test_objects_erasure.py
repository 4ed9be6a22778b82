"""Erasure reaching objects (PIPL Art. 47), over real SOAP/HTTP on SQLite and PostgreSQL: ``crmbridge erase``
of a party whose holdings are in Zoho records its holdings' vendor records too; the next holdings run anonymises
them in Zoho (delete policy deactivate: fields emptied, the Contact lookup cut, status CLOSED) or deletes them
(propagate), once; the stored holdings are shredded (sealed under the destroyed party key: rows gone, none readable);
a later change of an erased party's account at the bank is suppressed, never pushed again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from crmbridge.cli import erase_cmd
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.engine import run_job

JOB = "core_holdings_to_zoho"


def erase(capsys: pytest.CaptureFixture[str], env: DemoEnvironment, pid: str) -> str:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        pass

    erase_cmd.register(app)
    app(["erase", pid, "-y", "-c", str(env.config_path), "--reason", "customer request 2026-211",
         "--actor", "user:dpo"], standalone_mode=False)
    out = capsys.readouterr()
    return out.out + out.err


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with DemoEnvironment(tmp_path / "demo", customers=16, bad_fraction=0.0, seed=5, state_url=url) as env:
        yield env


def _start(env: DemoEnvironment, policy: str) -> Runtime:
    cfg = yaml.safe_load(env.config_path.read_text())
    cfg["jobs"][JOB]["delete_policy"] = policy
    env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    rt = bootstrap(env.config_path)
    assert run_job(rt, "core_to_zoho").status == "succeeded"
    run_job(rt, JOB)
    return rt


def _owner_with_holdings(env: DemoEnvironment, rt: Runtime) -> tuple[str, list[str], list[str]]:
    """(party id, its holdings' Zoho ids, its account numbers) of a party with holdings in Zoho."""
    with rt.store.transaction(read_only=True) as tx:
        for _zid, rec in sorted(env.zoho.stores["Holdings"].records.items()):
            pid = tx.get_xref("zoho_cn", "Contacts", rec["Contact"]["id"])
            if pid is None:
                continue
            zids = [z for z, r in env.zoho.stores["Holdings"].records.items() if r.get("Contact") == rec["Contact"]]
            custno = tx.xrefs_for_party(pid, "corebank", "Customer")[0][2]
            accs = [a for a in env.core.accounts.numbers if env.core.accounts.get(a)["CUSTNO"] == custno]
            return pid, zids, accs
    raise AssertionError("no holding with an owner")


def _stored(rt: Runtime, pid: str) -> list[Any]:
    with rt.store.transaction(read_only=True) as tx:
        return tx.object_ids_of_party(pid)


def test_erasure_anonymises_the_holdings_and_shreds_the_stored_ones(world, capsys) -> None:  # type: ignore[no-untyped-def]
    env = world
    rt = _start(env, "deactivate")
    try:
        pid, zids, accs = _owner_with_holdings(env, rt)
        assert _stored(rt, pid), "the holdings job stored them for the rules"
        others = {z: env.zoho.record("Holdings", z) for z in env.zoho.stores["Holdings"].records if z not in zids}

        out = erase(capsys, env, pid)
        assert all(f"zoho_cn.Holdings/{z}" in out for z in zids), out
        assert _stored(rt, pid) == [], "the stored holdings are shredded"
        with rt.store.transaction(read_only=True) as tx:
            assert tx.holdings_of(pid, cipher=rt.cipher) == []

        run = run_job(rt, JOB)
        assert run.status in ("succeeded", "partial"), run.error
        for z in zids:
            rec = env.zoho.record("Holdings", z)
            assert rec is not None and rec["Holding_Status"] == "CLOSED", rec
            assert not rec.get("Contact") and not rec.get("Party_ID") and not rec.get("Account_Number_Masked"), rec
        for z, before in others.items():   # nobody else's holding is touched
            assert env.zoho.record("Holdings", z)["Modified_Time"] == before["Modified_Time"]
        n = env.zoho.count("Holdings")

        env.core.accounts.change(accs[0], CURBAL="123456.78")   # the erased customer's account moves at the bank
        again = run_job(rt, JOB)
        assert again.outcomes.get("suppressed", 0) >= 1, again.outcomes
        assert again.outcomes.get("updated", 0) == 0 and again.outcomes.get("created", 0) == 0, again.outcomes
        assert env.zoho.count("Holdings") == n
        assert all(env.zoho.record("Holdings", z)["Holding_Status"] == "CLOSED" for z in zids)
        assert _stored(rt, pid) == [], "nothing of the erased party is stored again"
    finally:
        rt.close()


def test_erasure_deletes_the_holdings_under_propagate(world, capsys) -> None:  # type: ignore[no-untyped-def]
    env = world
    rt = _start(env, "propagate")
    try:
        pid, zids, _ = _owner_with_holdings(env, rt)
        n = env.zoho.count("Holdings")
        erase(capsys, env, pid)
        run_job(rt, JOB)
        assert all(env.zoho.record("Holdings", z) is None for z in zids)
        assert env.zoho.count("Holdings") == n - len(zids)
        run_job(rt, JOB)   # once: nothing is created again
        assert env.zoho.count("Holdings") == n - len(zids)
    finally:
        rt.close()


def test_erasure_keeps_the_complaint_at_the_bank_and_suppresses_the_case(world, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The complaint service is a bank system of record: an erased party's complaint is retained there (ledgered,
    nothing sent), and a later change of the party's case in Zoho is suppressed, never sent."""
    from crmbridge.adapters.complaints.simulator import ComplaintSimulator
    from crmbridge.adapters.simulator import Knobs

    env = world
    with ComplaintSimulator(Knobs(records=0)) as bank:
        monkeypatch.setenv("CRMBRIDGE_TEST_COMPLAINTS_KEY", bank.api_key)
        cfg = yaml.safe_load(env.config_path.read_text())
        cfg["systems"]["complaints"] = {"adapter": "complaints", "base_url": f"{bank.url}/api/v1",
                                        "api_key": "env:CRMBRIDGE_TEST_COMPLAINTS_KEY", "source_system": "ZOHO"}
        cfg["jobs"]["cases"] = {"source": "zoho_cn.Cases", "target": "complaints.complaints",
                                "source_mapping": "zoho_cases.yaml", "target_mapping": "complaints.yaml",
                                "parent": {"source": "zoho_cn.Contacts"}, "max_failed_ratio": 1.0}
        env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        rt = bootstrap(env.config_path)
        try:
            assert run_job(rt, "core_to_zoho").status == "succeeded"
            contact = sorted(env.zoho.stores["Contacts"].records)[0]
            case = env.zoho.add("Cases", Subject="理财投诉", Related_To={"id": contact}, Type="Problem",
                                Case_Origin="Phone", Priority="High", Status="New", Description="风险揭示不充分")
            assert run_job(rt, "cases").outcomes["created"] == 1
            with rt.store.transaction(read_only=True) as tx:
                pid = tx.get_xref("zoho_cn", "Contacts", contact)
            (complaint,) = bank.complaints.values()
            before = dict(complaint)

            out = erase(capsys, env, pid or "")
            assert f"complaints.complaints/{complaint['complaint_id']}" in out, out
            env.zoho.touch("Cases", case, Priority="Low")   # the erased customer's case changes in Zoho
            sent = sum(n for k, n in bank.requests_seen.items() if k.startswith(("PATCH", "POST")))
            run = run_job(rt, "cases")
            assert run.outcomes.get("suppressed", 0) == 1, run.outcomes
            assert sum(n for k, n in bank.requests_seen.items() if k.startswith(("PATCH", "POST"))) == sent
            assert bank.complaints[complaint["complaint_id"]] == before, "the regulatory record is kept as it was"
            with rt.store.transaction(read_only=True) as tx:
                assert tx.pending_propagations("complaints", "complaints") == []
        finally:
            rt.close()
