"""The adapter contract suite against the FLEXCUBE-style simulator and, with only configuration changed, against a
differently shaped T24-style WSDL (credentials in the payload, successIndicator, continuation paging)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from corebank_soap_support import T24_WSDL, FcubsHarness, T24Harness

from crmbridge.adapters.corebank_soap.simulator import CorebankSoapSimulator, T24StyleSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.testing.contract import AdapterContract


class TestCorebankSoapContract(AdapterContract):
    @pytest.fixture
    def harness(self) -> Iterator[FcubsHarness]:
        with CorebankSoapSimulator(Knobs(seed=3, records=0)) as sim:
            yield FcubsHarness(sim)  # type: ignore[arg-type]


class TestCorebankSoapT24Contract(AdapterContract):
    @pytest.fixture
    def harness(self) -> Iterator[T24Harness]:
        with T24StyleSimulator(Knobs(seed=3, records=0), wsdl_path=T24_WSDL) as sim:
            yield T24Harness(sim)  # type: ignore[arg-type]
