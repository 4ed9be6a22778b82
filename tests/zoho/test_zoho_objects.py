"""Holdings (a custom module), Cases and campaign members on the Zoho simulator, over real HTTP on loopback.

The holdings module is served under the API name the org gave it (``CustomModule1``: created without one) while jobs
say ``Holdings`` (``modules`` in the configuration); lookups to Contacts/Accounts are validated as Zoho does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from zoho_helpers import TickingClock, make_adapter

from crmbridge.adapters.base import Adapter, WriteItem, WriteStatus
from crmbridge.adapters.simulator import Knobs
from crmbridge.adapters.zoho.simulator import ZohoSimulator
from crmbridge.core.errors import BadResponseError
from crmbridge.testing.contract import AdapterContract, ContractHarness

API = "CustomModule1"


def _drain(adapter: Adapter, obj: str, **kw):
    pages = list(adapter.extract(obj, **kw))
    return [r for p in pages for r in p.records], pages


def _token(sim: ZohoSimulator) -> str:
    """An access token from the simulator's accounts server, for raw calls that read Zoho's bodies as sent."""
    resp = requests.post(f"{sim.url}/oauth/v2/token", timeout=5, data={
        "grant_type": "refresh_token", "client_id": sim.client_id, "client_secret": sim.client_secret,
        "refresh_token": sim.refresh_token})
    return str(resp.json()["access_token"])


def _contact(sim: ZohoSimulator, n: int) -> str:
    return sim.add("Contacts", Last_Name="王", First_Name=f"客户{n}", Party_ID=f"party-{n}")


def _holding(i: int, contact: str | None) -> dict:
    row = {"Name": f"定期存款 ****{i:04d}", "Product_Type": "DEPOSIT", "Holding_Status": "ACTIVE",
           "Currency_Code": "CNY", "Balance_Band": "50K_500K", "Open_Date": "2024-04-01"}
    if contact:
        row["Contact"] = {"id": contact}
    return row


@pytest.fixture
def sim(zoho_sim) -> ZohoSimulator:
    s = zoho_sim(extra={"holdings_module": API})
    s.clock = TickingClock()
    return s


def test_custom_module_listed_as_custom_under_its_api_name(sim: ZohoSimulator) -> None:
    with make_adapter(sim, modules={"Holdings": API}) as ad:
        body = ad.client.call("GET", "/settings/modules")
        mods = {m["api_name"]: m for m in body["modules"]}
        assert mods[API]["generated_type"] == "custom" and mods[API]["plural_label"] == "Holdings"
        assert mods["Cases"]["generated_type"] == "default"
        fields = {f.name: f for f in ad.describe("Holdings")}
        assert fields["Contact"].type == "lookup" and fields["Name"].required
        raw = ad.client.call("GET", "/settings/fields", params={"module": API})["fields"]
        contact = next(f for f in raw if f["api_name"] == "Contact")
        assert contact["lookup"]["module"]["api_name"] == "Contacts"


def test_holdings_upsert_lookup_read_back_and_idempotent(sim: ZohoSimulator) -> None:
    cid = _contact(sim, 1)
    with make_adapter(sim, modules={"Holdings": API}) as ad:
        item = WriteItem(key="FCUBS:001:0011234567", payload=_holding(1, cid), key_field="Holding_Key")
        first = ad.write("Holdings", [item])
        again = ad.write("Holdings", [item])
        assert [r.status for r in first + again] == [WriteStatus.CREATED, WriteStatus.UPDATED]
        assert first[0].external_id == again[0].external_id
        assert sim.count(API) == 1
        recs, _ = _drain(ad, "Holdings")
        assert len(recs) == 1 and recs[0].object == "Holdings"
        assert recs[0].data["Contact"] == {"name": "客户1 王", "id": cid}   # lookups read back as {name, id}
        assert recs[0].data["Holding_Key"] == "FCUBS:001:0011234567"


def test_lookup_to_a_parent_not_yet_in_zoho_is_a_record_failure(sim: ZohoSimulator) -> None:
    cid = _contact(sim, 2)
    with make_adapter(sim, modules={"Holdings": API}) as ad:
        res = ad.write("Holdings", [
            WriteItem(key="K-orphan", payload=_holding(2, "5725767000999999999"), key_field="Holding_Key"),
            WriteItem(key="K-ok", payload=_holding(3, cid), key_field="Holding_Key"),
        ])
    assert [r.status for r in res] == [WriteStatus.FAILED, WriteStatus.CREATED]
    assert res[0].error is not None and res[0].error.code == "INVALID_DATA"
    assert res[0].error.field == "Contact" or "Contact" in str(res[0].error)
    assert sim.count(API) == 1


def test_invalid_lookup_error_shape_on_the_wire(sim: ZohoSimulator) -> None:
    token = _token(sim)
    resp = requests.post(f"{sim.url}/crm/v8/{API}", timeout=5, headers={"Authorization": f"Zoho-oauthtoken {token}"},
                         json={"data": [_holding(4, "5725767000999999999")]})
    assert resp.status_code == 400
    item = resp.json()["data"][0]
    assert item["code"] == "INVALID_DATA" and item["status"] == "error"
    assert item["details"]["api_name"] == "Contact" and item["details"]["json_path"] == "$.data[0].Contact"
    bad_type = requests.post(f"{sim.url}/crm/v8/{API}", timeout=5,
                             headers={"Authorization": f"Zoho-oauthtoken {token}"},
                             json={"data": [{**_holding(5, None), "Contact": "not-an-object"}]}).json()["data"][0]
    assert bad_type["details"]["expected_data_type"] == "jsonobject"


def test_holdings_paging_and_incremental(sim: ZohoSimulator) -> None:
    cid = _contact(sim, 3)
    with make_adapter(sim, modules={"Holdings": API}, page_size=2, overlap_seconds=0) as ad:
        ad.write("Holdings", [WriteItem(key=f"H{i}", payload=_holding(i, cid), key_field="Holding_Key")
                              for i in range(5)])
        recs, pages = _drain(ad, "Holdings")
        assert len(recs) == 5 and len(pages) == 3
        cut = max(r.modified_at for r in recs)
        ad.write("Holdings", [WriteItem(key="H9", payload=_holding(9, cid), key_field="Holding_Key")])
        later, _ = _drain(ad, "Holdings", since=cut + timedelta(seconds=1))
        assert [r.data["Holding_Key"] for r in later] == ["H9"]


def test_cases_upsert_mandatory_status_and_contact_link(sim: ZohoSimulator) -> None:
    cid = _contact(sim, 4)
    with make_adapter(sim) as ad:
        ok = {"Subject": "信用卡年费投诉", "Status": "New", "Priority": "High", "Case_Origin": "Phone",
              "Related_To": {"id": cid}, "Complaint_Category": "B03", "Due_Date": "2026-12-22"}
        res = ad.write("Cases", [WriteItem(key="case-1", payload=ok, key_field="Case_Key"),
                                 WriteItem(key="case-2", payload={"Subject": "无状态"}, key_field="Case_Key")])
        assert res[0].status is WriteStatus.CREATED
        assert res[1].status is WriteStatus.FAILED and res[1].error.code == "MANDATORY_NOT_FOUND"
        # same subject, other key: two complaints stay two (the key, not Subject, is the duplicate check)
        res = ad.write("Cases", [WriteItem(key="case-3", payload=ok, key_field="Case_Key")])
        assert res[0].status is WriteStatus.CREATED and sim.count("Cases") == 2
        got = ad.get("Cases", res[0].external_id)
        assert got.data["Related_To"]["id"] == cid and got.data["Case_Key"] == "case-3"
        assert ad.find("Cases", "Case_Key", "case-1") is not None


def _campaign(ad: Adapter, name: str) -> str:
    res = ad.write("Campaigns", [WriteItem(key=name, payload={"Status": "Active", "Type": "Email"},
                                           key_field="Campaign_Name")])
    assert res[0].status is WriteStatus.CREATED
    return res[0].external_id


def test_campaign_members_write_and_read_with_paging(sim: ZohoSimulator) -> None:
    contacts = [_contact(sim, 10 + i) for i in range(5)]
    with make_adapter(sim, page_size=2, member_fields=["Party_ID"]) as ad:
        c1, c2 = _campaign(ad, "春季理财节"), _campaign(ad, "信用卡推广")
        items = [WriteItem(key=f"resp-{i}", payload={"Campaign": {"id": c1}, "Member": {"id": cid},
                                                      "Member_Status": "Responded" if i % 2 else "Sent"})
                 for i, cid in enumerate(contacts)]
        items.append(WriteItem(key="resp-x", payload={"Campaign": c2, "Member": contacts[0],
                                                       "Member_Status": "Opted Out"}))
        res = ad.write("Campaigns.Contacts", items)
        assert all(r.status is WriteStatus.CREATED for r in res)
        assert res[-1].external_id == f"{c2}:{contacts[0]}"
        recs, pages = _drain(ad, "Campaigns.Contacts")
        assert all(p.full_scan for p in pages) and len(pages) >= 4   # 3 pages of c1 at 2 per page, 1 of c2
        by = {r.external_id: r for r in recs}
        assert len(by) == 6
        assert by[f"{c2}:{contacts[0]}"].data["Member_Status"] == "Opted Out"
        assert by[f"{c1}:{contacts[1]}"].data["Campaign"]["name"] == "春季理财节"
        assert by[f"{c1}:{contacts[1]}"].data["Party_ID"] == "party-11"
        one = ad.get("Campaigns.Contacts", f"{c1}:{contacts[1]}")
        assert one.data["Member_Status"] == "Responded"
        assert ad.get("Campaigns.Contacts", f"{c1}:5725767000999999999") is None


def test_campaign_member_errors_are_record_failures(sim: ZohoSimulator) -> None:
    cid = _contact(sim, 30)
    with make_adapter(sim) as ad:
        camp = _campaign(ad, "无效状态")
        res = ad.write("Campaigns.Contacts", [
            WriteItem(key="a", payload={"Campaign": camp, "Member": cid, "Member_Status": "Loved it"}),
            WriteItem(key="b", payload={"Campaign": camp, "Member": "5725767000999999999", "Member_Status": "Sent"}),
            WriteItem(key="c", payload={"Campaign": "5725767000888888888", "Member": cid, "Member_Status": "Sent"}),
            WriteItem(key="d", payload={"Campaign": None, "Member": cid, "Member_Status": "Sent"}),
        ])
    assert [r.status for r in res] == [WriteStatus.FAILED] * 4
    assert res[0].error.code == "INVALID_DATA" and res[1].error.code == "INVALID_DATA"
    assert res[2].error.code == "invalid_parent" and res[3].error.code == "missing_parent"
    assert sim.members.get(camp, {}) == {}


def test_related_list_without_member_status_is_a_bad_response(zoho_sim) -> None:
    sim = zoho_sim(extra={"member_status_in_list": False})
    cid = _contact(sim, 40)
    camp = sim.add("Campaigns", Campaign_Name="X", Status="Active")
    sim.relate(camp, cid, "Sent")
    with make_adapter(sim) as ad, pytest.raises(BadResponseError, match="Member_Status"):
        _drain(ad, "Campaigns.Contacts")


def test_related_list_wire_errors_and_ims_semantics(sim: ZohoSimulator) -> None:
    cid = _contact(sim, 50)
    camp = sim.add("Campaigns", Campaign_Name="Y", Status="Active")
    token = _token(sim)
    h = {"Authorization": f"Zoho-oauthtoken {token}"}
    base = f"{sim.url}/crm/v8/Campaigns"
    assert requests.get(f"{base}/{camp}/Contacts", headers=h, timeout=5).json()["code"] == "REQUIRED_PARAM_MISSING"
    assert requests.get(f"{base}/{camp}/Contacts?fields=id", headers=h, timeout=5).status_code == 204
    bad_rel = requests.get(f"{base}/{camp}/Deals?fields=id", headers=h, timeout=5).json()
    assert bad_rel["details"] == {"resource_path_index": 2}
    bad_id = requests.get(f"{base}/1/Contacts?fields=id", headers=h, timeout=5).json()
    assert bad_id["message"] == "the related id given seems to be invalid"
    assert requests.get(f"{base}/{camp}/Contacts?fields=id&per_page=201", headers=h,
                        timeout=5).json()["code"] == "INVALID_DATA"
    put = requests.put(f"{base}/{camp}/Contacts/{cid}", headers=h, timeout=5,
                       json={"data": [{"Member_Status": "Sent"}]}).json()
    assert put["data"][0]["message"] == "relation added"
    stamp = sim.record("Contacts", cid)["Modified_Time"]
    sim.relate(camp, cid, "Responded")   # the status changes, the contact record does not
    ims = {**h, "If-Modified-Since": stamp}
    # default: If-Modified-Since compares the member record's Modified_Time, so a status change is not seen
    assert requests.get(f"{base}/{camp}/Contacts?fields=id", headers=ims, timeout=5).status_code == 304
    rl = requests.get(f"{sim.url}/crm/v8/settings/related_lists?module=Campaigns", headers=h, timeout=5).json()
    assert [r["api_name"] for r in rl["related_lists"]] == ["Contacts"]
    gone = requests.delete(f"{base}/{camp}/Contacts?ids={cid}", headers=h, timeout=5).json()
    assert gone["data"][0]["message"] == "relation removed"


class HoldingsHarness(ContractHarness):
    object_name = "Holdings"
    key_field = "Holding_Key"
    page_size = 50
    supports_versions = True
    modified_granularity = timedelta(seconds=6)

    def __init__(self, sim: ZohoSimulator) -> None:
        self.simulator = sim
        self.sim = sim

    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        return make_adapter(self.sim, bad_secret=bad_credentials, page_size=self.page_size, overlap_seconds=5,
                            modules={"Holdings": API}, key_field="Holding_Key")

    def seed(self, n: int) -> None:
        self.sim.reset(API, n)

    def payload(self, i: int, variant: int = 0) -> dict:
        return {**_holding(i, None), "Balance_Band": ("LT_50K", "50K_500K", "500K_6M")[variant % 3]}

    def count(self) -> int:
        return self.sim.count(API)

    def ids(self) -> set[str]:
        return set(self.sim.stores[API].records)

    def invalid_payload(self, i: int) -> dict:
        return {"Product_Type": "DEPOSIT"}  # Name is mandatory: MANDATORY_NOT_FOUND


class TestZohoHoldingsContract(AdapterContract):
    @pytest.fixture
    def harness(self) -> Iterator[HoldingsHarness]:
        with ZohoSimulator(Knobs(records=0, extra={"holdings_module": API})) as sim:
            sim.clock = TickingClock()
            yield HoldingsHarness(sim)  # type: ignore[arg-type]


def test_doctor_probes_the_members_relation(sim: ZohoSimulator) -> None:
    cid = _contact(sim, 60)
    with make_adapter(sim) as ad:
        empty = ad.doctor({"Campaigns.Contacts": []})
        assert any(f.status == "info" and "no members" in f.detail for f in empty)
        camp = _campaign(ad, "医保宣传")
        sim.relate(camp, cid, "Sent")
        found = ad.doctor({"Campaigns.Contacts": []})
        assert any(f.status == "ok" and "related list Contacts" in f.detail for f in found)
        assert not any(f.status == "fail" for f in found), found
    with make_adapter(sim, members_relation="Campaigns.Leads") as ad:
        bad = ad.doctor({"Campaigns.Leads": []})
        assert any(f.status == "fail" and "no related list 'Leads'" in f.detail for f in bad)


def test_describe_of_members_names_the_relation_fields(sim: ZohoSimulator) -> None:
    with make_adapter(sim) as ad:
        names = [f.name for f in ad.describe("Campaigns.Contacts")]
    assert names[:3] == ["Campaign", "Member", "Member_Status"] and "Party_ID" in names


class CasesHarness(HoldingsHarness):
    object_name = "Cases"
    key_field = "Case_Key"

    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        return make_adapter(self.sim, bad_secret=bad_credentials, page_size=self.page_size, overlap_seconds=5,
                            key_field="Case_Key")

    def seed(self, n: int) -> None:
        self.sim.reset("Cases", n)

    def payload(self, i: int, variant: int = 0) -> dict:
        return {"Subject": f"投诉 {i}", "Status": ("New", "Escalated", "On Hold")[variant % 3], "Priority": "High"}

    def count(self) -> int:
        return self.sim.count("Cases")

    def ids(self) -> set[str]:
        return set(self.sim.stores["Cases"].records)

    def invalid_payload(self, i: int) -> dict:
        return {"Subject": f"投诉 {i}"}   # Status is mandatory


class TestZohoCasesContract(AdapterContract):
    @pytest.fixture
    def harness(self) -> Iterator[CasesHarness]:
        with ZohoSimulator(Knobs(records=0)) as sim:
            sim.clock = TickingClock()
            yield CasesHarness(sim)  # type: ignore[arg-type]


def test_membership_seen_from_the_contact_side(sim: ZohoSimulator) -> None:
    cid = _contact(sim, 70)
    camp = sim.add("Campaigns", Campaign_Name="Z", Status="Active")
    sim.relate(camp, cid, "Responded")
    h = {"Authorization": f"Zoho-oauthtoken {_token(sim)}"}
    rows = requests.get(f"{sim.url}/crm/v8/Contacts/{cid}/Campaigns?fields=Campaign_Name", headers=h,
                        timeout=5).json()["data"]
    assert rows == [{"Campaign_Name": "Z", "id": camp, "Member_Status": "Responded"}]


def test_an_org_without_the_custom_module_fails_the_call_not_the_records(zoho_sim) -> None:
    from crmbridge.core.errors import RequestError
    sim = zoho_sim(extra={"holdings_module": ""})
    with make_adapter(sim) as ad, pytest.raises(RequestError, match="INVALID_MODULE|module"):
        ad.write("Holdings", [WriteItem(key="k", payload=_holding(1, None), key_field="Holding_Key")])
