"""The operators' and integration team's commands, run as the installed ``crmbridge`` script against the demo
simulators: run, dry run, reconcile, dead letters, conflicts, mapping validation against live field metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crmbridge.adapters.base import WriteItem

CRMBRIDGE = Path(sys.executable).with_name("crmbridge")
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def cli(env, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([str(CRMBRIDGE), "--config", str(env.config_path), *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, COLUMNS="160"))


@pytest.mark.slow   # slow tier: CLI processes over full syncs
def test_run_prints_a_summary_and_dry_run_a_plan(env) -> None:  # type: ignore[no-untyped-def]
    plan = cli(env, "run", "core_to_zoho", "--dry-run")
    assert plan.returncode == 3, plan.stderr   # partial: the demo's bad records would be dead-lettered
    assert "DRY RUN" in plan.stdout and "write calls it would make: 1" in plan.stdout
    assert env.zoho.count("Contacts") == 0
    run = cli(env, "run", "core_to_zoho", "--json")
    assert run.returncode == 3, run.stderr
    report = json.loads(run.stdout)
    assert report["status"] == "partial" and report["actions"]["created"] == env.zoho.count("Contacts")
    assert report["exit_code"] == 3 and sum(report["outcomes"].values()) == report["read"]
    assert report["refusals"] and all(n > 0 for n in report["refusals"].values())
    rec = cli(env, "reconcile", "core_to_zoho")
    assert rec.returncode == 0 and "complete" in rec.stdout


def test_a_failing_run_exits_non_zero_and_says_why(env) -> None:  # type: ignore[no-untyped-def]
    env.zoho.stop()   # the CRM is down
    run = cli(env, "run", "core_to_zoho")
    assert run.returncode == 4, run.stdout   # a system unreachable has its own exit code
    assert "failed" in run.stdout and "unreachable" in run.stdout and "zoho" in run.stdout


@pytest.mark.slow   # slow tier: CLI processes over full syncs
def test_dead_letters_are_listed_and_shown_masked(env) -> None:  # type: ignore[no-untyped-def]
    from sync_helpers import CUSTOMERS, custno, synthetic

    assert cli(env, "run", "core_to_zoho").returncode == 3   # partial: the bad records are dead letters
    listing = cli(env, "deadletters", "list")
    assert listing.returncode == 0
    bad = [custno(i) for i in range(CUSTOMERS) if not synthetic(i).should_validate]
    assert bad and all(b in listing.stdout for b in bad)
    first = cli(env, "deadletters", "show", "1")
    assert first.returncode == 0 and "record (masked)" in first.stdout
    for i in range(CUSTOMERS):
        c = synthetic(i)
        assert c.id_number not in first.stdout
        if c.mobile and len(c.mobile) >= 7:
            assert c.mobile not in first.stdout


@pytest.mark.slow   # slow tier: CLI processes over full syncs
def test_conflicts_are_listed_shown_and_resolved_from_the_command_line(env, rt) -> None:  # type: ignore
    assert cli(env, "run", "core_fxiaoke").returncode == 3
    person = next(r for r in env.fxiaoke.records("AccountObj") if r.get("party_type__c") == "INDIVIDUAL")
    rt.adapter("fxiaoke").write("AccountObj", [WriteItem(key="rm", payload={"name": "欧阳修"},
                                                         external_id=person["_id"])])
    assert cli(env, "run", "core_fxiaoke").returncode == 3   # partial: the conflict waits for review
    listing = cli(env, "conflicts", "list")
    assert "name.legal_zh" in listing.stdout
    shown = cli(env, "conflicts", "show", "1")
    assert "欧阳修" not in shown.stdout
    assert "欧阳*" in shown.stdout       # masked: family name only
    resolved = cli(env, "conflicts", "resolve", "1", "--take", "source", "--actor", "user:reviewer")
    assert resolved.returncode == 0, resolved.stderr
    assert "resolved" in resolved.stdout
    assert "no conflicts" in cli(env, "conflicts", "list").stdout
    verify = cli(env, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_mapping_validate_against_live_field_metadata(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ok = cli(env, "mapping", "validate", str(MAPPINGS / "zoho_contacts.yaml"), "--against", "zoho_cn")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "zoho_contacts.yaml"
    broken.write_text((MAPPINGS / "zoho_contacts.yaml").read_text(encoding="utf-8").replace(
        "Home_Branch", "Home_Branch_Typo"), encoding="utf-8")
    bad = cli(env, "mapping", "validate", str(broken), "--against", "zoho_cn")
    assert bad.returncode == 2
    assert "Home_Branch_Typo" in bad.stdout and f"{broken}:" in bad.stdout

