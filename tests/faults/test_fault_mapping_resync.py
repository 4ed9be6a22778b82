"""A changed mapping's re-derivation killed with SIGKILL mid-way and rerun (issue 16): it resumes from the cursor,
loses nothing (every record ends with the new field) and duplicates nothing; once done, a run writes nothing."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import pytest
import yaml
from fault_helpers import check_final, kill_loop, truth

from crmbridge.config.model import PACKAGE_ROOT
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.report import COMPLETED
from crmbridge.sync.state.ledger import Action

pytestmark = pytest.mark.slow

JOB = "core_to_zoho"
UPSERT = "POST /crm/v8/Contacts/upsert"


def test_a_killed_mapping_resync_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    customers, seed = 400, zlib.crc32(b"mapping-resync") % 100_000
    t = truth(customers, 11, 0.1, JOB)
    with DemoEnvironment(tmp_path / "demo", customers=customers, bad_fraction=0.1, seed=11) as env:
        cfg = yaml.safe_load(env.config_path.read_text())
        cfg["jobs"][JOB]["batch_size"] = 20
        env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        rt0 = bootstrap(env.config_path)
        try:
            assert run_job(rt0, JOB).status in COMPLETED
        finally:
            rt0.close()
        synced = len(env.zoho.stores["Contacts"].records)
        copy = tmp_path / "zoho_contacts.yaml"
        shutil.copy(PACKAGE_ROOT / "mappings" / "zoho_contacts.yaml", copy)
        with copy.open("a", encoding="utf-8") as f:
            f.write("  - type: field\n    vendor: Department\n    canonical: home_branch.branch_code\n"
                    "    direction: out\n")
        cfg["jobs"][JOB]["target_mapping"] = str(copy)
        env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        env.zoho.knobs.latency_ms = 60
        rt = bootstrap(env.config_path)
        try:
            stats = kill_loop(env, rt, JOB, t, kills=4, seed=seed, delay=(0.0, 0.5), max_writes=4,
                              log_dir=tmp_path / "runs")
            assert stats.kills >= 2, f"too few kills landed inside the resync ({stats.line()})"
            check_final(env, rt, JOB, t)
            records = list(env.zoho.stores["Contacts"].records.values())
            assert len(records) == synced, "a record was duplicated or lost"
            assert all(r.get("Department") for r in records), "a record missed the changed mapping"
            calls = env.zoho.requests_seen[UPSERT]
            env.zoho.knobs.latency_ms = 0
            again = run_job(rt, JOB)
            assert again.actions[Action.UPDATED] == 0 and env.zoho.requests_seen[UPSERT] == calls
        finally:
            rt.close()
