"""FxiaokeSimulator speaks Fxiaoke's documented wire format (raw HTTP, no crmbridge adapter involved)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from crmbridge.adapters.fxiaoke.errors import BUSINESS_CODES
from crmbridge.adapters.fxiaoke.simulator import FxiaokeSimulator
from crmbridge.adapters.simulator import Fault, Knobs


@pytest.fixture
def sim() -> Iterator[FxiaokeSimulator]:
    with FxiaokeSimulator(Knobs(records=25, extra={"contacts": 5})) as s:
        yield s


def post(sim: FxiaokeSimulator, path: str, body: Any, *, trace: bool = True, **kw: Any) -> dict[str, Any]:
    params = {"thirdTraceId": "0b9f5a52-8a3c-4f53-9f1a-0d1b3c5e7f90"} if trace else None
    resp = requests.post(f"{sim.url}{path}", json=body, params=params, timeout=5, **kw)
    assert resp.status_code == 200, resp.text  # errors too are HTTP 200
    return resp.json()


def token(sim: FxiaokeSimulator) -> dict[str, Any]:
    return post(sim, "/cgi/corpAccessToken/get/V2", {"appId": sim.app_id, "appSecret": sim.app_secret,
                                                     "permanentCode": sim.permanent_code})


def auth(sim: FxiaokeSimulator) -> dict[str, Any]:
    t = token(sim)
    return {"corpAccessToken": t["corpAccessToken"], "corpId": t["corpId"],
            "currentOpenUserId": sim.ADMIN_OPEN_USER_ID}


def query(sim: FxiaokeSimulator, a: dict[str, Any], sqi: dict[str, Any], obj: str = "AccountObj",
          path: str = "/cgi/crm/v2/data/query") -> dict[str, Any]:
    return post(sim, path, {**a, "data": {"dataObjectApiName": obj, "search_query_info": sqi}})


def test_token_v2_envelope_and_lifetime_rule() -> None:
    # lifetime scaled to 2.4 s: same token for 2.2 s, a new one after, both valid until the old one ends
    with FxiaokeSimulator(Knobs(records=1, token_lifetime=2.4, extra={"contacts": 0})) as sim:
        first = token(sim)
        assert first["errorCode"] == 0 and first["corpId"].startswith("FSCID_")
        assert 0 < first["expiresIn"] <= 2.4 and "traceId" in first
        again = token(sim)
        assert again["corpAccessToken"] == first["corpAccessToken"] and again["expiresIn"] <= first["expiresIn"]
        time.sleep(2.25)
        renewed = token(sim)
        assert renewed["corpAccessToken"] != first["corpAccessToken"]
        old = {"corpAccessToken": first["corpAccessToken"], "corpId": first["corpId"],
               "currentOpenUserId": sim.ADMIN_OPEN_USER_ID}
        assert query(sim, old, {"limit": 1, "offset": 0})["errorCode"] == 0  # the overlap: both valid
        time.sleep(0.25)
        assert query(sim, old, {"limit": 1, "offset": 0})["errorCode"] == 20016
        new = dict(old, corpAccessToken=renewed["corpAccessToken"])
        assert query(sim, new, {"limit": 1, "offset": 0})["errorCode"] == 0


def test_token_endpoint_allows_ten_calls_a_minute(sim: FxiaokeSimulator) -> None:
    codes = [token(sim)["errorCode"] for _ in range(11)]
    assert codes == [0] * 10 + [14001]


def test_token_endpoint_credential_errors(sim: FxiaokeSimulator) -> None:
    path = "/cgi/corpAccessToken/get/V2"
    wrong = post(sim, path, {"appId": sim.app_id, "appSecret": "x", "permanentCode": sim.permanent_code})
    missing = post(sim, path, {"appId": sim.app_id, "permanentCode": sim.permanent_code})
    assert wrong["errorCode"] == missing["errorCode"] == 10006  # observed for both
    assert wrong["traceId"].startswith("open-api-gateway-web/")
    bad_code = post(sim, path, {"appId": sim.app_id, "appSecret": sim.app_secret, "permanentCode": "x"})
    assert bad_code["errorCode"] == 20015


def test_business_call_credentials(sim: FxiaokeSimulator) -> None:
    sqi = {"limit": 1, "offset": 0}
    assert query(sim, {}, sqi)["errorCode"] == 20017  # no credentials at all, as observed
    forged = {"corpAccessToken": "FORGED", "corpId": sim.CORP_ID, "currentOpenUserId": sim.ADMIN_OPEN_USER_ID}
    assert query(sim, forged, sqi)["errorCode"] == 20016
    a = auth(sim)
    assert query(sim, {**a, "corpId": "FSCID_OTHER"}, sqi)["errorCode"] == 20016
    no_user = {k: v for k, v in a.items() if k != "currentOpenUserId"}
    assert query(sim, no_user, sqi)["errorCode"] == 10010
    assert query(sim, {**a, "currentOpenUserId": "FSUID_" + "9" * 32}, sqi)["errorCode"] == 20012
    ok = post(sim, "/cgi/crm/v2/data/query", {**a, "data": {"dataObjectApiName": "AccountObj",
                                                            "search_query_info": sqi}}, trace=False)
    assert ok["errorCode"] == 0  # thirdTraceId is optional


def test_header_style_credentials_use_employee_ids(sim: FxiaokeSimulator) -> None:
    t = post(sim, "/oauth2.0/token", {"appId": sim.app_id, "appSecret": sim.app_secret,
                                      "permanentCode": sim.permanent_code, "grantType": "app_secret"})
    assert t["errorCode"] == 0 and t["ea"] == sim.EA and t["accessToken"]
    headers = {"authorization": f"Bearer {t['accessToken']}", "x-fs-ea": t["ea"], "x-fs-userid": "1000"}
    res = post(sim, "/cgi/crm/v2/data/query", {"data": {"dataObjectApiName": "AccountObj",
                                                        "search_query_info": {"limit": 5, "offset": 0}}},
               headers=headers)
    assert res["errorCode"] == 0
    assert all(o.isdigit() for r in res["data"]["dataList"] for o in r["owner"])
    forged = dict(headers, authorization="Bearer FORGED")
    assert post(sim, "/cgi/crm/v2/data/query", {"data": {}}, headers=forged)["errorCode"] == 20016


def test_get_by_mobile(sim: FxiaokeSimulator) -> None:
    a = auth(sim)
    found = post(sim, "/cgi/user/getByMobile", {"corpAccessToken": a["corpAccessToken"], "corpId": a["corpId"],
                                                "mobile": sim.ADMIN_MOBILE})
    assert found["empList"][0]["openUserId"] == sim.ADMIN_OPEN_USER_ID
    none = post(sim, "/cgi/user/getByMobile", {"corpAccessToken": a["corpAccessToken"], "corpId": a["corpId"],
                                               "mobile": "13712345678"})
    assert none["errorCode"] == 0 and none["empList"] == []


def test_query_paging_limits(sim: FxiaokeSimulator) -> None:
    a = auth(sim)
    assert query(sim, a, {"limit": 101, "offset": 0})["errorCode"] == 15002
    assert query(sim, a, {"limit": 10, "offset": 5})["errorCode"] == 15002
    deep = query(sim, a, {"limit": 100, "offset": 10_100})
    assert deep["errorCode"] == 10013 and deep["errorMessage"] == "offset out of range 10000"
    assert query(sim, a, {"limit": 100, "offset": 10_000})["errorCode"] == 0
    scalar = {"limit": 5, "offset": 0, "filters": [{"field_name": "name", "operator": "EQ", "field_values": "x"}]}
    assert query(sim, a, scalar)["errorCode"] == 15002
    neq = {"limit": 5, "offset": 0, "filters": [{"field_name": "name", "operator": "NEQ", "field_values": ["x"]}]}
    assert query(sim, a, neq)["errorCode"] == 15002  # not-equal is N
    missing = post(sim, "/cgi/crm/v2/data/query", {**a, "data": {"dataObjectApiName": "AccountObj"}})
    assert missing["errorCode"] != 0


def test_query_offset_paging_total_and_filters(sim: FxiaokeSimulator) -> None:
    a = auth(sim)
    seen: list[str] = []
    offset = 0
    while True:
        res = query(sim, a, {"limit": 10, "offset": offset, "filters": [], "orders": [], "fieldProjection": []})
        data = res["data"]
        seen += [r["_id"] for r in data["dataList"]]
        assert data["total"] == 25 and data["offset"] == offset and data["limit"] == 10
        if data["total"] <= offset + 10:
            break
        offset += 10
    assert len(seen) == len(set(seen)) == 25
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in seen)
    rows = sim.records("AccountObj")
    pivot = sorted(r["last_modified_time"] for r in rows)[12]
    gte = query(sim, a, {"limit": 100, "offset": 0, "filters": [
        {"field_name": "last_modified_time", "operator": "GTE", "field_values": [str(pivot)]}],
        "orders": [{"fieldName": "last_modified_time", "isAsc": False}], "fieldProjection": ["name"]})
    got = gte["data"]["dataList"]
    assert len(got) == sum(1 for r in rows if r["last_modified_time"] >= pivot)
    assert set(got[0]) == {"_id", "name"}  # projection (+ _id)
    between = query(sim, a, {"limit": 100, "offset": 0, "filters": [
        {"field_name": "last_modified_time", "operator": "BETWEEN", "field_values": [pivot, pivot]}]})
    assert {r["last_modified_time"] for r in between["data"]["dataList"]} == {pivot}
    no_total = post(sim, "/cgi/crm/v2/data/query", {**a, "data": {
        "dataObjectApiName": "AccountObj", "find_explicit_total_num": False,
        "search_query_info": {"limit": 5, "offset": 0}}})
    assert no_total["data"]["total"] == 0 and len(no_total["data"]["dataList"]) == 5


def test_preset_and_custom_paths_do_not_mix(sim: FxiaokeSimulator) -> None:
    a = auth(sim)
    sqi = {"limit": 1, "offset": 0}
    assert query(sim, a, sqi, path="/cgi/crm/custom/v2/data/query")["errorCode"] == 15002
    assert query(sim, a, sqi, obj="object_party__c")["errorCode"] == 15002
    assert query(sim, a, sqi, obj="object_party__c", path="/cgi/crm/custom/v2/data/query")["errorCode"] == 0
    assert query(sim, a, sqi, obj="NoSuchObj")["errorCode"] == BUSINESS_CODES["OBJECT_NOT_FOUND"]


def test_create_get_update_invalid_delete_recover(sim: FxiaokeSimulator) -> None:
    a = auth(sim)
    flags = {"triggerWorkFlow": False, "triggerApprovalFlow": False}
    bad = post(sim, "/cgi/crm/v2/data/create", {**a, **flags, "data": {"object_data": {
        "dataObjectApiName": "AccountObj", "tel": "021-1"}}})
    assert bad["errorCode"] == BUSINESS_CODES["REQUIRED_MISSING"]
    made = post(sim, "/cgi/crm/v2/data/create", {**a, **flags, "data": {"object_data": {
        "dataObjectApiName": "AccountObj", "name": "上海示例科技有限公司", "party_id__c": "P-1",
        "owner": [sim.ADMIN_OPEN_USER_ID], "record_type": "default__c"}}})
    rid = made["dataId"]
    assert made["errorCode"] == 0 and len(rid) == 24
    dup = post(sim, "/cgi/crm/v2/data/create", {**a, **flags, "data": {"object_data": {
        "dataObjectApiName": "AccountObj", "name": "另一个", "party_id__c": "P-1"}}})
    assert dup["errorCode"] == BUSINESS_CODES["DUPLICATE"]
    got = post(sim, "/cgi/crm/v2/data/get", {**a, "data": {"dataObjectApiName": "AccountObj", "objectDataId": rid}})
    rec = got["data"]
    assert rec["_id"] == rid and rec["life_status"] == "normal" and rec["is_deleted"] is False
    assert rec["owner"] == [sim.ADMIN_OPEN_USER_ID] and rec["record_type"] == "default__c"
    assert rec["object_describe_api_name"] == "AccountObj" and isinstance(rec["create_time"], int)
    upd = post(sim, "/cgi/crm/v2/data/update", {**a, **flags, "data": {"object_data": {
        "_id": rid, "dataObjectApiName": "AccountObj", "tel": "021-12345678", "owner": ["FSUID_x"]}}})
    assert upd["errorCode"] == 0
    rec2 = post(sim, "/cgi/crm/v2/data/get", {**a, "data": {"dataObjectApiName": "AccountObj",
                                                            "objectDataId": rid}})["data"]
    assert rec2["tel"] == "021-12345678" and rec2["name"] == rec["name"]  # PATCH
    assert rec2["owner"] == rec["owner"]  # owner cannot change through update
    assert rec2["last_modified_time"] >= rec["last_modified_time"]
    early = post(sim, "/cgi/crm/v2/data/delete", {**a, "data": {"dataObjectApiName": "AccountObj", "idList": [rid]}})
    assert early["errorCode"] == BUSINESS_CODES["NOT_INVALIDATED"]
    inv = post(sim, "/cgi/crm/v2/data/invalid", {**a, "data": {"dataObjectApiName": "AccountObj",
                                                               "object_data_id": rid}})
    assert inv["errorCode"] == 0
    rec3 = post(sim, "/cgi/crm/v2/data/get", {**a, "data": {"dataObjectApiName": "AccountObj",
                                                            "objectDataId": rid}})["data"]
    assert rec3["life_status"] == "invalid"
    rec_ = post(sim, "/cgi/crm/v2/data/recover", {**a, "data": {"dataObjectApiName": "AccountObj", "idList": [rid]}})
    assert rec_["errorCode"] == 0 and sim.count("AccountObj") == 26
    post(sim, "/cgi/crm/v2/data/invalid", {**a, "data": {"dataObjectApiName": "AccountObj", "object_data_id": rid}})
    gone = post(sim, "/cgi/crm/v2/data/delete", {**a, "data": {"dataObjectApiName": "AccountObj", "idList": [rid]}})
    assert gone["errorCode"] == 0 and sim.count("AccountObj", include_invalid=True) == 25
    missing = post(sim, "/cgi/crm/v2/data/get", {**a, "data": {"dataObjectApiName": "AccountObj",
                                                               "objectDataId": rid}})
    assert missing["errorCode"] == BUSINESS_CODES["NOT_FOUND"]


def test_value_formats_are_checked(sim: FxiaokeSimulator) -> None:
    a = auth(sim)

    def create(**fields: Any) -> int:
        return post(sim, "/cgi/crm/v2/data/create", {**a, "triggerWorkFlow": False, "data": {"object_data": {
            "dataObjectApiName": "AccountObj", "name": "格式", **fields}}})["errorCode"]

    code = BUSINESS_CODES["INVALID_VALUE"]
    assert create(segment__c="Mass") == code            # a label or wrong case is not an option value
    assert create(rm__c=sim.ADMIN_OPEN_USER_ID) == code  # employee fields are lists even when single
    assert create(consent_marketing__c="true") == code
    assert create(kyc_next_review__c="2026-01-01") == code  # dates are epoch ms
    assert create(owner=sim.ADMIN_OPEN_USER_ID) == code  # owner is a list
    assert create(segment__c="MASS", rm__c=["1001"], kyc_next_review__c=1767225600000,
                  consent_marketing__c=True) == 0


def test_change_owner_with_capital_data(sim: FxiaokeSimulator) -> None:
    a = auth(sim)
    rid = sim.records("AccountObj")[0]["_id"]
    rm = sim.employees[1]["openUserId"]
    res = post(sim, "/cgi/crm/v2/data/changeOwner", {**a, "data": {"dataObjectApiName": "AccountObj",
                                                                   "Data": [{"objectDataId": rid, "ownerId": [rm]}]}})
    assert res["errorCode"] == 0
    assert {r["_id"]: r for r in sim.records("AccountObj")}[rid]["owner"] == [rm]
    as_string = post(sim, "/cgi/crm/v2/data/changeOwner", {**a, "data": {
        "dataObjectApiName": "AccountObj", "Data": [{"objectDataId": rid, "ownerId": "[1000]"}]}})
    assert as_string["errorCode"] == 0  # the docs' string form
    assert {r["_id"]: r for r in sim.records("AccountObj")}[rid]["owner"] == [sim.ADMIN_OPEN_USER_ID]


def test_trigger_flags_default_true() -> None:
    with FxiaokeSimulator(Knobs(records=1, extra={"contacts": 0,
                                                  "approval_flow_objects": ["AccountObj"]})) as sim:
        a = auth(sim)
        made = post(sim, "/cgi/crm/v2/data/create", {**a, "data": {"object_data": {
            "dataObjectApiName": "AccountObj", "name": "默认触发"}}})
        assert sim.workflow_runs["AccountObj"] == 1
        locked = post(sim, "/cgi/crm/v2/data/update", {**a, "data": {"object_data": {
            "_id": made["dataId"], "dataObjectApiName": "AccountObj", "tel": "1"}}})
        assert locked["errorCode"] == BUSINESS_CODES["LOCKED"]


def test_describe_accepts_top_level_and_nested_api_name(sim: FxiaokeSimulator) -> None:
    a = auth(sim)
    top = post(sim, "/cgi/crm/v2/object/describe", {**a, "apiName": "ContactObj", "includeDetail": True})
    nested = post(sim, "/cgi/crm/v2/object/describe", {**a, "includeDetail": True, "data": {"apiName": "ContactObj"}})
    assert top["data"]["describe"] == nested["data"]["describe"]
    fields = top["data"]["describe"]["fields"]
    assert isinstance(fields, dict) and fields["party_id__c"]["is_unique"] is True
    assert {"name", "mobile", "tel", "email", "account_id"} <= set(fields)
    objs = post(sim, "/cgi/crm/v2/object/list", a)["data"]["objects"]
    assert {o["describeApiName"] for o in objs} >= {"AccountObj", "ContactObj", "object_party__c"}


def test_find_one(sim: FxiaokeSimulator) -> None:
    a = auth(sim)
    row = sim.records("ContactObj")[2]
    res = post(sim, "/cgi/crm/custom/v2/data/findOne", {**a, "data": {
        "dataObjectApiName": "ContactObj", "field_projection": [],
        "search_query_info": {"filters": [{"field_name": "party_id__c", "operator": "EQ",
                                           "field_values": [row["party_id__c"]]}]}}})
    assert res["data"]["objectData"]["_id"] == row["_id"]


@pytest.mark.parametrize(("fault", "code"), [(Fault.SERVER_ERROR, -1), (Fault.THROTTLE, 30004),
                                             (Fault.TOKEN_EXPIRED, 20016)])
def test_faults_render_in_fxiaoke_shape(sim: FxiaokeSimulator, fault: Fault, code: int) -> None:
    a = auth(sim)
    sim.inject(fault)
    res = query(sim, a, {"limit": 1, "offset": 0})
    assert res["errorCode"] == code and res["errorMessage"] and res["traceId"]


def test_per_second_rate_limit_answers_throttle_code() -> None:
    with FxiaokeSimulator(Knobs(records=1, rate_limit=3, extra={"contacts": 0})) as sim:
        a = auth(sim)
        codes = [query(sim, a, {"limit": 1, "offset": 0})["errorCode"] for _ in range(6)]
        assert 30004 in codes and codes[0] == 0


def test_seeding_is_deterministic() -> None:
    one = FxiaokeSimulator(Knobs(seed=3, records=20, extra={"contacts": 4}))
    two = FxiaokeSimulator(Knobs(seed=3, records=20, extra={"contacts": 4}))
    assert one.records("AccountObj") == two.records("AccountObj")
    assert one.records("ContactObj") == two.records("ContactObj")
    for r in one.records("ContactObj"):
        assert len(r["mobile"]) == 11 and r["mobile"][0] == "1" and r["account_id"]
    assert FxiaokeSimulator(Knobs(seed=4, records=20)).records("AccountObj") != one.records("AccountObj")


def test_cli_serves_and_prints_the_base_url() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "crmbridge", "simulate", "fxiaoke", "--port", "0",
                             "--records", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("fxiaoke simulator serving http://127.0.0.1:"), line
        url = line.split()[-1]
        res = requests.post(f"{url}/cgi/corpAccessToken/get/V2", json={}, timeout=5).json()
        assert res["errorCode"] == 10001
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
