"""Error codes and shapes crmbridge does not know: never an assert, KeyError or IndexError. A call-level unknown
code takes the branch of its HTTP status and names the code; a record-level one is a record error naming the code
and the field. Writes that all fail on a field the org lacks come back as per-record FAILED results (simulator)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import responses
from zoho_helpers import FAST, make_adapter

from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.adapters.zoho import ZohoAdapter, ZohoConfig
from crmbridge.adapters.zoho.errors import retry_after
from crmbridge.core.errors import (
    PermissionDeniedError,
    RecordRejectedError,
    RequestError,
    ThrottledError,
    TransientServerError,
)

BASE = "https://www.zohoapis.com.cn"
TOKEN = "https://accounts.zoho.com.cn/oauth/v2/token"


def _cn_adapter() -> ZohoAdapter:
    os.environ.setdefault("CRMBRIDGE_TEST_ZOHO_CN_SECRET", "x")
    cfg = ZohoConfig(client_id="1000.CN", client_secret="env:CRMBRIDGE_TEST_ZOHO_CN_SECRET",
                     refresh_token="env:CRMBRIDGE_TEST_ZOHO_CN_SECRET", retry=FAST)
    return ZohoAdapter(cfg, sleep=lambda s: None)


def _token() -> None:
    responses.add(responses.POST, TOKEN, json={"access_token": "1000.a.b", "expires_in": 3600, "api_domain": BASE})


def _error(code: str, **details: Any) -> dict[str, Any]:
    return {"code": code, "details": details, "message": "something new", "status": "error"}


@responses.activate
@pytest.mark.parametrize(("status", "expected"), [
    (400, RequestError), (403, PermissionDeniedError), (429, ThrottledError), (503, TransientServerError)])
def test_unknown_call_level_code_takes_its_status_branch_and_names_the_code(status: int, expected: type) -> None:
    _token()
    responses.add(responses.GET, f"{BASE}/crm/v8/Contacts", json=_error("SHINY_NEW_CODE", param_name="x"),
                  status=status)
    with pytest.raises(expected) as info:
        list(_cn_adapter().extract("Contacts", fields=["Last_Name"]))
    assert type(info.value) is expected
    assert info.value.vendor_code == "SHINY_NEW_CODE" and "SHINY_NEW_CODE" in str(info.value)
    assert "something new" not in str(info.value), "the vendor's text may echo values: never copied"


@responses.activate
@pytest.mark.parametrize("body", [json.dumps({"message": "Bad Gateway"}), json.dumps([1, 2]), "{\"data\": []}"])
def test_error_status_with_an_unknown_json_shape_hits_the_catch_all(body: str) -> None:
    _token()
    responses.add(responses.GET, f"{BASE}/crm/v8/Contacts", body=body, status=400,
                  content_type="application/json")
    with pytest.raises(RequestError) as info:
        list(_cn_adapter().extract("Contacts", fields=["Last_Name"]))
    assert info.value.status == 400 and "without a code" in str(info.value)


@responses.activate
@pytest.mark.parametrize("status", [207, 400])
def test_unknown_record_level_code_is_a_record_error_with_code_and_field(status: int) -> None:
    _token()
    ok = {"code": "SUCCESS", "action": "insert", "duplicate_field": None, "message": "record added",
          "status": "success", "details": {"id": "5725767000000900001", "Modified_Time": "2026-01-01T08:00:00+08:00"}}
    bad = _error("SHINY_NEW_CODE", api_name="Home_Branch", json_path="$.data[1].Home_Branch")
    data = [ok, bad] if status == 207 else [bad, bad]
    responses.add(responses.POST, f"{BASE}/crm/v8/Contacts/upsert", json={"data": data}, status=status)
    items = [WriteItem(key=f"k{i}", payload={"Last_Name": "孙", "Home_Branch": "BR0001"}) for i in range(2)]
    res = _cn_adapter().write("Contacts", items)
    failed = [r for r in res if r.status is WriteStatus.FAILED]
    assert len(failed) == (1 if status == 207 else 2)
    for r in failed:
        assert isinstance(r.error, RecordRejectedError)
        assert (r.error.code, r.error.field) == ("SHINY_NEW_CODE", "Home_Branch")
        assert "SHINY_NEW_CODE" in str(r.error) and "Home_Branch" in str(r.error)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    import requests

    resp = requests.Response()
    resp.headers["Retry-After"] = "12"
    assert retry_after(resp) == 12.0
    resp.headers["Retry-After"] = "Wed, 21 Oct 2015 07:28:00 GMT"   # in the past: no wait
    assert retry_after(resp) == 0.0
    resp.headers["Retry-After"] = "soon"
    assert retry_after(resp) is None


# ---------------------------------------------------------------------- a field the org lacks (simulator)
def test_writes_that_all_fail_on_an_unknown_field_are_failed_results_naming_it(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    """The mapping sends Wealth_Tier, which this org does not have: Zoho refuses every record with INVALID_DATA
    ('the field api name given seems to be invalid', details.api_name) and HTTP 400. Each comes back FAILED with
    the field and the code, so the run cannot report success."""
    sim = zoho_sim(records=0)
    adapter = make_adapter(sim)
    items = [WriteItem(key=f"party-{i}", payload={"Last_Name": "周", "Wealth_Tier": "GOLD"}, key_field="Party_ID")
             for i in range(150)]   # two calls of 100 and 50
    res = adapter.write("Contacts", items)
    assert adapter.stats.by_status["400"] == 2
    assert [r.status for r in res] == [WriteStatus.FAILED] * 150
    for i, r in enumerate(res):
        assert isinstance(r.error, RecordRejectedError)
        assert (r.error.code, r.error.field) == ("INVALID_DATA", "Wealth_Tier")
        assert r.error.where == f"$.data[{i % 100}].Wealth_Tier"
        assert "no field with this API name" in str(r.error) and "INVALID_DATA" in str(r.error)
        assert "GOLD" not in str(r.error)
    assert sim.count("Contacts") == 0


def test_simulator_refuses_unknown_fields_like_zoho(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    import requests

    sim = zoho_sim(records=0)
    token = requests.post(f"{sim.url}/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": sim.client_id, "client_secret": sim.client_secret,
        "refresh_token": sim.refresh_token}, timeout=5).json()["access_token"]
    resp = requests.post(f"{sim.url}/crm/v8/Contacts/upsert", headers={"Authorization": f"Zoho-oauthtoken {token}"},
                         json={"data": [{"Last_Name": "吴", "Wealth_Tier": "GOLD"}], "trigger": []}, timeout=5)
    assert resp.status_code == 400
    assert resp.json() == {"data": [{"code": "INVALID_DATA", "details": {
        "api_name": "Wealth_Tier", "json_path": "$.data[0].Wealth_Tier"},
        "message": "the field api name given seems to be invalid", "status": "error"}]}


@responses.activate
def test_odd_shapes_inside_a_multiple_errors_item_are_still_a_record_error() -> None:
    _token()
    odd = {"code": "MULTIPLE_OR_MULTI_ERRORS", "status": "error", "message": "Multiple errors in the request",
           "details": {"errors": [{"code": "DUPLICATE_DATA", "details": "not an object"}, "junk",
                                  {"code": "INVALID_DATA", "details": {"api_name": "Email"}}]}}
    responses.add(responses.POST, f"{BASE}/crm/v8/Contacts/upsert", json={"data": [odd]}, status=400)
    [res] = _cn_adapter().write("Contacts", [WriteItem(key="k", payload={"Last_Name": "冯"})])
    assert res.status is WriteStatus.FAILED and res.error is not None
    assert res.error.code == "MULTIPLE_OR_MULTI_ERRORS" and "DUPLICATE_DATA on None; INVALID_DATA on Email" in str(
        res.error)
