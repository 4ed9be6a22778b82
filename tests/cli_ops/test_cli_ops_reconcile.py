"""Reconciliation tells records the CRM's users created apart from records crmbridge wrote: the first are
"unmanaged" and leave the job complete (unless --count-unmanaged), the second stay "extra"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmbridge.adapters.base import WriteItem
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.reconcile import reconcile

JOB = "core_to_zoho"


@pytest.fixture
def synced(tmp_path: Path) -> Iterator[tuple[DemoEnvironment, Runtime]]:
    with DemoEnvironment(tmp_path / "demo", customers=12, bad_fraction=0.0, seed=3,
                         jobs={JOB: {"source": "corebank.Customer", "target": "zoho_cn.Contacts",
                                     "source_mapping": "corebank_soap_customer.yaml",
                                     "target_mapping": "zoho_contacts.yaml",
                                     "consent_purpose": "SHARE_WITH_CRM_VENDOR",
                                     "match_rules": [["CN_RIC"], ["CN_USCC"]]}}) as env:
        env.zoho.reset("Contacts", 3)   # the CRM's users had contacts of their own before crmbridge came:
        for rid in list(env.zoho.stores["Contacts"].records):   # no party id (the synthetic ones carry one)
            env.zoho.touch("Contacts", rid, Party_ID=None)
        rt = bootstrap(env.config_path)
        try:
            assert run_job(rt, JOB).status == "succeeded"
            yield env, rt
        finally:
            rt.close()


def _create(rt: Runtime, payload: dict[str, str]) -> str:
    [result] = rt.adapter("zoho_cn").write("Contacts", [WriteItem(key=uuid.uuid4().hex, payload=payload)])
    return str(result.external_id)


def _reconcile_cli(env: DemoEnvironment, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = subprocess.run([sys.executable, "-m", "crmbridge", "reconcile", JOB, "--config", str(env.config_path),
                           "--json", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    return done.returncode, json.loads(done.stdout)


def _own_contacts(env: DemoEnvironment) -> list[str]:
    return sorted(r["id"] for r in env.zoho.stores["Contacts"].records.values() if not r.get("Party_ID"))


def test_records_created_in_the_crm_are_unmanaged_and_leave_the_job_complete(synced) -> None:  # type: ignore
    env, rt = synced
    theirs = _own_contacts(env)
    assert len(theirs) == 3
    rep = reconcile(rt, JOB)
    assert sorted(rep.unmanaged) == theirs and rep.extra == [] and rep.complete
    assert rep.matched == rep.target_records - 3
    assert not reconcile(rt, JOB, count_unmanaged=True).complete

    rc, out = _reconcile_cli(env)
    assert rc == 0 and sorted(out["unmanaged"]) == theirs and out["extra"] == [] and out["complete"] is True
    rc, out = _reconcile_cli(env, "--count-unmanaged")
    assert rc == 1 and out["complete"] is False and out["count_unmanaged"] is True


def test_a_record_carrying_a_party_id_nobody_accounts_for_stays_extra(synced) -> None:  # type: ignore
    env, rt = synced
    stray = _create(rt, {"Last_Name": "Written by crmbridge", "Party_ID": str(uuid.uuid4())})
    rep = reconcile(rt, JOB)
    assert rep.extra == [stray] and sorted(rep.unmanaged) == _own_contacts(env) and not rep.complete
    rc, out = _reconcile_cli(env)
    assert rc == 1 and out["extra"] == [stray]
