"""Segmentation and lifecycle rules in a party run (core → Zoho, over the simulators): every derived field is pushed
to the CRM through the target mapping and ledgered with the rules version; a changed rules file re-derives, and a
dry run plans the derived changes first."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sync_helpers import BAD, CUSTOMERS, SEED

from crmbridge.canonical.extensions import declare_extensions
from crmbridge.canonical.rules import load_rules
from crmbridge.config.model import PACKAGE_ROOT
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.state.ledger import Action, Ledger, decode_entry

JOB = "core_to_zoho"
DECLARATION = {
    "lifecycle_stage": {"type": "string", "class": "C1", "max_length": 20,
                        "description": "Marketing lifecycle stage derived by the rules (docs/rules.md)"},
    "churn_risk": {"type": "boolean", "class": "C1", "description": "Churn-risk flag derived by the rules"},
}
STEPS = ("  - {type: field, vendor: Marketing_Stage, canonical: extensions.lifecycle_stage, direction: out}\n"
         "  - {type: field, vendor: Churn_Risk, canonical: extensions.churn_risk, direction: out}\n")
SEGMENT_OUT = {"MASS": "Mass", "AFFLUENT": "Affluent", "WEALTH": "Wealth", "PRIVATE": "Private"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ruled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[DemoEnvironment, Runtime, Path]]:
    """The demo environment (state on SQLite, then PostgreSQL) whose core → Zoho job names a rules file (a copy of
    the shipped one), with the derived lifecycle stage and churn risk declared as C1 extensions and pushed by a copy
    of the Zoho Contacts mapping."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=BAD, seed=SEED, state_url=url) as env:
        yield from _ruled(env, tmp_path)


def _ruled(env: DemoEnvironment, tmp_path: Path) -> Iterator[tuple[DemoEnvironment, Runtime, Path]]:
    cfg = yaml.safe_load(env.config_path.read_text())
    cfg["canonical"] = {"extensions": DECLARATION}
    mapping = tmp_path / "zoho_contacts.yaml"
    shutil.copy(PACKAGE_ROOT / "mappings" / "zoho_contacts.yaml", mapping)
    with mapping.open("a", encoding="utf-8") as f:
        f.write(STEPS)
    rules = tmp_path / "rules.yaml"
    shutil.copy(PACKAGE_ROOT / "mappings" / "rules.yaml", rules)
    cfg["jobs"][JOB]["target_mapping"] = str(mapping)
    cfg["jobs"][JOB]["rules"] = str(rules)
    env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    rt = bootstrap(env.config_path)
    try:
        yield env, rt, rules
    finally:
        rt.close()
        declare_extensions({})   # the declarations are process-wide


def _entries(rt: Runtime, run_id: str) -> list[dict[str, Any]]:
    with rt.store.transaction() as tx:
        led = Ledger(tx.connection, rt.signer, cipher=rt.cipher)
        assert led.verify(rt.signer.public_key).ok
        # as every display reads them: decoded (encoding 3 stores a masked value once, as a reference)
        return [decode_entry(e) for e in led.iter_entries(job=JOB, run_id=run_id)
                if e["action"] in (str(Action.CREATED), str(Action.UPDATED))]


def _expected_segment(band: str | None) -> str:
    return {"6M_30M": "Private", "GE_30M": "Private", "500K_6M": "Wealth", "50K_500K": "Affluent"}.get(band or "",
                                                                                                    "Mass")


