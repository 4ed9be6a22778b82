"""The adapter contract suite against the Zoho adapter and the Zoho simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from zoho_helpers import TickingClock, make_adapter

from crmbridge.adapters.base import Adapter
from crmbridge.adapters.simulator import Knobs
from crmbridge.adapters.zoho.simulator import ZohoSimulator
from crmbridge.testing.contract import AdapterContract, ContractHarness

OVERLAP = 5


class ZohoHarness(ContractHarness):
    object_name = "Contacts"
    key_field = "Party_ID"
    page_size = 50
    supports_versions = True  # If-Unmodified-Since → 412 ALREADY_MODIFIED
    # the adapter re-reads an overlap window before `since` on purpose (the engine dedupes by content hash)
    modified_granularity = timedelta(seconds=OVERLAP + 1)

    def __init__(self, sim: ZohoSimulator) -> None:
        self.simulator = sim
        self.sim = sim

    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        return make_adapter(self.sim, bad_secret=bad_credentials, page_size=self.page_size,
                            overlap_seconds=OVERLAP)

    def seed(self, n: int) -> None:
        self.sim.reset(self.object_name, n)

    def payload(self, i: int, variant: int = 0) -> dict:
        return {"Last_Name": "王", "First_Name": f"测试{i}", "Email": f"contract{i}@mail.example.cn",
                "Customer_Segment": ("Mass", "Affluent", "Wealth")[variant % 3]}

    def count(self) -> int:
        return self.sim.count(self.object_name)

    def ids(self) -> set[str]:
        return set(self.sim.stores[self.object_name].records)

    def invalid_payload(self, i: int) -> dict:
        return {"First_Name": f"测试{i}"}  # Last_Name is system-mandatory: MANDATORY_NOT_FOUND


class TestZohoContract(AdapterContract):
    @pytest.fixture
    def harness(self) -> Iterator[ZohoHarness]:
        with ZohoSimulator(Knobs(records=0)) as sim:
            sim.clock = TickingClock()
            yield ZohoHarness(sim)  # type: ignore[arg-type]
