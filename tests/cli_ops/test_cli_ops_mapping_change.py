"""`crmbridge run` after a mapping change: the dry run says first how many records the change updates and which
target fields, per record in the vendor's terms with masked values; `--resync`/`--only-field`/`--full-refresh`
from the command line; `reconcile` names the differing fields."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from crmbridge.config.model import PACKAGE_ROOT
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job

JOB = "core_to_zoho"


@pytest.fixture
def synced(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with DemoEnvironment(tmp_path / "demo", customers=12, bad_fraction=0.0, seed=3,
                         jobs={JOB: {"source": "corebank.Customer", "target": "zoho_cn.Contacts",
                                     "source_mapping": "corebank_soap_customer.yaml",
                                     "target_mapping": "zoho_contacts.yaml",
                                     "consent_purpose": "SHARE_WITH_CRM_VENDOR",
                                     "match_rules": [["CN_RIC"], ["CN_USCC"]]}}) as env:
        rt = bootstrap(env.config_path)
        try:
            assert run_job(rt, JOB).status == "succeeded"
        finally:
            rt.close()
        yield env


def _cli(env: DemoEnvironment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crmbridge", *args, "--config", str(env.config_path)],
                          capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "200"})


def _add_field(env: DemoEnvironment, tmp_path: Path) -> None:
    copy = tmp_path / "zoho_contacts.yaml"
    shutil.copy(PACKAGE_ROOT / "mappings" / "zoho_contacts.yaml", copy)
    with copy.open("a", encoding="utf-8") as f:
        f.write("  - type: field\n    vendor: Department\n    canonical: name.legal_zh\n    out_mask: name\n"
                "    direction: out\n")
    cfg = yaml.safe_load(env.config_path.read_text())
    cfg["jobs"][JOB]["target_mapping"] = str(copy)
    env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.mark.slow   # a command-line run over a full sync: the slow tier
def test_the_dry_run_says_what_a_mapping_change_updates_first(synced, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = synced
    _add_field(env, tmp_path)
    records = len(env.zoho.stores["Contacts"].records)
    text = _cli(env, "run", JOB, "--dry-run")
    assert text.returncode == 0, text.stderr
    first = text.stdout.strip().splitlines()[0]
    assert first == f"{records} records will be updated because mapping {tmp_path / 'zoho_contacts.yaml'} " \
                    "changed: fields Department"
    assert "Department: ∅ →" in text.stdout
    out = _cli(env, "run", JOB, "--dry-run", "--json")
    doc = json.loads(out.stdout)
    assert doc["mapping_changes"][0]["records"] == records
    assert doc["mapping_changes"][0]["fields"] == ["Department"]
    assert doc["estimated_api_calls"] >= doc["planned_write_calls"] >= 1
    names = {r["Last_Name"] for r in env.zoho.stores["Contacts"].records.values()}
    for p in doc["plan"]:
        after = p["target_fields"]["Department"]["after"]
        assert after and "*" in after and after in names   # masked as the name's class says, never in clear
    assert not any(r.get("Department") for r in env.zoho.stores["Contacts"].records.values())
    real = _cli(env, "run", JOB, "--json")
    assert real.returncode == 0, real.stdout + real.stderr
    assert json.loads(real.stdout)["actions"].get("updated") == records
    assert all(r.get("Department") for r in env.zoho.stores["Contacts"].records.values())


@pytest.mark.slow   # a command-line run over a full sync: the slow tier
def test_resync_full_refresh_and_reconcile_from_the_command_line(synced) -> None:  # type: ignore[no-untyped-def]
    env = synced
    store = env.zoho.stores["Contacts"].records
    rid = next(iter(store))
    store[rid]["Home_Branch"] = "EDITED"
    rec = _cli(env, "reconcile", JOB)
    assert rec.returncode == 1
    assert ": Home_Branch" in rec.stdout
    rec_json = json.loads(_cli(env, "reconcile", JOB, "--json").stdout)
    assert list(rec_json["different_fields"].values()) == [["Home_Branch"]]
    assert _cli(env, "run", JOB, "--only-field", "Home_Branch").returncode == 2
    assert _cli(env, "run", JOB, "--resync", "--full-refresh").returncode == 2
    done = _cli(env, "run", JOB, "--resync", "--only-field", "Home_Branch", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert store[rid]["Home_Branch"] != "EDITED"
    assert _cli(env, "reconcile", JOB).returncode == 0
    full = _cli(env, "run", JOB, "--full-refresh", "--json")
    assert full.returncode == 0, full.stdout + full.stderr
    doc = json.loads(full.stdout)
    assert doc["read"] == 12 and not doc["actions"].get("updated") and not doc["actions"].get("created")
