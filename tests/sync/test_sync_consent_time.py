"""Consent is judged by the consent data, not by clocks (issue 14, item 3).

Core banking's flag carries no capture time, so the mapping dates the consent by the record's modification stamp,
which the core's own clock made. A core whose clock runs 10 minutes ahead must not turn every changed customer
into ``skipped-no-consent`` (with the run saying succeeded and the CRM kept stale); the run measures how far ahead
the core's stamps are and says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from sync_helpers import expected_in_zoho

from crmbridge.canonical.model import parse_party
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.reconcile import reconcile
from crmbridge.sync.state.ledger import Action, Ledger

JOB = "core_to_zoho"
AHEAD = 600   # the core's clock, ten minutes ahead of this host's


@pytest.fixture
def skewed_rt(env: DemoEnvironment) -> Iterator[Runtime]:
    # PasswordText: a PasswordDigest's Created would be refused by a core this far off (wsse:MessageExpired)
    cfg = yaml.safe_load(env.config_path.read_text())
    cfg["systems"]["corebank"]["wsse_digest"] = False
    env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    runtime = bootstrap(env.config_path)
    yield runtime
    runtime.close()


def zoho_row(env: DemoEnvironment, rt: Runtime, no: str) -> dict[str, Any] | None:
    with rt.store.transaction() as tx:
        pid = tx.get_xref("corebank", "Customer", no)
    rows = env.zoho.find("Contacts", "Party_ID", pid) if pid else []
    return dict(rows[0]) if rows else None


def test_a_core_clock_ten_minutes_ahead_still_pushes_every_consented_change_and_says_so(
        env: DemoEnvironment, skewed_rt: Runtime) -> None:
    rt = skewed_rt
    first = run_job(rt, JOB)
    assert first.status in ("succeeded", "partial"), first.error
    assert not first.clock_ahead_seconds   # seeded stamps are in the past: nothing ahead
    # a customer withdraws (clocks agreeing), then grants consent again at a core running ten minutes ahead
    regrant = sorted(expected_in_zoho())[-1]
    env.core.store.touch(regrant, consent_crm="N")
    assert run_job(rt, JOB).actions[Action.SKIPPED_NO_CONSENT] == 1
    env.core.clock_offset_seconds = AHEAD
    env.core.store.touch(regrant, consent_crm="Y", email="back@example.com")
    stale = zoho_row(env, rt, regrant)
    changed = sorted(expected_in_zoho())[:8]
    before = {no: zoho_row(env, rt, no) for no in changed}
    for n, no in enumerate(changed):
        env.core.store.touch(no, email=f"moved{n}@example.com", segment="PRIVATE")
    report = run_job(rt, JOB)
    assert report.status in ("succeeded", "partial"), report.error
    assert report.actions[Action.UPDATED] == len(changed) + 1
    assert not report.actions[Action.SKIPPED_NO_CONSENT] and not report.outcomes["no_consent"]
    for no in changed:
        assert zoho_row(env, rt, no) != before[no], f"customer {no} kept stale in the CRM"
    assert zoho_row(env, rt, regrant) != stale
    # the skew is measured and reported: in the report, its counts kept on the run, and a warning
    assert AHEAD - 60 < report.clock_ahead_seconds["corebank"] < AHEAD + 60
    assert report.as_dict()["clock_ahead_seconds"]["corebank"] == report.clock_ahead_seconds["corebank"]
    assert report.counts()["clock_ahead_seconds"]["corebank"] == report.clock_ahead_seconds["corebank"]
    (warning,) = [w for w in report.warnings if "clock skew" in w]
    assert "corebank" in warning and "ahead" in warning
    with rt.store.transaction() as tx:
        (run,) = [r for r in tx.list_runs(JOB, limit=1)]
        skipped = [e for e in Ledger(tx.connection).iter_entries(job=JOB, run_id=report.run_id)
                   if e["action"] == Action.SKIPPED_NO_CONSENT]
    assert "clock skew" in (run["error_summary"] or "") and not skipped
    # reconcile agrees: the consented customers are in the CRM as they are in the core, nothing extra
    rep = reconcile(rt, JOB)
    assert rep.complete and not rep.extra and "no consent" not in rep.not_pushed


def test_a_withdrawal_stamped_ahead_of_our_clock_is_honoured(env: DemoEnvironment, skewed_rt: Runtime) -> None:
    rt = skewed_rt
    run_job(rt, JOB)
    env.core.clock_offset_seconds = AHEAD
    no = sorted(expected_in_zoho())[0]
    before = zoho_row(env, rt, no)
    env.core.store.touch(no, consent_crm="N", email="after.withdrawal@example.com")
    report = run_job(rt, JOB)
    assert report.actions[Action.SKIPPED_NO_CONSENT] == 1 and report.outcomes["no_consent"] == 1
    assert zoho_row(env, rt, no) == before   # nothing more is shared after the withdrawal


def test_consent_is_decided_by_the_latest_record_whatever_our_clock_says() -> None:
    from datetime import UTC, datetime, timedelta

    soon = datetime.now(UTC) + timedelta(minutes=10)   # stamped by a clock running ahead
    person = {"party_type": "INDIVIDUAL", "name": {"legal_zh": "张三", "family_zh": "张", "given_zh": "三"},
              "identifiers": [{"scheme": "CN_RIC", "value": "11010519491231002X", "is_primary": True}]}
    granted = parse_party({**person, "consents": [
        {"purpose": "SHARE_WITH_CRM_VENDOR", "status": "GRANTED", "legal_basis": "PIPL13_2_CONTRACT",
         "captured_at": soon.isoformat()}]})
    assert granted.has_consent("SHARE_WITH_CRM_VENDOR")
    withdrawn = parse_party({**person, "consents": [
        {"purpose": "SHARE_WITH_CRM_VENDOR", "status": "GRANTED", "legal_basis": "PIPL13_2_CONTRACT",
         "captured_at": "2024-01-01T00:00:00Z"},
        {"purpose": "SHARE_WITH_CRM_VENDOR", "status": "WITHDRAWN", "legal_basis": "PIPL13_2_CONTRACT",
         "captured_at": soon.isoformat(), "withdrawn_at": soon.isoformat()}]})
    assert not withdrawn.has_consent("SHARE_WITH_CRM_VENDOR")
    tie = parse_party({**person, "consents": [
        {"purpose": "SHARE_WITH_CRM_VENDOR", "status": "GRANTED", "legal_basis": "PIPL13_2_CONTRACT",
         "captured_at": "2024-01-01T00:00:00Z"},
        {"purpose": "SHARE_WITH_CRM_VENDOR", "status": "DENIED", "legal_basis": "PIPL13_2_CONTRACT",
         "captured_at": "2024-01-01T00:00:00Z"}]})
    assert not tie.has_consent("SHARE_WITH_CRM_VENDOR")   # on equal capture times a refusal wins
    # the history still answers "what was in force then"
    assert granted.has_consent("SHARE_WITH_CRM_VENDOR", at=soon)
    assert not granted.has_consent("SHARE_WITH_CRM_VENDOR", at=soon - timedelta(seconds=1))


def test_the_core_simulator_clock_knob_stamps_changes_ahead() -> None:
    from datetime import datetime

    from crmbridge.adapters.corebank_soap.simulator import CORE_TZ, CorebankSoapSimulator
    from crmbridge.adapters.simulator import Knobs

    sim = CorebankSoapSimulator(Knobs(records=3, extra={"clock_offset_seconds": AHEAD}))
    rec = sim.store.touch(sim.store.custno(0), email="x@example.com")
    ahead = (datetime.fromisoformat(rec["stamp"]) - datetime.now(CORE_TZ).replace(tzinfo=None)).total_seconds()
    assert AHEAD - 5 < ahead <= AHEAD
    sim.start()
    try:
        assert any("clock_offset_seconds=+600" in line for line in sim.banner())
    finally:
        sim.stop()
