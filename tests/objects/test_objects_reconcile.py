"""Reconcile for object jobs, over real SOAP/HTTP on SQLite and PostgreSQL: a holdings job (core accounts → the
Zoho holdings module) compared object by object through the cross-reference: complete after a run; a holding
changed in Zoho is *different* (the field named, never its value), one deleted in Zoho *missing* (under its
pseudonym: the account number is personal data), one carrying a key crmbridge never minted *extra*, one without a
key *unmanaged*; holdings whose owner is not in Zoho are counted apart, not missing. Closed holdings under
deactivate are compared in their deactivated form."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.reconcile import reconcile

JOB = "core_holdings_to_zoho"
BANDS = ("LT_50K", "50K_500K", "500K_6M", "6M_30M", "GE_30M")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with DemoEnvironment(tmp_path / "demo", customers=16, bad_fraction=0.0, seed=5, state_url=url) as env:
        rt = bootstrap(env.config_path)
        try:
            assert run_job(rt, "core_to_zoho").status == "succeeded"
            yield env, rt
        finally:
            rt.close()


def test_reconcile_compares_holdings_by_their_cross_reference(world) -> None:  # type: ignore[no-untyped-def]
    env, rt = world
    before = reconcile(rt, JOB)   # nothing synced yet: every holding with an owner in Zoho is missing
    assert before.missing and not before.complete and before.matched == 0

    run_job(rt, JOB)
    with rt.store.transaction(read_only=True) as tx:   # an account whose holding is in Zoho closes at the bank
        closing = next(a for a in sorted(env.core.accounts.numbers) if tx.xrefs_for_party(
            tx.get_xref("corebank", "Customer", env.core.accounts.get(a)["CUSTNO"]) or "", "zoho_cn", "Contacts"))
    env.core.accounts.change(closing, RECORD_STAT="C", CURBAL="0.00")
    assert run_job(rt, JOB).outcomes.get("deleted", 0) == 1
    rep = reconcile(rt, JOB)
    assert rep.complete, rep.as_dict()
    synced = list(env.zoho.stores["Holdings"].records)
    assert rep.matched == len(synced) >= 3
    assert rep.not_pushed.get("parent not synced (dead letters)", 0) >= 1, "accounts of owners not in Zoho"
    statuses = {r.get("Holding_Status") for r in env.zoho.stores["Holdings"].records.values()}
    assert "CLOSED" in statuses, "a closed holding is compared in its deactivated form"

    changed, deleted = synced[0], synced[1]
    rec = env.zoho.record("Holdings", changed)
    env.zoho.touch("Holdings", changed, Balance_Band=next(b for b in BANDS if b != rec["Balance_Band"]))
    env.zoho.stores["Holdings"].remove(deleted)
    stray = env.zoho.add("Holdings", Name="外来持仓", Holding_Key=str(uuid.uuid4()), Product_Type="DEPOSIT")
    own = env.zoho.add("Holdings", Name="客户经理手录", Product_Type="FUND")

    rep = reconcile(rt, JOB)
    assert not rep.complete
    with rt.store.transaction(read_only=True) as tx:
        oid = tx.get_xref("zoho_cn", "Holdings", changed)
        pseudonym = tx.xrefs_for_party(tx.get_xref("zoho_cn", "Holdings", deleted) or "", "corebank_accounts",
                                       "Account")
    assert rep.different == [oid] and rep.different_fields[oid] == ["Balance_Band"]
    assert rep.missing == [pseudonym[0][2]] and rep.missing[0].startswith("h:")
    assert rep.extra == [stray] and rep.unmanaged == [own]
    text = json.dumps(rep.as_dict())
    assert not any(acc in text for acc in env.core.accounts.numbers), "no account number in the report"
    assert "Balance_Band" in text


def test_reconcile_of_a_party_onto_object_job_is_refused(tmp_path: Path) -> None:
    from crmbridge.core.errors import ConfigurationError

    with DemoEnvironment(tmp_path / "demo", customers=3, bad_fraction=0.0, seed=5) as env:
        rt = bootstrap(env.config_path)
        try:
            job = rt.config.jobs[JOB]
            object.__setattr__(job, "target_mapping", "zoho_contacts.yaml")
            with pytest.raises(ConfigurationError, match="reconcile compares parties, or objects of one kind"):
                reconcile(rt, JOB)
        finally:
            rt.close()
