"""``crmbridge doctor SYSTEM`` against the demo's simulators, through the installed command: each job's mappings
against live metadata and real records, the adapter's read-only probes, the configuration to set, exit 1 only when
a job would not work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from crmbridge.demo import DemoEnvironment

CRMBRIDGE = Path(sys.executable).with_name("crmbridge")


def doctor(env, system: str, *extra: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([str(CRMBRIDGE), "--config", str(env.config_path), "doctor", system, *extra],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, COLUMNS="200"))


def test_doctor_reads_the_core_s_change_filter_and_says_what_to_set(tmp_path: Path) -> None:
    with DemoEnvironment(tmp_path / "demo", customers=20, bad_fraction=0.0, seed=4,
                         core_extra={"since_boundary": "exclusive"}) as env:
        out = doctor(env, "corebank", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        report = json.loads(out.stdout)
        checks = {(f["check"], f["status"]) for f in report["findings"]}
        assert ("fields", "ok") in checks and ("paths", "ok") in checks and ("reachable", "ok") in checks
        assert report["config"]["operations.list.since_boundary"] == "exclusive"   # found by reading
        assert {f["check"] for f in report["findings"]} >= {"operation", "page_size", "clock_skew", "rate_limit"}
        shown = doctor(env, "corebank")
        assert "Configuration to set" in shown.stdout and 'since_boundary: "exclusive"' in shown.stdout


def test_doctor_fails_a_job_whose_mapping_the_live_system_cannot_take(tmp_path: Path) -> None:
    with DemoEnvironment(tmp_path / "demo", customers=5, bad_fraction=0.0, seed=4) as env:
        assert doctor(env, "fxiaoke").returncode == 0   # the owner Fxiaoke requires is the adapter's to fill
        env.zoho.missing_fields = {"Home_Branch"}        # an org without a custom field the mapping writes
        out = doctor(env, "zoho_cn", "--json")
        assert out.returncode == 1
        failed = [f for f in json.loads(out.stdout)["findings"] if f["status"] == "fail"]
        assert [f["check"] for f in failed] == ["fields"] and "Home_Branch" in failed[0]["detail"]


def test_doctor_names_a_mapped_path_that_real_records_never_carry(tmp_path: Path) -> None:
    with DemoEnvironment(tmp_path / "demo", customers=10, bad_fraction=0.0, seed=4) as env:
        mapping = yaml.safe_load((Path(__file__).resolve().parents[2] / "mappings" /
                                  "corebank_soap_customer.yaml").read_text(encoding="utf-8"))
        mapping["steps"].append({"type": "field", "vendor": "Custpersonal.NO_SUCH_ELEMENT",
                                 "canonical": "relationship_manager.employee_id", "direction": "in"})
        (env.workdir / "core_copy.yaml").write_text(yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8")
        cfg = yaml.safe_load(env.config_path.read_text(encoding="utf-8"))
        cfg["jobs"]["core_to_zoho"]["source_mapping"] = "core_copy.yaml"
        env.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        out = doctor(env, "corebank", "--json")
        findings = json.loads(out.stdout)["findings"]
        assert not [f for f in findings if f["check"] == "mapping"], findings
        paths = [f for f in findings if f["check"] == "paths"]
        assert any(f["status"] == "warn" and "Custpersonal.NO_SUCH_ELEMENT" in f["detail"] for f in paths), paths