def test_each_derived_field_is_pushed_and_ledgered_with_the_rules_version(ruled) -> None:  # type: ignore[no-untyped-def]
    env, rt, rules_path = ruled
    version = load_rules(rules_path).version_hash
    report = run_job(rt, JOB)
    assert report.status in ("succeeded", "partial"), report.error
    contacts = list(env.zoho.stores["Contacts"].records.values())
    assert contacts
    for c in contacts:
        assert c["Customer_Segment"] == _expected_segment(c.get("AUM_Band"))   # segment from the AUM band
        assert c["Marketing_Stage"] == "ACQUISITION"   # no holdings stored: the acquisition stage
        assert c["Churn_Risk"] is False                # one band in the history: no drop
    entries = _entries(rt, report.run_id)
    assert len(entries) == len(contacts)
    for e in entries:
        assert f"rules {rules_path} version {version}" in e["reason"]
        assert "churn_risk, lifecycle_stage, segment" in e["reason"]
        assert {"extensions.lifecycle_stage", "extensions.churn_risk", "segment.code"} <= set(e["changed_fields"])
        assert "ACQUISITION" in str(e["masked_after"]), e["masked_after"]
    # nothing changed: nothing re-derived differently, no write
    again = run_job(rt, JOB)
    assert again.api_calls.get("zoho_cn", 0) <= 1 and again.outcomes.get("updated", 0) == 0


def test_a_changed_rules_file_re_derives_every_party_and_a_dry_run_plans_it(ruled) -> None:  # type: ignore[no-untyped-def]
    env, rt, rules_path = ruled
    assert run_job(rt, JOB).status in ("succeeded", "partial")
    # the bank moves customers without holdings to retention: every derived stage changes, nothing at the core did
    text = rules_path.read_text(encoding="utf-8")
    assert "value: ACQUISITION" in text
    rules_path.write_text(text.replace("value: ACQUISITION", "value: RETENTION"), encoding="utf-8")
    new_version = load_rules(rules_path).version_hash
    contacts = len(env.zoho.stores["Contacts"].records)

    rt2 = bootstrap(env.config_path)
    try:
        plan = run_job(rt2, JOB, dry_run=True)
        staged = [p for p in plan.plan if "extensions.lifecycle_stage" in p.fields]
        assert len(staged) == contacts
        assert all(p.fields["extensions.lifecycle_stage"] == ("ACQUISITION", "RETENTION") for p in staged)
        assert all(p.target_fields.get("Marketing_Stage") == ("ACQUISITION", "RETENTION") for p in staged)
        assert {c["Marketing_Stage"] for c in env.zoho.stores["Contacts"].records.values()} == {"ACQUISITION"}

        report = run_job(rt2, JOB)
        assert report.status in ("succeeded", "partial"), report.error
        assert report.outcomes["updated"] == contacts
        assert {c["Marketing_Stage"] for c in env.zoho.stores["Contacts"].records.values()} == {"RETENTION"}
        entries = _entries(rt2, report.run_id)
        assert len(entries) == contacts
        assert all(f"version {new_version}" in e["reason"] and e["changed_fields"] == ["extensions.lifecycle_stage"]
                   for e in entries)
        assert run_job(rt2, JOB).outcomes.get("updated", 0) == 0   # re-derived once
    finally:
        rt2.close()


def test_rules_on_a_two_way_job_are_refused_and_a_broken_rules_file_fails_the_run_naming_it(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from crmbridge.config import load_config
    from crmbridge.core.errors import ConfigurationError

    cfg = yaml.safe_load(env.config_path.read_text())
    two_way = {**cfg, "jobs": {**cfg["jobs"], "core_fxiaoke": {**cfg["jobs"]["core_fxiaoke"], "rules": "rules.yaml"}}}
    bad = tmp_path / "two_way.yaml"
    bad.write_text(yaml.safe_dump(two_way, sort_keys=False, allow_unicode=True))
    with pytest.raises(ConfigurationError, match=r"jobs\.core_fxiaoke.*one-way party jobs"):
        load_config(bad)

    broken = tmp_path / "rules.yaml"
    broken.write_text("version: 1\nrules:\n  - name: segment\n    derive: shoe_size\n    cases: [{value: 42}]\n")
    cfg["jobs"][JOB]["rules"] = str(broken)
    env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    rt = bootstrap(env.config_path)
    try:
        report = run_job(rt, JOB)
        assert report.status == "failed" and str(broken) in (report.error or "")
        assert not env.zoho.stores["Contacts"].records   # nothing pushed without its rules
    finally:
        rt.close()
