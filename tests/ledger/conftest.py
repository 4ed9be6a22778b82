"""Fixtures of the ledger lineage and auditor tests: one small real sync (simulators on loopback) per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job

CUSTOMERS = 24
SEED = 11


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoEnvironment, Any]]:
    """A demo environment after one core → Zoho run: (environment, runtime)."""
    with DemoEnvironment(tmp_path_factory.mktemp("ledger") / "demo", customers=CUSTOMERS, bad_fraction=0.1,
                         seed=SEED) as env:
        rt = bootstrap(env.config_path)
        try:
            report = run_job(rt, "core_to_zoho")
            assert report.read == CUSTOMERS
            yield env, rt
        finally:
            rt.close()
