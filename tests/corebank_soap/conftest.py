"""Fixtures of the core-banking SOAP tests: started simulators and adapters for both WSDL shapes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from corebank_soap_support import T24_WSDL, fcubs_config, t24_config

from crmbridge.adapters.corebank_soap import CorebankSoapAdapter
from crmbridge.adapters.corebank_soap.simulator import CorebankSoapSimulator, T24StyleSimulator
from crmbridge.adapters.simulator import Knobs


@pytest.fixture
def fcubs_sim() -> Iterator[CorebankSoapSimulator]:
    with CorebankSoapSimulator(Knobs(seed=7, records=30)) as sim:
        yield sim  # type: ignore[misc]


@pytest.fixture
def t24_sim() -> Iterator[T24StyleSimulator]:
    with T24StyleSimulator(Knobs(seed=7, records=30), wsdl_path=T24_WSDL) as sim:
        yield sim  # type: ignore[misc]


@pytest.fixture
def fcubs(fcubs_sim: CorebankSoapSimulator) -> Iterator[CorebankSoapAdapter]:
    adapter = CorebankSoapAdapter(fcubs_config(fcubs_sim))
    try:
        yield adapter
    finally:
        adapter.close()


@pytest.fixture
def t24(t24_sim: T24StyleSimulator) -> Iterator[CorebankSoapAdapter]:
    adapter = CorebankSoapAdapter(t24_config(t24_sim))
    try:
        yield adapter
    finally:
        adapter.close()
