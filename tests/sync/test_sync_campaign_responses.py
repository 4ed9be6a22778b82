"""Campaign responses Zoho → core banking, end to end over the simulators (HTTP and SOAP on loopback), on SQLite and
PostgreSQL: an opt-out withdraws the marketing consent at the core and is ledgered with its legal basis."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sync_helpers import CUSTOMERS, SEED, custno

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.state.ledger import Action, Ledger

JOB = "zoho_responses"


def _ledger(rt: Any) -> tuple[list[dict[str, Any]], bool]:
    with rt.store.transaction() as tx:
        led = Ledger(tx.connection, rt.signer, cipher=rt.cipher)
        return list(led.iter_entries(job=JOB)), led.verify(rt.signer.public_key).ok


def _synced(env: DemoEnvironment, rt: Any) -> list[tuple[str, str, str]]:
    """(party id, core CIF number, Zoho contact id) of the parties the party job put in Zoho."""
    out = []
    with rt.store.transaction() as tx:
        for cid in env.zoho.stores["Contacts"].records:
            pid = tx.get_xref("zoho_cn", "Contacts", str(cid))
            if pid is not None:
                out.append((pid, tx.xrefs_for_party(pid, "corebank", "Customer")[0][2], str(cid)))
    return sorted(out)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_an_opt_out_withdraws_the_marketing_consent_at_the_core(tmp_path, request, backend) -> None:  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=0.1, seed=SEED, state_url=url) as env:
        rt = bootstrap(env.config_path)
        try:
            assert run_job(rt, "core_to_zoho").status in ("succeeded", "partial")
            synced = _synced(env, rt)
            opted = next(s for s in synced if env.core.store.get(s[1])["consent_email"] == "Y")
            other = next(s for s in synced if s != opted)
            before = dict(env.core.store.get(opted[1]))
            before_other = dict(env.core.store.get(other[1]))
            camp = env.zoho.add("Campaigns", Campaign_Name="春季理财节", Status="Active")
            env.zoho.relate(camp, opted[2], "Opted Out")
            env.zoho.relate(camp, other[2], "Responded")
            env.zoho.relate(camp, synced[-1][2] if synced[-1] not in (opted, other) else synced[-2][2], "Sent")

            plan = run_job(rt, JOB, dry_run=True)
            assert env.core.store.get(opted[1])["consent_email"] == "Y", "a dry run wrote to the core"
            withdrawal = [p for p in plan.plan if p.fields]
            assert [p.party_id for p in withdrawal] == [opted[0]]
            assert withdrawal[0].target_fields and "N" in {a for _b, a in withdrawal[0].target_fields.values()}

            report = run_job(rt, JOB)
            assert report.status == "succeeded", report.error
            assert report.outcomes["updated"] == 1 and report.outcomes["unchanged"] == 1
            assert report.outcomes["out_of_scope"] == 1
            after = env.core.store.get(opted[1])
            assert after["consent_email"] == "N"                     # the e-mail marketing consent is withdrawn
            assert after["consent_sms"] == before["consent_sms"]     # an e-mail opt-out leaves the SMS consent
            assert int(after["modno"]) == int(before["modno"]) + 1
            assert env.core.store.get(other[1]) == before_other      # interested: a preference, no consent touched

            entries, ok = _ledger(rt)
            assert ok
            withdrawn = [e for e in entries if e["action"] == str(Action.UPDATED)]
            assert len(withdrawn) == 1
            w = withdrawn[0]
            assert w["party_id"] == opted[0] and w["target_id"] == opted[1] and w["target_system"] == "corebank"
            assert "MARKETING_EMAIL" in w["reason"] and "PIPL13_1_CONSENT" in w["reason"]
            assert f"campaign {camp}" in w["reason"] and w["actor"]
            assert w["changed_fields"] == ["consents[purpose=MARKETING_EMAIL].status"]
            pref = [e for e in entries if e["action"] == str(Action.SKIPPED_UNCHANGED)]
            assert [e["party_id"] for e in pref] == [other[0]]
            assert "preference: INTERESTED" in pref[0]["reason"] and "consents untouched" in pref[0]["reason"]
            # masked: nothing of the person in clear in what the ledger holds
            text = json.dumps(entries, ensure_ascii=False, default=str)
            for value in (before.get("name"), before.get("mobile"), before.get("email"), before.get("uid")):
                if value:
                    assert str(value) not in text

            # a re-run does nothing: no write to the core, no ledger entry
            calls = env.core.store.get(opted[1])["modno"]
            again = run_job(rt, JOB)
            assert again.status == "succeeded" and again.api_calls.get("corebank", 0) == 0
            assert again.outcomes["unchanged"] == 2 and again.outcomes.get("updated", 0) == 0
            assert env.core.store.get(opted[1])["modno"] == calls
            assert len(_ledger(rt)[0]) == len(entries)
        finally:
            rt.close()


def test_a_response_of_an_unknown_party_is_a_dead_letter_retried_once_the_party_is_known(env, rt) -> None:  # type: ignore[no-untyped-def]
    run_job(rt, "core_to_zoho")
    # a party the core holds but Zoho does not (no CRM-sharing consent): a marketer keys it in Zoho by hand
    with rt.store.transaction() as tx:
        pid, cif = next((p, c) for c in (custno(i) for i in range(CUSTOMERS))
                        if (p := tx.get_xref("corebank", "Customer", c)) is not None
                        and not tx.xrefs_for_party(p, "zoho_cn", "Contacts")
                        and env.core.store.get(c) is not None and env.core.store.get(c)["consent_email"] == "Y")
    contact = env.zoho.add("Contacts", Last_Name="王", First_Name="小明")
    camp = env.zoho.add("Campaigns", Campaign_Name="理财周", Status="Active")
    env.zoho.relate(camp, contact, "Opted Out")
    for _pid, _cif, cid in _synced(env, rt)[:10]:   # ten known parties interested (the run is partial, not failed)
        env.zoho.relate(camp, cid, "Responded")

    first = run_job(rt, JOB)
    assert first.status == "partial" and first.outcomes["dead_lettered"] == 1, first.error
    with rt.store.transaction() as tx:
        letters = tx.list_dead_letters(JOB, status=["open"], limit=10)
    assert [(d["external_id"], d["reason_code"]) for d in letters] == [(f"{camp}:{contact}", "unknown_party")]
    assert env.core.store.get(cif)["consent_email"] == "Y"
    again = run_job(rt, JOB)   # the same record, unchanged: waits for the dead-letter schedule
    assert again.outcomes["deferred"] == 1 and again.outcomes.get("dead_lettered", 0) == 0

    # the marketer fills in the party's id; the dead letter falls due (as `deadletters retry` makes it)
    env.zoho.stores["Contacts"].records[contact]["Party_ID"] = pid   # as the marketer would, in Zoho's UI
    with rt.store.transaction() as tx:
        tx.mark_dead_letter(letters[0]["id"], "open", next_attempt_at=datetime.now(UTC))
    retried = run_job(rt, JOB)
    assert retried.status == "succeeded", retried.error
    assert retried.outcomes["updated"] == 1 and retried.outcomes["unchanged"] == 11   # + the retried one, re-read
    assert env.core.store.get(cif)["consent_email"] == "N"
    with rt.store.transaction() as tx:
        assert tx.list_dead_letters(JOB, status=["open"], limit=10) == []
    entries, ok = _ledger(rt)
    assert ok and [e["party_id"] for e in entries if e["action"] == str(Action.UPDATED)] == [pid]


@pytest.mark.slow
def test_a_run_killed_after_the_core_applied_the_withdrawal_is_recovered_once(env, rt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL after FLEXCUBE applied the consent update and before crmbridge recorded it (the core holds its reply
    back): the next run writes the same flag again (harmless), ledgers the withdrawal exactly once and settles the
    dead run's write intent."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from sqlalchemy import select

    from crmbridge.adapters.simulator import Fault
    from crmbridge.sync.state.store import write_intents

    run_job(rt, "core_to_zoho")
    opted = next(s for s in _synced(env, rt) if env.core.store.get(s[1])["consent_email"] == "Y")
    camp = env.zoho.add("Campaigns", Campaign_Name="年终回馈", Status="Active")
    env.zoho.relate(camp, opted[2], "Opted Out")

    env.core.knobs.timeout_delay = 2.0   # every core call is applied, then its reply held back
    env.core.inject(Fault.TIMEOUT_AFTER_APPLY, times=50)
    out = (tmp_path / "killed-run.out").open("wb")
    p = subprocess.Popen([sys.executable, "-m", "crmbridge", "run", JOB, "--config", str(env.config_path)],
                         stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2],
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 90
        while env.core.store.get(opted[1])["consent_email"] != "N":
            assert p.poll() is None, f"the run ended before the core applied the withdrawal ({p.returncode})"
            assert time.monotonic() < deadline, "no consent update within 90 s"
            time.sleep(0.002)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
        out.close()
        env.core.clear_faults()
    with rt.store.transaction() as tx:
        pending = [dict(r) for r in tx.connection.execute(
            select(write_intents).where(write_intents.c.job == JOB, write_intents.c.status == "pending")).mappings()]
    assert [i["key"] for i in pending] == [f"{camp}:{opted[2]}:MARKETING_EMAIL"]   # journaled before the call
    assert not [e for e in _ledger(rt)[0] if e["action"] == str(Action.UPDATED)]  # nothing recorded

    report = run_job(rt, JOB)
    assert report.status == "succeeded", report.error
    assert env.core.store.get(opted[1])["consent_email"] == "N"
    entries, ok = _ledger(rt)
    assert ok and [e["party_id"] for e in entries if e["action"] == str(Action.UPDATED)] == [opted[0]]
    with rt.store.transaction() as tx:
        left = tx.connection.execute(select(write_intents.c.id).where(
            write_intents.c.job == JOB, write_intents.c.status == "pending")).all()
        runs = tx.list_runs(JOB, limit=5)
    assert left == []
    assert "crashed" in {r["status"] for r in runs}
    assert run_job(rt, JOB).outcomes.get("updated", 0) == 0


def test_a_fxiaoke_campaign_member_opting_out_withdraws_the_consent_read_incrementally(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from crmbridge.adapters.base import WriteItem

    jobs = {
        "core_to_fx_contacts": {"source": "corebank.Customer", "target": "fxiaoke.ContactObj",
                                "source_mapping": "corebank_soap_customer.yaml",
                                "target_mapping": "fxiaoke_contactobj.yaml",
                                "consent_purpose": "SHARE_WITH_CRM_VENDOR", "match_rules": [["CN_RIC"]]},
        "fx_responses": {"source": "fxiaoke.CampaignMembersObj", "target": "corebank.Customer",
                         "source_mapping": "fxiaoke_campaign_members.yaml",
                         "target_mapping": "corebank_soap_consent.yaml"},
    }
    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=0.1, seed=SEED, jobs=jobs) as env:
        rt = bootstrap(env.config_path)
        try:
            assert run_job(rt, "core_to_fx_contacts").status in ("succeeded", "partial")
            with rt.store.transaction() as tx:
                linked = [(pid, tx.xrefs_for_party(pid, "corebank", "Customer")[0][2], cid)
                          for cid in env.fxiaoke.tables["ContactObj"].rows
                          if (pid := tx.get_xref("fxiaoke", "ContactObj", cid)) is not None]
            opted = next(s for s in sorted(linked) if env.core.store.get(s[1])["consent_email"] == "Y")
            other = next(s for s in sorted(linked) if s != opted)
            fx = rt.adapter("fxiaoke")   # the marketer's side, through the vendor API
            event = fx.write("MarketingEventObj", [WriteItem(key="c1", key_field="campaign_key__c", payload={
                "name": "春季理财节", "begin_time": 1772323200000})])[0].external_id
            fx.write("CampaignMembersObj", [
                WriteItem(key="m1", key_field="member_key__c", payload={
                    "marketing_event_id": event, "contact_id": opted[2], "campaign_members_status": "responded",
                    "opt_out__c": True}),
                WriteItem(key="m2", key_field="member_key__c", payload={
                    "marketing_event_id": event, "contact_id": other[2], "campaign_members_status": "converted"})])
            report = run_job(rt, "fx_responses")
            with rt.store.transaction() as tx:
                letters = tx.list_dead_letters("fx_responses", limit=10)
            assert report.status == "succeeded", [d["message"] for d in letters]
            assert report.outcomes["updated"] == 1 and report.outcomes["unchanged"] == 1
            assert env.core.store.get(opted[1])["consent_email"] == "N"
            with rt.store.transaction() as tx:
                led = Ledger(tx.connection, rt.signer, cipher=rt.cipher)
                entries = list(led.iter_entries(job="fx_responses"))
            assert [(e["action"], e["party_id"]) for e in entries] == [
                (str(Action.UPDATED), opted[0]), (str(Action.SKIPPED_UNCHANGED), other[0])]
            assert "preference: CONVERTED" in entries[1]["reason"]
            again = run_job(rt, "fx_responses")
            assert again.read == 0 or again.outcomes.get("updated", 0) == 0
            assert again.api_calls.get("corebank", 0) == 0
        finally:
            rt.close()
