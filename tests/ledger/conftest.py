"""Fixtures of the ledger lineage and auditor tests: one small real sync (simulators on loopback) per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ledger_helpers import CUSTOMERS, NOTE, SEED, cli

from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoEnvironment, Any]]:
    """A demo environment after one core → Zoho run through the command line, ``--actor`` annotating it:
    (environment, runtime)."""
    with DemoEnvironment(tmp_path_factory.mktemp("ledger") / "demo", customers=CUSTOMERS, bad_fraction=0.1,
                         seed=SEED) as env:
        code, _ = cli(None, "run", "core_to_zoho", "-c", str(env.config_path), "--actor", NOTE)
        assert code == 3   # partial: the bad records are dead-lettered
        rt = bootstrap(env.config_path)
        try:
            yield env, rt
        finally:
            rt.close()
