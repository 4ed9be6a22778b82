"""Holdings jobs end to end: the core's FLEXCUBE account feed (real SOAP on loopback) → the Zoho simulator's custom
holdings module (real HTTP), on SQLite and PostgreSQL: parent before child, create / update / close → deactivate,
no duplicates on re-runs, dry runs write nothing, the holdings stored for the rules engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.engine import run_job

JOB = "core_holdings_to_zoho"
RULES = Path(__file__).resolve().parents[2] / "mappings" / "rules.yaml"
CUSTOMERS = 24


def holdings(env: DemoEnvironment) -> list[dict[str, Any]]:
    return list(env.zoho.stores["Holdings"].records.values())


def expected(env: DemoEnvironment, rt: Runtime) -> dict[str, str]:
    """Account number → the Zoho id of its owner's Contact, for every account whose owner is in Zoho."""
    out = {}
    with rt.store.transaction(read_only=True) as tx:
        for acc in env.core.accounts.numbers:
            custno = env.core.accounts.get(acc)["CUSTNO"]
            pid = tx.get_xref("corebank", "Customer", custno)
            linked = tx.xrefs_for_party(pid, "zoho_cn", "Contacts") if pid else []
            if linked:
                out[acc] = linked[0][2]
    return out


def by_account(env: DemoEnvironment) -> dict[str, dict[str, Any]]:
    return {r["Account_Number_Masked"][-4:]: r for r in holdings(env)}


def open_letters(rt: Runtime) -> list[dict[str, Any]]:
    with rt.store.transaction(read_only=True) as tx:
        return tx.list_dead_letters(JOB, status=["open"], limit=1000)


def _state_text(rt: Runtime) -> str:
    """Every row of every table of the state database, as text."""
    from sqlalchemy import MetaData, select

    md = MetaData()
    md.reflect(rt.store.engine)
    with rt.store.engine.connect() as conn:
        return "\n".join(str(tuple(row)) for t in md.sorted_tables for row in conn.execute(select(t)))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=0.0, seed=5, state_url=url) as env:
        rt = bootstrap(env.config_path)
        try:
            yield env, rt
        finally:
            rt.close()


def test_holdings_created_updated_closed_once_each(world) -> None:  # type: ignore[no-untyped-def]
    env, rt = world
    assert run_job(rt, "core_to_zoho").status == "succeeded"
    first = run_job(rt, JOB)
    want = expected(env, rt)
    assert want, "the seed must give some holdings an owner in Zoho"
    assert first.outcomes["created"] == len(want)
    got = holdings(env)
    assert len(got) == len(want), "each holding exactly once"
    assert len({r["Holding_Key"] for r in got}) == len(got)
    for acc, contact in want.items():
        row = by_account(env)[acc[-4:]]
        assert row["Contact"] == {"id": contact}, "the lookup names the owner's Contact"
        assert row["Holding_Status"] == "ACTIVE" and row["Product_Code"] in ("SAVIND", "TDIND", "CURCOR")
        assert acc not in str(row), "the account number reaches the CRM masked only"
        assert "CURBAL" not in str(row) and env.core.accounts.get(acc)["ACC_BAL"]["CURBAL"] not in str(row)
    # every account of an owner not in Zoho waits for it as a retryable dead letter
    letters = open_letters(rt)
    waiting = set(env.core.accounts.numbers) - set(want)
    assert len({d["external_id"] for d in letters}) == len(letters) == len(waiting)
    assert all(d["external_id"].startswith("h:") for d in letters), "an account number is kept as a pseudonym"
    assert {d["reason_code"] for d in letters} <= {"parent_not_synced"}

    # nothing changed: no write call, no duplicate
    again = run_job(rt, JOB)
    assert again.outcomes.get("created", 0) == 0 and again.outcomes.get("updated", 0) == 0
    assert again.api_calls["zoho_cn"] == 0, "an unchanged holding costs no write call"
    assert len(holdings(env)) == len(want)

    # a posting moves the balance two bands; a closure deactivates the holding (delete policy deactivate)
    posted, closed = sorted(want)[0], sorted(want)[1]
    env.core.accounts.change(posted, CURBAL="40000000.00")
    env.core.accounts.change(closed, RECORD_STAT="C", CURBAL="0.00")
    third = run_job(rt, JOB)
    assert third.outcomes["updated"] == 1 and third.outcomes["deleted"] == 1, third.outcomes
    rows = by_account(env)
    assert rows[posted[-4:]]["Balance_Band"] == "GE_30M" and rows[posted[-4:]]["Holding_Status"] == "ACTIVE"
    assert rows[closed[-4:]]["Holding_Status"] == "CLOSED" and rows[closed[-4:]]["Close_Date"]
    assert len(holdings(env)) == len(want), "deactivated, not deleted, not duplicated"
    assert run_job(rt, JOB).outcomes.get("deleted", 0) == 0, "a closure is applied once"

    # the holdings are stored for the rules engine, closed ones included, sealed
    with rt.store.transaction(read_only=True) as tx:
        owner = tx.get_xref("corebank", "Customer", env.core.accounts.get(closed)["CUSTNO"])
        mine = tx.holdings_of(owner, cipher=rt.cipher)
        entries = tx.ledger(rt.signer, cipher=rt.cipher).verify(rt.signer.public_key)
    assert any(h["status"] == "CLOSED" and h["account_number"] == closed for h in mine)
    assert all(h["party_id"] == owner for h in mine)
    assert entries.ok
    # an account number is personal data (C2): no table of the state database holds one in clear (the
    # cross-reference, cursor, dead letters and ledger carry its keyed pseudonym)
    dump = _state_text(rt)
    leaked = [acc for acc in env.core.accounts.numbers if acc in dump]
    assert not leaked, f"{len(leaked)} account numbers in clear in the state database"


