"""FLEXCUBE ``FCUBSAccService`` holdings through the SOAP adapter, over real SOAP on loopback: the shipped
configuration (FCUBS_ACCOUNTS: only configuration differs from the customer system), the incremental account change
list with paging, a posting and a closure coming through as a change and a tombstone, one account by number, the
business failure for an unknown account, and accounts whose customer the customer feed has not delivered."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from corebank_soap_support import FAST

from crmbridge.adapters.base import Adapter
from crmbridge.adapters.corebank_soap import FCUBS_ACCOUNTS, CorebankSoapAdapter, CorebankSoapConfig
from crmbridge.adapters.corebank_soap.simulator import CorebankSoapSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.testing.contract import AdapterContract, ContractHarness


@pytest.fixture
def sim() -> Iterator[CorebankSoapSimulator]:
    with CorebankSoapSimulator(Knobs(records=30, seed=2)) as s:
        yield s  # type: ignore[misc]


def accounts_adapter(sim: CorebankSoapSimulator, page_size: int = 7, **over: Any) -> CorebankSoapAdapter:
    data = {**FCUBS_ACCOUNTS, "endpoint": sim.account_endpoint, "username": "CRMBRIDGE",
            "password": "env:CRMBRIDGE_TEST_CORE_PW", "timeout": 5.0, "retry": FAST, **over}
    data["operations"] = {**data["operations"], "list": {**data["operations"]["list"],
                                                         "paging": {**data["operations"]["list"]["paging"],
                                                                    "page_size": page_size}}}
    return CorebankSoapAdapter(CorebankSoapConfig.model_validate(data), system="core_accounts")


def _all(ad: CorebankSoapAdapter, **kw: Any):
    return [r for p in ad.extract("Account", **kw) for r in p.records]


def test_account_wsdl_is_served_and_names_the_account_service(sim: CorebankSoapSimulator) -> None:
    text = requests.get(sim.account_wsdl_url, timeout=5).text
    assert "FCUBSAccServiceSEI" in text and sim.account_endpoint in text
    assert "QueryAccountsModifiedSinceIO" in text and "QueryCustAccIO" in text


def test_change_list_pages_every_account_once(sim: CorebankSoapSimulator) -> None:
    with accounts_adapter(sim) as ad:
        recs = _all(ad)
    assert len(recs) == len(sim.accounts) == sum(c % 3 for c in range(30))
    assert {r.external_id for r in recs} == set(sim.accounts.numbers)
    one = recs[0]
    assert one.object == "Account" and one.version == "1" and not one.deleted
    assert one.data["ACC_BAL"]["CCY"] == "CNY" and one.data["CUSTNO"].isdigit()
    assert one.data["ACCLS"] in ("SAVIND", "TDIND", "CURCOR") and one.modified_at is not None


def test_posting_and_closure_come_through_incrementally(sim: CorebankSoapSimulator) -> None:
    with accounts_adapter(sim) as ad:
        first = _all(ad)
        cut = max(r.modified_at for r in first)
        posted, closed = first[3].external_id, first[5].external_id
        sim.accounts.change(posted, CURBAL="88888.88", AVLBAL="88888.88")
        sim.accounts.change(closed, RECORD_STAT="C", CURBAL="0.00", AVLBAL="0.00")
        later = {r.external_id: r for r in _all(ad, since=cut + timedelta(seconds=1))}
    assert {posted, closed} <= set(later)
    # since_boundary unknown (the default) re-reads one second before since: only records of that second come again
    assert all(r.modified_at == cut for k, r in later.items() if k not in (posted, closed))
    assert later[posted].data["ACC_BAL"]["CURBAL"] == "88888.88" and later[posted].version == "2"
    assert later[closed].deleted, "a closed account is a tombstone in the feed"


def test_one_account_and_an_unknown_one(sim: CorebankSoapSimulator) -> None:
    acc = sim.accounts.numbers[4]
    with accounts_adapter(sim) as ad:
        got = ad.get("Account", acc)
        assert got is not None and got.external_id == acc and got.data["ACC"] == acc
        assert ad.get("Account", "00100000000099") is None   # ST-ACC-001, configured as not found


def test_the_customer_service_does_not_answer_account_operations(sim: CorebankSoapSimulator) -> None:
    """Each service answers only its own operations: the account list posted to the customer endpoint is a Fault."""
    with accounts_adapter(sim, endpoint=sim.endpoint) as ad, pytest.raises(Exception, match="Unknown operation"):
        _all(ad)


def test_accounts_of_customers_not_yet_in_the_customer_feed() -> None:
    with CorebankSoapSimulator(Knobs(records=6, extra={"orphan_accounts": 2})) as sim, \
            accounts_adapter(sim) as ad:  # type: ignore[arg-type]
        recs = _all(ad)
        known = {sim.store.custno(i) for i in range(6)}
        orphans = [r for r in recs if r.data["CUSTNO"] not in known]
        assert len(orphans) == 2


class AccountsHarness(ContractHarness):
    """The read-only contract on the FLEXCUBE account change list."""

    object_name = "Account"
    key_field = None
    page_size = 5
    supports_write = False
    supports_delete = False
    token_auth = True   # wsse:MessageExpired → a fresh UsernameToken, once (as the customer service)
    modified_granularity = timedelta(seconds=2)

    def __init__(self, sim: CorebankSoapSimulator) -> None:
        self.simulator = sim
        self.sim = sim

    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        pw = "env:CRMBRIDGE_TEST_CORE_PW_BAD" if bad_credentials else "env:CRMBRIDGE_TEST_CORE_PW"
        return accounts_adapter(self.sim, page_size=self.page_size, password=pw)

    def seed(self, n: int) -> None:
        self.sim.reseed_accounts(n)

    def payload(self, i: int, variant: int = 0) -> dict:
        return {}

    def count(self) -> int:
        return len(self.sim.accounts)

    def ids(self) -> set[str]:
        return set(self.sim.accounts.numbers)


class TestAccountsContract(AdapterContract):
    @pytest.fixture
    def harness(self) -> Iterator[AccountsHarness]:
        with CorebankSoapSimulator(Knobs(records=40, seed=5)) as sim:
            yield AccountsHarness(sim)  # type: ignore[arg-type]


def test_the_documented_yaml_is_the_shipped_configuration() -> None:
    """docs/corebank_soap.md shows FCUBS_ACCOUNTS in YAML: the two must not drift apart."""
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs/corebank_soap.md").read_text(encoding="utf-8")
    block = re.search(r"## Accounts \(holdings\).*?```yaml\n(.*?)```", text, re.S)
    assert block is not None
    system = yaml.safe_load(block.group(1))["systems"]["core_accounts"]
    documented = CorebankSoapConfig.model_validate({**system, "password": "env:X"})
    shipped = CorebankSoapConfig.model_validate({**FCUBS_ACCOUNTS, "password": "env:X"})
    for key in ("wsdl", "object_name", "record", "operations", "business_errors"):
        assert getattr(documented, key) == getattr(shipped, key), key


def test_a_marketing_opt_out_is_written_back_as_a_consent_udf(sim: CorebankSoapSimulator) -> None:
    """CRM → core for campaign responses: an opt-out withdraws the marketing consent, a UDF of Customer-Full, through
    ModifyCustomer; the adapter needs only the UDF paths in ``operations.modify.writable`` (configuration)."""
    from corebank_soap_support import fcubs_config

    from crmbridge.adapters.base import WriteItem, WriteStatus
    from crmbridge.adapters.corebank_soap.adapter import ModifyOperation

    writable = [*ModifyOperation().writable, "UDFDETAILS.FLDNAM", "UDFDETAILS.FLDVAL"]
    cfg = fcubs_config(sim, operations={"list": {"paging": {"page_size": 10}}, "modify": {"writable": writable}})
    custno = sim.store.custno(2)
    before = sim.store.get(custno)
    with CorebankSoapAdapter(cfg) as ad:
        res = ad.write("Customer", [WriteItem(key="p", external_id=custno, payload={
            "UDFDETAILS": [{"FLDNAM": "CONSENT_MARKETING_SMS", "FLDVAL": "N"}]})])
        golden = ad.write("Customer", [WriteItem(key="p", external_id=custno, payload={
            "UDFDETAILS": [{"FLDNAM": "AUM_AMOUNT", "FLDVAL": "1"}]})])
    after = sim.store.get(custno)
    assert res[0].status is WriteStatus.UPDATED and after["consent_sms"] == "N"
    assert int(after["modno"]) == int(before["modno"]) + 1
    assert golden[0].status is WriteStatus.FAILED and "not amendable" in str(golden[0].error)
    assert sim.store.get(custno)["aum"] == after["aum"]
