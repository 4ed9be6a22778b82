"""crmbridge.testing as a third-party adapter's test suite uses it: a project of its own (outside this repository's
tests and conftest), where the installed pytest plugin provides the fixtures and the contract suite runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

THIRD_PARTY_TESTS = '''
from __future__ import annotations

import pytest

from crmbridge.adapters import registry
from crmbridge.adapters.simulator import Knobs
from crmbridge.core.retry import RetryPolicy
from crmbridge.testing.contract import AdapterContract, ContractHarness
from crmbridge.testing.memory import MemoryAdapter, MemoryConfig
from crmbridge.testing.memory.simulator import DEFAULT_CLIENT_SECRET, MemorySimulator


class Harness(ContractHarness):
    object_name = "Contact"
    key_field = "external_key"
    page_size = 7
    supports_versions = True

    def __init__(self, sim):
        self.simulator = self.sim = sim

    def make_adapter(self, *, bad_credentials=False):
        cfg = MemoryConfig(base_url=self.sim.url, client_id="crm-client",
                           client_secret="env:" + ("ACME_BAD" if bad_credentials else "ACME_SECRET"),
                           page_size=self.page_size, timeout=5.0,
                           retry=RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.01, jitter=0.0))
        return MemoryAdapter(cfg)

    def seed(self, n):
        self.sim.seed(self.object_name, n)

    def payload(self, i, variant=0):
        return {"name": f"Acme {i}", "email": f"acme{i}@example.com", "tier": ["gold", "iron"][variant % 2]}

    def count(self):
        return self.sim.count(self.object_name)

    def ids(self):
        return self.sim.ids(self.object_name)


class TestAcmeContract(AdapterContract):
    @pytest.fixture
    def harness(self, monkeypatch):
        monkeypatch.setenv("ACME_SECRET", DEFAULT_CLIENT_SECRET)
        monkeypatch.setenv("ACME_BAD", "wrong")
        with MemorySimulator(Knobs(records=0)) as sim:
            yield Harness(sim)


def test_fixture_registers_for_this_test_only(crmbridge_memory):
    assert registry.adapter_class("memory") is crmbridge_memory


def test_not_registered_outside_the_fixture():
    assert "memory" not in registry.adapter_names()


def test_contract_asserts_are_rewritten():
    from crmbridge.testing import contract
    assert type(contract.__loader__).__name__ == "AssertionRewritingHook"
'''


def test_a_third_party_suite_runs_the_contract_through_the_installed_plugin(tmp_path: Path) -> None:
    (tmp_path / "test_acme.py").write_text(THIRD_PARTY_TESTS, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
                          "-k", "pagination or idempotent or expired_token or registers or not_registered or rewritten",
                          "test_acme.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "6 passed" in res.stdout, res.stdout[-2000:]