def test_parent_before_child(world) -> None:  # type: ignore[no-untyped-def]
    env, rt = world
    early = run_job(rt, JOB)   # no Contact in Zoho yet: no holding may reach it
    assert holdings(env) == []
    assert early.outcomes["dead_lettered"] == len(env.core.accounts.numbers)
    assert {d["reason_code"] for d in open_letters(rt)} == {"parent_not_synced"}
    run_job(rt, "core_to_zoho")
    later = run_job(rt, JOB)   # the letters are due at once: retried now that the parents exist
    want = expected(env, rt)
    assert later.outcomes["created"] == len(want) == len(holdings(env))
    assert len(open_letters(rt)) == len(set(env.core.accounts.numbers) - set(want))   # pseudonymous ids
    assert all(r["Contact"] == {"id": want[a]} for a in want for r in holdings(env)
               if r["Account_Number_Masked"].endswith(a[-4:]))


def test_dry_run_writes_nothing(world) -> None:  # type: ignore[no-untyped-def]
    env, rt = world
    run_job(rt, "core_to_zoho")
    plan = run_job(rt, JOB, dry_run=True)
    want = expected(env, rt)
    assert plan.dry_run and holdings(env) == []
    assert sum(1 for p in plan.plan if str(p.action) == "created") == len(want)
    with rt.store.transaction(read_only=True) as tx:
        assert tx.get_cursor(JOB, "corebank_accounts.Account") is None
        assert all(tx.get_xref("corebank_accounts", "Account", a) is None for a in env.core.accounts.numbers)
    real = run_job(rt, JOB)
    assert real.outcomes["created"] == len(want) == len(holdings(env))


def test_rules_preview_reads_the_stored_holdings(tmp_path: Path) -> None:
    """``crmbridge rules preview --party`` derives from the holdings the job stored: a customer whose every account
    was closed is WIN_BACK and at churn risk (mappings/rules.yaml)."""
    from typer.testing import CliRunner

    from crmbridge.cli.main import app

    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=0.0, seed=5) as env:
        rt = bootstrap(env.config_path)
        try:
            run_job(rt, "core_to_zoho")
            run_job(rt, JOB)
            want = expected(env, rt)
            owners: dict[str, list[str]] = {}
            for acc in want:
                owners.setdefault(env.core.accounts.get(acc)["CUSTNO"], []).append(acc)
            custno, accs = max(owners.items(), key=lambda kv: len(kv[1]))
            for acc in accs:
                env.core.accounts.change(acc, RECORD_STAT="C", CURBAL="0.00")
            assert run_job(rt, JOB).outcomes["deleted"] == len(accs)
            with rt.store.transaction(read_only=True) as tx:
                pid = tx.get_xref("corebank", "Customer", custno)
        finally:
            rt.close()
        res = CliRunner().invoke(app, ["rules", "preview", str(RULES), "--party", pid,
                                       "--config", str(env.config_path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"{len(accs)} stored holding(s)" in res.output
    assert "WIN_BACK" in res.output and "churn_risk=true" in res.output
    assert not any(a in res.output for a in accs), "account numbers are masked in the preview"


@pytest.mark.parametrize(("change", "message"), [
    ({"parent": None}, "needs 'parent'"),
    ({"direction": "two_way"}, "run one way"),
])
def test_a_holdings_job_it_cannot_run_is_refused_before_it_starts(tmp_path: Path, change: dict[str, Any],
                                                                  message: str) -> None:
    import yaml

    from crmbridge.core.errors import ConfigurationError

    with DemoEnvironment(tmp_path / "demo", customers=3, bad_fraction=0.0, seed=5) as env:
        cfg = yaml.safe_load(env.config_path.read_text())
        cfg["jobs"][JOB].update(change)
        env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        rt = bootstrap(env.config_path)
        try:
            with pytest.raises(ConfigurationError, match=message):
                run_job(rt, JOB)
            with rt.store.transaction(read_only=True) as tx:
                assert tx.list_runs(JOB, limit=5) == [], "refused before a run was recorded"
        finally:
            rt.close()
