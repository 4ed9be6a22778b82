"""The adapter contract suite against the core-banking REST adapter: Fineract, and a second bank by config only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from corebank_rest_support import FineractHarness, OpenbankHarness, set_env

from crmbridge.adapters.corebank_rest.simulator import CorebankRestSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.testing.contract import AdapterContract


class TestCorebankRestContract(AdapterContract):
    @pytest.fixture
    def harness(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[FineractHarness]:
        set_env(monkeypatch)
        with CorebankRestSimulator(Knobs(seed=3, records=0)) as sim:
            yield FineractHarness(sim)


class TestOpenbankContract(AdapterContract):
    @pytest.fixture
    def harness(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenbankHarness]:
        set_env(monkeypatch)
        with CorebankRestSimulator(Knobs(seed=3, records=0, extra={"dialect": "openbank"})) as sim:
            yield OpenbankHarness(sim)
