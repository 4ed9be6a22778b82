"""The adapter contract suite: FxiaokeAdapter against FxiaokeSimulator (AccountObj and a custom object)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from crmbridge.adapters.base import Adapter
from crmbridge.adapters.fxiaoke import FxiaokeAdapter, FxiaokeConfig
from crmbridge.adapters.fxiaoke.simulator import FxiaokeSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.core.retry import RetryPolicy
from crmbridge.testing.contract import AdapterContract, ContractHarness

SECRET_ENV = "CRMBRIDGE_TEST_FX_SECRET"
BAD_SECRET_ENV = "CRMBRIDGE_TEST_FX_BAD_SECRET"
CODE_ENV = "CRMBRIDGE_TEST_FX_CODE"


class FxiaokeHarness(ContractHarness):
    object_name = "AccountObj"
    key_field = "party_id__c"
    page_size = 7
    #: the adapter re-reads ``overlap_seconds`` before ``since`` on purpose
    overlap_seconds = 2.0
    modified_granularity = timedelta(seconds=3)

    def __init__(self, sim: FxiaokeSimulator, object_name: str = "AccountObj") -> None:
        self.simulator = sim
        self.sim = sim
        self.object_name = object_name

    def make_adapter(self, *, bad_credentials: bool = False, **overrides: object) -> Adapter:
        settings: dict[str, object] = dict(
            base_url=self.sim.url, app_id=self.sim.app_id,
            app_secret=f"env:{BAD_SECRET_ENV if bad_credentials else SECRET_ENV}",
            permanent_code=f"env:{CODE_ENV}", open_user_id=self.sim.ADMIN_OPEN_USER_ID,
            page_size=self.page_size, overlap_seconds=self.overlap_seconds, rate_per_second=None,
            retry=RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.01, jitter=0.0), timeout=5.0)
        settings.update(overrides)
        return FxiaokeAdapter(FxiaokeConfig(**settings))  # type: ignore[arg-type]

    def seed(self, n: int) -> None:
        self.sim.reseed(self.object_name, n)

    def payload(self, i: int, variant: int = 0) -> dict:
        return {"name": f"合同测试客户{i}", "segment__c": ["MASS", "AFFLUENT", "WEALTH"][variant % 3],
                "consent_marketing__c": variant % 2 == 0}

    def count(self) -> int:
        return self.sim.count(self.object_name)

    def ids(self) -> set[str]:
        return {r["_id"] for r in self.sim.records(self.object_name) if r.get("life_status") != "invalid"}

    def invalid_payload(self, i: int) -> dict:
        return {"segment__c": "MASS"}  # no name: a required field


@pytest.fixture
def fx_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, FxiaokeSimulator.APP_SECRET)
    monkeypatch.setenv(BAD_SECRET_ENV, "not-the-app-secret")
    monkeypatch.setenv(CODE_ENV, FxiaokeSimulator.PERMANENT_CODE)


class TestFxiaokeContract(AdapterContract):
    @pytest.fixture
    def harness(self, fx_env: None) -> Iterator[FxiaokeHarness]:
        with FxiaokeSimulator(Knobs(records=0, extra={"contacts": 0})) as sim:
            yield FxiaokeHarness(sim)


class TestFxiaokeCustomObjectContract(AdapterContract):
    """The same contract on a custom ``…__c`` object, served on the /cgi/crm/custom/v2 paths."""

    @pytest.fixture
    def harness(self, fx_env: None) -> Iterator[FxiaokeHarness]:
        with FxiaokeSimulator(Knobs(records=0, extra={"contacts": 0})) as sim:
            yield FxiaokeHarness(sim, "object_party__c")
