"""Holdings (a custom ``__c`` object with object_reference lookups), work orders (CasesObj) and campaign members
(MarketingEventObj, CampaignMembersObj) on the Fxiaoke simulator, over real HTTP on loopback; and the adapter
contract on the holdings object under a system-generated API name reached through ``objects``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from fxiaoke_support import make
from test_fxiaoke_contract import BAD_SECRET_ENV, CODE_ENV, SECRET_ENV, FxiaokeHarness

from crmbridge.adapters.base import Adapter, WriteItem, WriteStatus
from crmbridge.adapters.fxiaoke.simulator import FxiaokeSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.testing.contract import AdapterContract

API = "object_Ab12c__c"   # a system-generated custom object API name


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FXT_SECRET", FxiaokeSimulator.APP_SECRET)
    monkeypatch.setenv("FXT_CODE", FxiaokeSimulator.PERMANENT_CODE)
    monkeypatch.setenv(SECRET_ENV, FxiaokeSimulator.APP_SECRET)
    monkeypatch.setenv(BAD_SECRET_ENV, "not-the-app-secret")
    monkeypatch.setenv(CODE_ENV, FxiaokeSimulator.PERMANENT_CODE)


@pytest.fixture
def sim() -> Iterator[FxiaokeSimulator]:
    with FxiaokeSimulator(Knobs(records=5, extra={"contacts": 5, "holdings_object": API})) as s:
        yield s  # type: ignore[misc]


def holding(i: int, account: str | None, **over) -> dict:
    row = {"name": f"DEPOSIT ****{i:04d}", "product_type__c": "DEPOSIT", "holding_status__c": "ACTIVE",
           "currency__c": "CNY", "balance_band__c": "50K-500K", "open_date__c": 1680307200000, **over}
    if account:
        row["account_id__c"] = account
    return row


def test_object_list_names_the_custom_object_and_describe_names_lookup_targets(sim: FxiaokeSimulator) -> None:
    with make(sim, objects={"Holding": API}) as ad:
        fields = {f.name: f for f in ad.describe("Holding")}
        assert fields["account_id__c"].type == "object_reference" and fields["name"].required
        raw = ad.client.describe(API)
        assert raw["fields"]["account_id__c"]["target_api_name"] == "AccountObj"
        assert raw["define_type"] == "custom"
        cases = ad.client.describe("CasesObj")
        assert cases["fields"]["account_id"]["target_api_name"] == "AccountObj"


def test_holding_with_a_lookup_is_created_on_the_custom_path_and_read_back(sim: FxiaokeSimulator) -> None:
    account = sorted(sim.tables["AccountObj"].rows)[0]
    with make(sim, objects={"Holding": API}, key_field="holding_key__c") as ad:
        res = ad.write("Holding", [WriteItem(key="FCUBS:001:0011234567", payload=holding(1, account),
                                             key_field="holding_key__c")])
        again = ad.write("Holding", [WriteItem(key="FCUBS:001:0011234567", payload=holding(1, account),
                                               key_field="holding_key__c")])
        assert res[0].status is WriteStatus.CREATED and again[0].status in (WriteStatus.UNCHANGED,
                                                                             WriteStatus.UPDATED)
        assert again[0].external_id == res[0].external_id and sim.count(API) == 1
        got = ad.get("Holding", res[0].external_id)
        assert got.object == "Holding" and got.data["account_id__c"] == account
        assert got.data["holding_key__c"] == "FCUBS:001:0011234567"
    # the custom object is served only on the custom paths
    rows = [r for r in sim.records(API)]
    assert rows and rows[0]["object_describe_api_name"] == API


def test_lookup_to_a_parent_not_yet_in_fxiaoke_fails_that_record(sim: FxiaokeSimulator) -> None:
    account = sorted(sim.tables["AccountObj"].rows)[0]
    with make(sim, objects={"Holding": API}) as ad:
        res = ad.write("Holding", [
            WriteItem(key="orphan", payload=holding(2, "5f3a3de57c604a00017dc5ee"), key_field="holding_key__c"),
            WriteItem(key="fine", payload=holding(3, account), key_field="holding_key__c"),
        ])
    assert [r.status for r in res] == [WriteStatus.FAILED, WriteStatus.CREATED]
    assert "320004" in str(res[0].error)   # the simulator's INVALID_VALUE: 字段[account_id__c]关联的数据不存在
    assert sim.count(API) == 1


def test_custom_object_on_the_preset_path_is_refused_on_the_wire(sim: FxiaokeSimulator) -> None:
    r = requests.post(f"{sim.url}/cgi/corpAccessToken/get/V2", timeout=5, json={
        "appId": sim.app_id, "appSecret": sim.app_secret, "permanentCode": sim.permanent_code}).json()
    body = {"corpAccessToken": r["corpAccessToken"], "corpId": r["corpId"],
            "currentOpenUserId": sim.ADMIN_OPEN_USER_ID,
            "data": {"dataObjectApiName": API, "search_query_info": {"limit": 10, "offset": 0}}}
    wrong = requests.post(f"{sim.url}/cgi/crm/v2/data/query", json=body, timeout=5).json()
    assert wrong["errorCode"] != 0
    right = requests.post(f"{sim.url}/cgi/crm/custom/v2/data/query", json=body, timeout=5).json()
    assert right["errorCode"] == 0


def test_holdings_paged_and_incremental(sim: FxiaokeSimulator) -> None:
    account = sorted(sim.tables["AccountObj"].rows)[0]
    with make(sim, objects={"Holding": API}, overlap_seconds=0) as ad:
        ad.write("Holding", [WriteItem(key=f"H{i}", payload=holding(i, account), key_field="holding_key__c")
                             for i in range(10)])
        pages = list(ad.extract("Holding"))
        recs = [r for p in pages for r in p.records]
        assert len(recs) == 10 and len(pages) >= 2   # page_size 7
        cut = max(r.modified_at for r in recs)
        sim.clock_ms_offset = 0
        ad.write("Holding", [WriteItem(key="H3", payload=holding(3, account, holding_status__c="CLOSED"),
                                       key_field="holding_key__c")])
        later = [r for p in ad.extract("Holding", since=cut + timedelta(milliseconds=1)) for r in p.records]
        assert [r.data["holding_key__c"] for r in later] == ["H3"]
        assert later[0].data["holding_status__c"] == "CLOSED"


def test_work_order_and_campaign_member_with_lookups(sim: FxiaokeSimulator) -> None:
    account = sorted(sim.tables["AccountObj"].rows)[0]
    contact = sorted(sim.tables["ContactObj"].rows)[0]
    with make(sim) as ad:
        case = ad.write("CasesObj", [WriteItem(key="case-1", key_field="case_key__c", payload={
            "name": "WO-0001", "account_id": account, "contact_id__c": contact, "case_status__c": "NEW",
            "priority__c": "HIGH", "summary__c": "信用卡年费争议", "received_time__c": 1764552600000})])[0]
        assert case.status is WriteStatus.CREATED
        event = ad.write("MarketingEventObj", [WriteItem(key="camp-1", key_field="campaign_key__c", payload={
            "name": "春季理财节", "begin_time": 1772323200000})])[0]
        member = ad.write("CampaignMembersObj", [WriteItem(key="m-1", key_field="member_key__c", payload={
            "marketing_event_id": event.external_id, "contact_id": contact,
            "campaign_members_status": "responded", "opt_out__c": True})])[0]
        orphan = ad.write("CampaignMembersObj", [WriteItem(key="m-2", key_field="member_key__c", payload={
            "marketing_event_id": "5f3a3de57c604a00017dc5ee", "contact_id": contact})])[0]
        no_event = ad.write("CampaignMembersObj", [WriteItem(key="m-3", key_field="member_key__c", payload={
            "contact_id": contact})])[0]
        assert member.status is WriteStatus.CREATED
        assert orphan.status is WriteStatus.FAILED and "320004" in str(orphan.error)
        assert no_event.status is WriteStatus.FAILED   # the event link is required
        got = [r for p in ad.extract("CampaignMembersObj") for r in p.records]
        assert [(r.data["marketing_event_id"], r.data["opt_out__c"]) for r in got] == [(event.external_id, True)]
        assert ad.get("CasesObj", case.external_id).data["contact_id__c"] == contact


class TestFxiaokeHoldingsContract(AdapterContract):
    """The contract on the holdings custom object, named ``Holding`` by jobs and ``object_Ab12c__c`` by the tenant."""

    @pytest.fixture
    def harness(self) -> Iterator[FxiaokeHarness]:
        with FxiaokeSimulator(Knobs(records=0, extra={"contacts": 0, "holdings_object": API})) as sim:
            h = _HoldingsHarness(sim, "Holding")
            yield h


class _HoldingsHarness(FxiaokeHarness):
    key_field = "holding_key__c"

    def make_adapter(self, *, bad_credentials: bool = False, **overrides: object) -> Adapter:
        return super().make_adapter(bad_credentials=bad_credentials, objects={"Holding": API},
                                    key_field="holding_key__c", **overrides)

    def seed(self, n: int) -> None:
        self.sim.reseed(API, n)

    def payload(self, i: int, variant: int = 0) -> dict:
        return holding(i, None, balance_band__c=["<50K", "50K-500K", "500K-6M"][variant % 3])

    def count(self) -> int:
        return self.sim.count(API)

    def ids(self) -> set[str]:
        return {r["_id"] for r in self.sim.records(API) if r.get("life_status") != "invalid"}

    def invalid_payload(self, i: int) -> dict:
        return {"product_type__c": "DEPOSIT"}   # no name: required
