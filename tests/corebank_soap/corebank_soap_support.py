"""Helpers of the core-banking SOAP tests: configurations (FLEXCUBE and T24-style) and contract harnesses."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from crmbridge.adapters.base import Adapter
from crmbridge.adapters.corebank_soap import CorebankSoapAdapter, CorebankSoapConfig
from crmbridge.adapters.corebank_soap.simulator import CorebankSoapSimulator, T24StyleSimulator
from crmbridge.core.retry import RetryPolicy
from crmbridge.testing.contract import ContractHarness

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "corebank_soap"
T24_WSDL = FIXTURES / "t24_customer.wsdl"

# the simulators' service password, and a wrong one, as secret references (never literals in config)
os.environ.setdefault("CRMBRIDGE_TEST_CORE_PW", "sim-password")
os.environ.setdefault("CRMBRIDGE_TEST_CORE_PW_BAD", "not-the-password")
FAST = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.0)


def fcubs_config(sim: CorebankSoapSimulator, *, bad_credentials: bool = False, page_size: int = 10,
                 **overrides: Any) -> CorebankSoapConfig:
    data: dict[str, Any] = {
        "adapter": "corebank_soap",
        "wsdl": sim.wsdl_url,
        "username": "CRMBRIDGE",
        "password": "env:CRMBRIDGE_TEST_CORE_PW_BAD" if bad_credentials else "env:CRMBRIDGE_TEST_CORE_PW",
        "timeout": 5.0,
        "retry": FAST,
        "operations": {"list": {"paging": {"page_size": page_size}}},
    }
    data.update(overrides)
    return CorebankSoapConfig.model_validate(data)


def t24_config(sim: T24StyleSimulator, *, bad_credentials: bool = False, page_size: int = 10,
               **overrides: Any) -> CorebankSoapConfig:
    """The T24-style system: only configuration differs from FLEXCUBE (and the mapping)."""
    data: dict[str, Any] = {
        "adapter": "corebank_soap",
        "wsdl": sim.wsdl_url,
        "service": "T24WebServicesImplService",
        "port": "T24WebServicesImplPort",
        "username": "CRMBRIDGE",
        "password": "env:CRMBRIDGE_TEST_CORE_PW_BAD" if bad_credentials else "env:CRMBRIDGE_TEST_CORE_PW",
        "wsse": False,
        "timeout": 5.0,
        "retry": FAST,
        "header": {"path": "WebRequestCommon", "message_id": None, "operation": None,
                   "values": {"company": "CN0010001", "userName": "{username}", "password": "{password}"}},
        "status": {"path": "Status/successIndicator", "success": ["Success"], "errors": "Status/messages",
                   "code": None, "text": None, "code_pattern": r"^([A-Z]{2}-[A-Z0-9.]+):"},
        "business_errors": [
            {"code": r"EB-SECURITY\.VIOLATION", "kind": "auth", "message": "T24 refused the user"},
            {"code": r"EB-NO\.SUCH\.RECORD", "kind": "not_found", "message": "no such customer"},
            {"code": r"EB-CURR\.NO\.CHANGED", "kind": "conflict", "message": "stale CURR.NO"},
            {"code": r"EB-INVALID\..*", "kind": "validation", "message": "T24 refused a value"},
            {"code": "T24Offline", "kind": "transient", "message": "T24 is offline"},
        ],
        "record": {"id": "id", "version": "CurrNo", "modified_at": "DateTime", "modified_at_format": "%y%m%d%H%M",
                   "closed_path": "CustomerStatus", "closed_values": ["CLOSED"]},
        "operations": {
            "list": {"operation": "CustomerChanges", "name": None,
                     "since_static": {"enquiryInputCollection/columnName": "DATE.TIME",
                                      "enquiryInputCollection/operand": "GE"},
                     "since": "enquiryInputCollection/criteriaValue", "since_format": "%y%m%d%H%M",
                     "records": "CUSTOMERCHANGESType/gCUSTOMERCHANGESDetailType/mCUSTOMERCHANGESDetailType",
                     "paging": {"mode": "continuation", "page": None, "size": "maxRecords", "page_size": page_size,
                                "has_more": None, "token": "startKey", "next_token": "nextKey"}},
            "get": {"operation": "CustomerRead", "name": None, "id": "CustomerReadInput/transactionId",
                    "record": "CUSTOMERType"},
            "modify": {"operation": "CustomerAmend", "name": None, "record": "CUSTOMERType", "id": "id",
                       "version": "CurrNo", "result": "CUSTOMERType", "ignore": ["Sector"],
                       "writable": ["gPHONE1/mPHONE1/SMS1", "gPHONE1/mPHONE1/EMAIL1", "gPHONE1/mPHONE1/PHONE1",
                                    "CountrySubdivision", "TownCountry", "Address", "Street"]},
        },
    }
    data.update(overrides)
    return CorebankSoapConfig.model_validate(data)


class FcubsHarness(ContractHarness):
    """FLEXCUBE-style service. Writes are contact write-back only (no creates): the suite's write tests run in
    their update-only form (supports_create False); golden-field refusals are in test_corebank_soap_writeback.py."""

    object_name = "Customer"
    key_field = None
    page_size = 10
    supports_write = True
    supports_create = False
    supports_delete = False
    supports_versions = True
    token_auth = True   # wsse:MessageExpired → a fresh UsernameToken (new nonce and Created), once

    def __init__(self, sim: CorebankSoapSimulator) -> None:
        self.simulator = sim

    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        return CorebankSoapAdapter(fcubs_config(self.simulator, bad_credentials=bad_credentials,
                                                page_size=self.page_size))

    def seed(self, n: int) -> None:
        self.simulator.store.reseed(n)

    def payload(self, i: int, variant: int = 0) -> dict:
        return {"Custpersonal": {"MOBNUM": f"1380013{variant:02d}{i % 100:02d}",
                                 "EMAILID": f"c{i}.v{variant}@example.com"}}

    def invalid_payload(self, i: int) -> dict | None:
        return {"Custpersonal": {"MOBNUM": "12345"}}   # the core refuses a malformed mobile (ST-VALS-010)

    def count(self) -> int:
        return self.simulator.store.live_count()

    def ids(self) -> set[str] | None:
        return self.simulator.store.live_ids()


class T24Harness(FcubsHarness):
    token_auth = False   # credentials travel in WebRequestCommon; a refusal is EB-SECURITY.VIOLATION
    modified_granularity: ClassVar[timedelta] = timedelta(minutes=1)   # DATE.TIME is yymmddHHMM

    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        return CorebankSoapAdapter(t24_config(self.simulator, bad_credentials=bad_credentials,
                                              page_size=self.page_size))

    def payload(self, i: int, variant: int = 0) -> dict:
        return {"gPHONE1": {"mPHONE1": {"SMS1": f"1380013{variant:02d}{i % 100:02d}",
                                        "EMAIL1": f"c{i}.v{variant}@example.com"}}}

    def invalid_payload(self, i: int) -> dict | None:
        return {"gPHONE1": {"mPHONE1": {"SMS1": "12345"}}}
