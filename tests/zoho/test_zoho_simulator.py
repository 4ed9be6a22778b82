"""The Zoho simulator speaks Zoho's HTTP: paths, status codes, headers and bodies of docs/vendors/zoho.md, checked
with raw HTTP (no crmbridge adapter in between)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import requests

from crmbridge.adapters.registry import simulator_class
from crmbridge.adapters.simulator import Fault, Knobs
from crmbridge.adapters.zoho.metadata import MODULES
from crmbridge.adapters.zoho.simulator import ZohoSimulator

ZOHO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")


@pytest.fixture(scope="module")
def sim() -> Iterator[ZohoSimulator]:
    with ZohoSimulator(Knobs(records=2300, seed=3, extra={"token_limit": 0})) as s:
        yield s


@pytest.fixture(scope="module")
def auth(sim: ZohoSimulator) -> dict[str, str]:
    resp = requests.post(f"{sim.url}/oauth/v2/token", data={
        "refresh_token": sim.refresh_token, "client_id": sim.client_id, "client_secret": sim.client_secret,
        "grant_type": "refresh_token"}, timeout=5)
    return {"Authorization": f"Zoho-oauthtoken {resp.json()['access_token']}"}


def _get(sim: ZohoSimulator, auth: dict[str, str], path: str, headers: dict[str, str] | None = None,
         **params: object) -> requests.Response:
    return requests.get(f"{sim.url}/crm/v8{path}", params=params, headers={**auth, **(headers or {})}, timeout=10)


def _code(resp: requests.Response) -> str:
    return resp.json()["code"]


# ---------------------------------------------------------------------- OAuth
def test_token_grant_merges_query_and_form_parameters(sim: ZohoSimulator) -> None:
    url = f"{sim.url}/oauth/v2/token"
    in_query = requests.post(url, params={"refresh_token": sim.refresh_token, "client_id": sim.client_id,
                                          "client_secret": sim.client_secret, "grant_type": "refresh_token"},
                             timeout=5)
    mixed = requests.post(url, params={"grant_type": "refresh_token", "client_id": sim.client_id},
                          data={"refresh_token": sim.refresh_token, "client_secret": sim.client_secret}, timeout=5)
    for resp in (in_query, mixed):
        body = resp.json()
        assert resp.status_code == 200 and re.match(r"^1000\.[0-9a-f]{32}\.[0-9a-f]{32}$", body["access_token"])
        assert body["expires_in"] == 3600 and body["api_domain"] == sim.url and body["token_type"] == "Bearer"
        assert "refresh_token" not in body


@pytest.mark.parametrize(("change", "error"), [
    ({"client_secret": "wrong"}, "invalid_client"),
    ({"client_id": "1000.OTHER"}, "invalid_client"),
    ({"refresh_token": "1000.revoked.x"}, "invalid_code"),
])
def test_token_errors_are_http_200_with_an_error_key(sim: ZohoSimulator, change: dict[str, str],
                                                     error: str) -> None:
    form = {"refresh_token": sim.refresh_token, "client_id": sim.client_id, "client_secret": sim.client_secret,
            "grant_type": "refresh_token", **change}
    resp = requests.post(f"{sim.url}/oauth/v2/token", data=form, timeout=5)
    assert resp.status_code == 200 and resp.json() == {"error": error}


def test_token_throttle_after_ten_grants_in_ten_minutes() -> None:
    with ZohoSimulator(Knobs(records=0)) as s:
        form = {"refresh_token": s.refresh_token, "client_id": s.client_id, "client_secret": s.client_secret,
                "grant_type": "refresh_token"}
        bodies = [requests.post(f"{s.url}/oauth/v2/token", data=form, timeout=5).json() for _ in range(11)]
    assert all("access_token" in b for b in bodies[:10])
    assert bodies[10]["error"] == "Access Denied" and bodies[10]["status"] == "failure"
    assert bodies[10]["error_description"].startswith("You have made too many requests continuously")


def test_authorization_header_checks(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    token = auth["Authorization"].split()[1]
    cases = [({}, 401, "AUTHENTICATION_FAILURE"), ({"Authorization": f"Bearer {token}"}, 401,
                                                    "AUTHENTICATION_FAILURE"),
             ({"Authorization": "Zoho-oauthtoken 1000.nope.nope"}, 401, "INVALID_TOKEN")]
    for headers, status, code in cases:
        resp = requests.get(f"{sim.url}/crm/v8/org", headers=headers, timeout=5)
        assert (resp.status_code, _code(resp)) == (status, code)
        assert resp.json()["status"] == "error" and "data" not in resp.json()


def test_token_lifetime_knob_expires_tokens() -> None:
    with ZohoSimulator(Knobs(records=1, token_lifetime=0.3)) as s:
        form = {"refresh_token": s.refresh_token, "client_id": s.client_id, "client_secret": s.client_secret,
                "grant_type": "refresh_token"}
        token = requests.post(f"{s.url}/oauth/v2/token", data=form, timeout=5).json()["access_token"]
        headers = {"Authorization": f"Zoho-oauthtoken {token}"}
        assert requests.get(f"{s.url}/crm/v8/org", headers=headers, timeout=5).status_code == 200
        time.sleep(0.4)
        resp = requests.get(f"{s.url}/crm/v8/org", headers=headers, timeout=5)
    assert (resp.status_code, _code(resp)) == (401, "INVALID_TOKEN")


# ---------------------------------------------------------------------- record lists
def test_list_shape_ids_and_times(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    resp = _get(sim, auth, "/Contacts", fields="Last_Name,Email,Modified_Time", per_page=5,
                sort_by="Modified_Time", sort_order="asc")
    body = resp.json()
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    assert set(body["data"][0]) == {"Last_Name", "Email", "Modified_Time", "id"}
    assert all(isinstance(r["id"], str) and re.fullmatch(r"\d{18,19}", r["id"]) for r in body["data"])
    assert all(ZOHO_TIME.match(r["Modified_Time"]) for r in body["data"])
    times = [r["Modified_Time"] for r in body["data"]]
    assert times == sorted(times)
    info = body["info"]
    assert info["count"] == 5 and info["per_page"] == 5 and info["page"] == 1 and info["more_records"] is True
    assert info["next_page_token"] and info["sort_by"] == "Modified_Time" and info["sort_order"] == "asc"
    assert {"previous_page_token", "page_token_expiry", "call", "email"} <= set(info)


def test_default_order_is_id_descending(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    ids = [int(r["id"]) for r in _get(sim, auth, "/Contacts", fields="Last_Name", per_page=50).json()["data"]]
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(("params", "status", "code"), [
    ({}, 400, "REQUIRED_PARAM_MISSING"),
    ({"fields": ",".join(f"F{i}" for i in range(51))}, 400, "LIMIT_EXCEEDED"),
    ({"fields": "No_Such_Field"}, 400, "INVALID_DATA"),
    ({"fields": "Last_Name", "per_page": 201}, 400, "INVALID_DATA"),
    ({"fields": "Last_Name", "sort_by": "Email"}, 400, "INVALID_DATA"),
    ({"fields": "Last_Name", "page": 1, "page_token": "abc"}, 400, "AMBIGUITY_DURING_PROCESSING"),
    ({"fields": "Last_Name", "page_token": "abc"}, 400, "INVALID_DATA"),
])
def test_list_parameter_errors(sim: ZohoSimulator, auth: dict[str, str], params: dict[str, object], status: int,
                               code: str) -> None:
    resp = _get(sim, auth, "/Contacts", **params)
    assert (resp.status_code, _code(resp)) == (status, code)


def test_discrete_pagination_limit_has_zohos_exact_body(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    assert _get(sim, auth, "/Contacts", fields="Last_Name", page=10, per_page=200).status_code == 200
    resp = _get(sim, auth, "/Contacts", fields="Last_Name", page=11, per_page=200)
    assert resp.status_code == 400
    assert resp.json() == {"code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED", "details": {"limit": 2000},
                           "message": "You can only get the first 2000 records without using page_token param",
                           "status": "error"}


def test_page_token_is_bound_to_the_other_parameters(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    first = _get(sim, auth, "/Contacts", fields="Last_Name", per_page=200, page=10).json()
    token = first["info"]["next_page_token"]
    nxt = _get(sim, auth, "/Contacts", fields="Last_Name", per_page=200, page_token=token)
    assert nxt.status_code == 200 and nxt.json()["info"]["page"] == 11
    seen = {r["id"] for r in first["data"]}
    assert not seen & {r["id"] for r in nxt.json()["data"]}
    other = _get(sim, auth, "/Contacts", fields="Last_Name,Email", per_page=200, page_token=token)
    assert (other.status_code, _code(other)) == (400, "TOKEN_BOUND_DATA_MISMATCH")


def test_if_modified_since_304_and_204_have_no_body(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    newest = _get(sim, auth, "/Contacts", fields="Modified_Time", sort_by="Modified_Time", per_page=1).json()
    stamp = newest["data"][0]["Modified_Time"]
    not_modified = _get(sim, auth, "/Contacts", {"If-Modified-Since": stamp}, fields="Last_Name")
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert "Content-Type" not in not_modified.headers
    changed = _get(sim, auth, "/Contacts", {"If-Modified-Since": "2025-01-15T10:00:00+08:00"}, fields="Last_Name")
    assert changed.status_code == 200
    with ZohoSimulator(Knobs(records=0)) as empty:
        form = {"refresh_token": empty.refresh_token, "client_id": empty.client_id,
                "client_secret": empty.client_secret, "grant_type": "refresh_token"}
        token = requests.post(f"{empty.url}/oauth/v2/token", data=form, timeout=5).json()["access_token"]
        resp = requests.get(f"{empty.url}/crm/v8/Contacts", params={"fields": "Last_Name"},
                            headers={"Authorization": f"Zoho-oauthtoken {token}"}, timeout=5)
    assert resp.status_code == 204 and resp.content == b"" and "Content-Type" not in resp.headers


def test_if_modified_since_comparison_is_a_knob() -> None:
    for inclusive, expected in ((False, 304), (True, 200)):
        with ZohoSimulator(Knobs(records=1, extra={"ims_inclusive": inclusive})) as s:
            form = {"refresh_token": s.refresh_token, "client_id": s.client_id, "client_secret": s.client_secret,
                    "grant_type": "refresh_token"}
            headers = {"Authorization": "Zoho-oauthtoken "
                       + requests.post(f"{s.url}/oauth/v2/token", data=form, timeout=5).json()["access_token"]}
            stamp = next(iter(s.stores["Contacts"].records.values()))["Modified_Time"]
            from crmbridge.adapters.zoho.simulator import _fmt

            headers["If-Modified-Since"] = _fmt(stamp)
            resp = requests.get(f"{s.url}/crm/v8/Contacts", params={"fields": "Last_Name"}, headers=headers,
                                timeout=5)
            assert resp.status_code == expected


def test_single_get_carries_system_keys(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    rid = next(iter(sim.stores["Contacts"].records))
    rec = _get(sim, auth, f"/Contacts/{rid}").json()["data"][0]
    assert rec["id"] == rid and rec["Owner"]["email"] and rec["$currency_symbol"] == "¥"
    assert ZOHO_TIME.match(rec["Created_Time"]) and rec["Record_Status__s"] == "Available"
    assert _get(sim, auth, "/Contacts/5725767000099999999").status_code == 204
    assert (_get(sim, auth, "/Leads", fields="Last_Name").json()["code"]) == "INVALID_MODULE"
    assert _get(sim, auth, "/Contacts/x/y/z").status_code == 404


# ---------------------------------------------------------------------- writes
def _post(sim: ZohoSimulator, auth: dict[str, str], path: str, body: object,
          headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{sim.url}/crm/v8{path}", json=body, headers={**auth, **(headers or {})}, timeout=10)


def test_insert_201_and_upsert_200_bodies(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    created = _post(sim, auth, "/Contacts", {"data": [{"Last_Name": "周", "Party_ID": "sim-w-1"}], "trigger": []})
    item = created.json()["data"][0]
    assert created.status_code == 201 and item["code"] == "SUCCESS" and item["message"] == "record added"
    assert set(item["details"]) == {"Modified_Time", "Modified_By", "Created_Time", "id", "Created_By"}
    upsert = _post(sim, auth, "/Contacts/upsert", {"data": [{"Last_Name": "周", "Party_ID": "SIM-W-1"},
                                                            {"Last_Name": "吴", "Party_ID": "sim-w-2"}],
                                                   "duplicate_check_fields": ["Party_ID"], "trigger": []})
    a, b = upsert.json()["data"]
    assert upsert.status_code == 200
    assert (a["action"], a["duplicate_field"], a["message"]) == ("update", "Party_ID", "record updated")
    assert a["details"]["id"] == item["details"]["id"]  # unique fields match case-insensitively
    assert (b["action"], b["duplicate_field"], b["message"]) == ("insert", None, "record added")


def test_insert_duplicate_unique_value_and_mandatory(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    _post(sim, auth, "/Contacts", {"data": [{"Last_Name": "郑", "Party_ID": "sim-dup"}]})
    resp = _post(sim, auth, "/Contacts", {"data": [{"Last_Name": "郑", "Party_ID": "sim-dup"},
                                                   {"First_Name": "无"}]})
    dup, missing = resp.json()["data"]
    assert resp.status_code == 400
    assert dup["code"] == "DUPLICATE_DATA" and dup["details"]["api_name"] == "Party_ID"
    assert dup["details"]["json_path"] == "$.data[0].Party_ID" and dup["details"]["duplicate_record"]["id"]
    assert missing == {"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Last_Name",
                                                                  "json_path": "$.data[1].Last_Name"},
                       "message": "required field not found", "status": "error"}


def test_207_type_errors_and_the_100_record_limit(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    rows = [{"Last_Name": "钱"}, {"Last_Name": "孙", "Date_of_Birth": "1990/1/1"}, {"Last_Name": "x" * 81}]
    resp = _post(sim, auth, "/Contacts", {"data": rows})
    ok, bad_type, too_long = resp.json()["data"]
    assert resp.status_code == 207 and ok["status"] == "success"
    assert bad_type["details"] == {"expected_data_type": "date", "api_name": "Date_of_Birth",
                                   "json_path": "$.data[1].Date_of_Birth"}
    assert too_long["details"]["maximum_length"] == 80 and too_long["code"] == "INVALID_DATA"
    resp = _post(sim, auth, "/Contacts", {"data": [{"Last_Name": "李"}] * 101})
    assert (resp.status_code, _code(resp)) == (400, "LIMIT_EXCEEDED")


def test_if_unmodified_since_gives_412_already_modified(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    rid = _post(sim, auth, "/Contacts", {"data": [{"Last_Name": "冯"}]}).json()["data"][0]["details"]["id"]
    resp = requests.put(f"{sim.url}/crm/v8/Contacts", json={"data": [{"id": rid, "Title": "经理"}]},
                        headers={**auth, "If-Unmodified-Since": "2020-01-01T00:00:00+08:00"}, timeout=5)
    item = resp.json()["data"][0]
    assert resp.status_code == 412 and item["code"] == "ALREADY_MODIFIED"
    assert item["details"]["id"] == rid and ZOHO_TIME.match(item["details"]["Modified_Time"])


def test_delete_and_deleted_records(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    rid = _post(sim, auth, "/Contacts", {"data": [{"Last_Name": "褚", "First_Name": "一"}]}).json()["data"][0][
        "details"]["id"]
    resp = requests.delete(f"{sim.url}/crm/v8/Contacts", params={"ids": f"{rid},5725767000099999998"},
                           headers=auth, timeout=5)
    assert resp.status_code == 207
    assert resp.json()["data"][0] == {"code": "SUCCESS", "details": {"id": rid}, "message": "record deleted",
                                      "status": "success"}
    assert resp.json()["data"][1]["code"] == "INVALID_DATA"
    listed = _get(sim, auth, "/Contacts/deleted", type="all").json()
    entry = next(e for e in listed["data"] if e["id"] == rid)
    assert entry["type"] == "recycle" and entry["display_name"] == "一 褚" and ZOHO_TIME.match(entry["deleted_time"])
    assert set(entry) == {"deleted_by", "id", "display_name", "type", "created_by", "deleted_time"}
    bogus = _get(sim, auth, "/Contacts/deleted", type="bogus")
    assert bogus.status_code == 400 and bogus.json()["data"][0]["code"] == "PATTERN_NOT_MATCHED"
    ids = ",".join(str(i) for i in range(101))
    too_many = requests.delete(f"{sim.url}/crm/v8/Contacts", params={"ids": ids}, headers=auth, timeout=5)
    assert too_many.json()["details"] == {"limit": "100", "param_name": "ids"}


# ---------------------------------------------------------------------- search, COQL, metadata
def test_search_and_coql(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    _post(sim, auth, "/Contacts", {"data": [{"Last_Name": "卫", "Party_ID": "sim-find-1"}]})
    found = _get(sim, auth, "/Contacts/search", criteria="(Party_ID:equals:sim-find-1)").json()["data"]
    assert [r["Party_ID"] for r in found] == ["sim-find-1"]
    assert _code(_get(sim, auth, "/Contacts/search")) == "EXPECTED_PARAM_MISSING"
    rows = _post(sim, auth, "/coql", {"select_query": "select id, Last_Name from Contacts where "
                                                      "Party_ID = 'sim-find-1' limit 5"}).json()
    assert rows["info"] == {"count": 1, "more_records": False} and rows["data"][0]["Last_Name"] == "卫"
    window = _post(sim, auth, "/coql", {"select_query": "select Modified_Time from Contacts where Modified_Time "
                                                        ">= '2025-01-01T00:00:00+08:00' and (Last_Name is not null)"
                                                        " order by Modified_Time asc limit 2000"}).json()
    assert window["info"]["count"] == 2000 and window["info"]["more_records"] is True
    assert _code(_post(sim, auth, "/coql", {"select_query": "select from"})) == "SYNTAX_ERROR"
    assert _post(sim, auth, "/coql", {"select_query": "select id from Contacts"}).json()["details"] == {
        "clause": "where"}
    assert _code(_post(sim, auth, "/coql", {"select_query": "select id from Leads where id = 1"})) == "INVALID_MODULE"
    assert _code(_post(sim, auth, "/coql", {})) == "MANDATORY_NOT_FOUND"
    assert _post(sim, auth, "/coql", {"select_query": "select id from Contacts where Party_ID = 'none'"}
                 ).status_code == 204


def test_metadata_endpoints(sim: ZohoSimulator, auth: dict[str, str]) -> None:
    modules = _get(sim, auth, "/settings/modules").json()["modules"]
    assert {m["api_name"] for m in modules} == {"Contacts", "Accounts", "Cases", "Campaigns", "Holdings"}
    assert all(m["api_supported"] for m in modules)
    assert {m["api_name"] for m in modules if m["generated_type"] == "custom"} == {"Holdings"}
    fields = _get(sim, auth, "/settings/fields", module="Contacts").json()["fields"]
    required_keys = {"json_type", "length", "api_name", "data_type", "decimal_place", "system_mandatory",
                     "display_label", "pick_list_values"}
    assert all(required_keys <= set(f) for f in fields) and "mandatory" not in fields[0]
    party = next(f for f in fields if f["api_name"] == "Party_ID")
    assert party["unique"] and party["length"] == 64 and party["custom_field"]
    assert [f["api_name"] for f in fields] == [f.api_name for f in MODULES["Contacts"].fields]
    org = _get(sim, auth, "/org").json()["org"][0]
    assert org["zgid"] and org["license_details"]["paid_type"] == "enterprise" and org["time_zone"] == "Asia/Shanghai"
    users = _get(sim, auth, "/users", type="CurrentUser").json()
    assert users["users"][0]["email"] and users["info"]["count"] == 1


# ---------------------------------------------------------------------- faults, limits, scale
@pytest.mark.parametrize(("fault", "status", "code"), [(Fault.SERVER_ERROR, 500, "INTERNAL_ERROR"),
                                                       (Fault.THROTTLE, 429, "TOO_MANY_REQUESTS"),
                                                       (Fault.TOKEN_EXPIRED, 401, "INVALID_TOKEN")])
def test_faults_render_in_zohos_shape(sim: ZohoSimulator, auth: dict[str, str], fault: Fault, status: int,
                                      code: str) -> None:
    sim.inject(fault)
    resp = _get(sim, auth, "/org")
    assert (resp.status_code, _code(resp), resp.json()["status"]) == (status, code, "error")
    assert "Retry-After" not in resp.headers


def test_edition_concurrency_limit_answers_429() -> None:
    with ZohoSimulator(Knobs(records=0, latency_ms=200, extra={"edition": "free"})) as s:
        assert s.knobs.concurrency_limit == 5
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: requests.get(f"{s.url}/crm/v8/org", timeout=5).status_code,
                                     range(8)))
    assert statuses.count(429) >= 1 and statuses.count(401) >= 1


def test_registry_and_banner() -> None:
    assert simulator_class("zoho") is ZohoSimulator
    with ZohoSimulator(Knobs(records=3)) as s:
        lines, url = s.banner(), s.url
    assert url in lines[0] and any("/oauth/v2/token" in ln for ln in lines) and "Contacts (3)" in lines[-1]


@pytest.mark.slow
def test_100k_records_are_served_efficiently() -> None:
    """100k Contacts: seeded once, then pages and 100-record upserts stay cheap (sorted index, key index).
    Bounds are loose: shared CI machines are slow; a linear scan per call would still blow them."""
    started = time.perf_counter()
    with ZohoSimulator(Knobs(records=100_000, extra={"accounts": 10})) as s:
        seeded = time.perf_counter() - started
        form = {"refresh_token": s.refresh_token, "client_id": s.client_id, "client_secret": s.client_secret,
                "grant_type": "refresh_token"}
        headers = {"Authorization": "Zoho-oauthtoken "
                   + requests.post(f"{s.url}/oauth/v2/token", data=form, timeout=5).json()["access_token"],
                   "If-Modified-Since": "2025-03-01T00:00:00+08:00"}
        t0 = time.perf_counter()
        for _ in range(20):
            resp = requests.get(f"{s.url}/crm/v8/Contacts", params={"fields": "Last_Name,Modified_Time",
                                "sort_by": "Modified_Time", "sort_order": "asc", "page": 10}, headers=headers,
                                timeout=10)
            assert resp.status_code == 200
        per_page = (time.perf_counter() - t0) / 20
        t0 = time.perf_counter()
        for i in range(20):
            requests.post(f"{s.url}/crm/v8/Contacts/upsert", json={"data": [
                {"Last_Name": "陈", "Party_ID": f"bulk-{i}-{j}"} for j in range(100)],
                "duplicate_check_fields": ["Party_ID"]}, headers=headers, timeout=10)
        per_write = (time.perf_counter() - t0) / 20
        t0 = time.perf_counter()
        for i in range(20):
            found = requests.post(f"{s.url}/crm/v8/coql", json={
                "select_query": f"select id from Contacts where Party_ID = 'bulk-{i}-7'"}, headers=headers,
                timeout=10).json()["data"]
            assert len(found) == 1
        per_find = (time.perf_counter() - t0) / 20
    assert seeded < 60 and per_page < 1.0 and per_write < 2.0 and per_find < 0.5, (
        seeded, per_page, per_write, per_find)
