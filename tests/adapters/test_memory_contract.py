"""The adapter contract suite against the memory adapter and its simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crmbridge.adapters.base import Adapter
from crmbridge.adapters.simulator import Knobs
from crmbridge.core.retry import RetryPolicy
from crmbridge.testing.contract import AdapterContract, ContractHarness
from crmbridge.testing.memory import MemoryAdapter, MemoryConfig
from crmbridge.testing.memory.simulator import DEFAULT_CLIENT_SECRET, MemorySimulator

SECRET_ENV = "CRMBRIDGE_TEST_MEMORY_SECRET"
BAD_SECRET_ENV = "CRMBRIDGE_TEST_MEMORY_BAD_SECRET"


class MemoryHarness(ContractHarness):
    object_name = "Contact"
    key_field = "external_key"
    page_size = 7
    supports_versions = True

    def __init__(self, sim: MemorySimulator) -> None:
        self.simulator = sim
        self.sim = sim

    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        cfg = MemoryConfig(base_url=self.sim.url, client_id="crm-client",
                           client_secret=f"env:{BAD_SECRET_ENV if bad_credentials else SECRET_ENV}",
                           page_size=self.page_size,
                           retry=RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.01, jitter=0.0),
                           timeout=5.0)
        return MemoryAdapter(cfg)

    def seed(self, n: int) -> None:
        self.sim.seed(self.object_name, n)

    def payload(self, i: int, variant: int = 0) -> dict:
        tier = ["gold", "silver", "iron"][variant % 3]
        return {"name": f"Contract {i}", "email": f"contract{i}@example.com", "tier": tier}

    def count(self) -> int:
        return self.sim.count(self.object_name)

    def ids(self) -> set[str]:
        return self.sim.ids(self.object_name)

    def invalid_payload(self, i: int) -> dict:
        return {"name": f"Contract {i}", "email": None}


class TestMemoryContract(AdapterContract):
    @pytest.fixture
    def harness(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryHarness]:
        monkeypatch.setenv(SECRET_ENV, DEFAULT_CLIENT_SECRET)
        monkeypatch.setenv(BAD_SECRET_ENV, "not-the-secret")
        with MemorySimulator(Knobs(records=0, extra={"required": ["email"]})) as sim:
            yield MemoryHarness(sim)


class UpdateOnlyMemoryHarness(MemoryHarness):
    """The same store seen as an update-only system (a core bank's contact write-back)."""

    supports_create = False


class TestMemoryUpdateOnlyContract(AdapterContract):
    @pytest.fixture
    def harness(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryHarness]:
        monkeypatch.setenv(SECRET_ENV, DEFAULT_CLIENT_SECRET)
        monkeypatch.setenv(BAD_SECRET_ENV, "not-the-secret")
        with MemorySimulator(Knobs(records=0, extra={"required": ["email"]})) as sim:
            yield UpdateOnlyMemoryHarness(sim)
