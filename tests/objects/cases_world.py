"""The world of the case tests: the demo environment with the bank's complaint service beside it, the cases job
Zoho → the complaint service (and, when asked, the status job back), core → Zoho run once so cases have parties."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from crmbridge.adapters.complaints.simulator import ComplaintSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.engine import run_job

CASES = "zoho_cases_to_complaints"
STATUS = "complaints_status_to_zoho"


@contextmanager
def complaints_world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
                     customers: int, seed: int, status_job: bool = False,
                     ) -> Iterator[tuple[DemoEnvironment, ComplaintSimulator, Runtime]]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with DemoEnvironment(tmp_path / "demo", customers=customers, bad_fraction=0.0, seed=seed, state_url=url) as env, \
            ComplaintSimulator(Knobs(records=0)) as bank:
        monkeypatch.setenv("CRMBRIDGE_TEST_COMPLAINTS_KEY", bank.api_key)
        cfg = yaml.safe_load(env.config_path.read_text())
        cfg["systems"]["complaints"] = {"adapter": "complaints", "base_url": f"{bank.url}/api/v1",
                                        "api_key": "env:CRMBRIDGE_TEST_COMPLAINTS_KEY", "source_system": "ZOHO"}
        cfg["jobs"][CASES] = {"source": "zoho_cn.Cases", "target": "complaints.complaints",
                              "source_mapping": "zoho_cases.yaml", "target_mapping": "complaints.yaml",
                              "parent": {"source": "zoho_cn.Contacts"}, "max_failed_ratio": 1.0}
        if status_job:
            cfg["jobs"][STATUS] = {"source": "complaints.complaints", "target": "zoho_cn.Cases",
                                   "source_mapping": "complaints_status.yaml",
                                   "target_mapping": "zoho_cases_status.yaml",
                                   "parent": {"source": "zoho_cn.Contacts"}, "max_failed_ratio": 1.0}
        env.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        rt = bootstrap(env.config_path)
        try:
            assert run_job(rt, "core_to_zoho").status == "succeeded"
            yield env, bank, rt
        finally:
            rt.close()


def add_case(env: DemoEnvironment, contact: str, summary: str, **over: Any) -> str:
    """A service case a relationship manager logs in Zoho for ``contact``."""
    return env.zoho.add("Cases", **{"Subject": "理财投诉", "Related_To": {"id": contact}, "Type": "Problem",
                                    "Case_Origin": "Phone", "Priority": "High", "Status": "New",
                                    "Description": summary, **over})
