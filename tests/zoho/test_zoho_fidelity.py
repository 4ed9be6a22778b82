"""Simulator fidelity to Zoho's documented behaviour (zoho/crm-oas v8 record operations): ``ids=`` on record lists
and the deleted-records error for an unknown ``type``. Raw HTTP against the simulator, then through the adapter."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from zoho_helpers import make_adapter

from crmbridge.adapters.zoho.simulator import ZohoSimulator
from crmbridge.core.errors import RequestError


def _token(sim: ZohoSimulator) -> dict[str, str]:
    body = requests.post(f"{sim.url}/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": sim.client_id, "client_secret": sim.client_secret,
        "refresh_token": sim.refresh_token}, timeout=5).json()
    return {"Authorization": f"Zoho-oauthtoken {body['access_token']}"}


def _get(sim: ZohoSimulator, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sim.url}/crm/v8/{path}", params=params, headers=_token(sim), timeout=5)


# ---------------------------------------------------------------------- ids= on record lists
def test_ids_returns_only_those_records(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=30)
    every = sorted(sim.stores["Contacts"].records, key=int)
    wanted = [every[3], every[17], every[8]]
    resp = _get(sim, "Contacts", fields="Last_Name", ids=",".join(wanted))
    assert resp.status_code == 200
    body = resp.json()
    assert {r["id"] for r in body["data"]} == set(wanted)
    assert body["info"]["count"] == 3 and body["info"]["more_records"] is False
    # the default order (id desc) and the other parameters still apply
    assert [r["id"] for r in body["data"]] == sorted(wanted, key=int, reverse=True)
    asc = _get(sim, "Contacts", fields="Last_Name", ids=",".join(wanted), sort_by="id", sort_order="asc").json()
    assert [r["id"] for r in asc["data"]] == sorted(wanted, key=int)


def test_ids_unknown_ones_are_left_out_and_none_known_is_204(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=5)
    known = next(iter(sim.stores["Contacts"].records))
    resp = _get(sim, "Contacts", fields="Last_Name", ids=f"{known},5725767999999999999")
    assert [r["id"] for r in resp.json()["data"]] == [known]
    none = _get(sim, "Contacts", fields="Last_Name", ids="5725767999999999999")
    assert none.status_code == 204 and none.content == b"" and "Content-Type" not in none.headers


def test_ids_past_the_limit_and_malformed_ids_are_refused(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0)
    many = ",".join(str(5725767000000600000 + i) for i in range(101))
    resp = _get(sim, "Contacts", fields="Last_Name", ids=many)
    assert resp.status_code == 400
    assert resp.json() == {"code": "LIMIT_EXCEEDED", "details": {"limit": 100, "param_name": "ids"},
                           "message": "limit exceeded", "status": "error"}
    bad = _get(sim, "Contacts", fields="Last_Name", ids="12,abc")
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_DATA"
    assert bad.json()["details"] == {"param_name": "ids"}


def test_ids_pages_and_binds_the_page_token(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=40)
    wanted = sorted(sim.stores["Contacts"].records, key=int)[:25]
    first = _get(sim, "Contacts", fields="Last_Name", ids=",".join(wanted), per_page=10).json()
    assert first["info"]["more_records"] is True and len(first["data"]) == 10
    token = first["info"]["next_page_token"]
    # a page token is bound to its parameters, ids included (TOKEN_BOUND_DATA_MISMATCH)
    other = _get(sim, "Contacts", fields="Last_Name", ids=",".join(wanted[:5]), per_page=10, page_token=token)
    assert other.status_code == 400 and other.json()["code"] == "TOKEN_BOUND_DATA_MISMATCH"
    seen = [r["id"] for r in first["data"]]
    for page in (2, 3):
        seen += [r["id"] for r in _get(sim, "Contacts", fields="Last_Name", ids=",".join(wanted), per_page=10,
                                       page=page).json()["data"]]
    assert sorted(seen, key=int) == wanted


# ---------------------------------------------------------------------- /deleted?type=bogus
PATTERN = {"code": "PATTERN_NOT_MATCHED", "details": {"param_name": "type"},
           "message": "Please check whether the input values are correct", "status": "error"}


def test_deleted_bad_type_is_the_documented_400(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    """crm-oas v8 ``getDeletedRecords`` example ``response-400-patternnotmatched``: HTTP 400, the error wrapped in
    ``data[]``."""
    sim = zoho_sim(records=0)
    resp = _get(sim, "Contacts/deleted", type="bogus")
    assert resp.status_code == 400 and resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == {"data": [PATTERN]}


def test_deleted_bad_type_top_level_shape_knob(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    """The OAS's API_Exception schema (and the official SDK generated from it) expects the error at top level."""
    sim = zoho_sim(records=0, extra={"deleted_error_shape": "top"})
    resp = _get(sim, "Contacts/deleted", type="bogus")
    assert resp.status_code == 400 and resp.json() == PATTERN


@pytest.mark.parametrize("shape", ["wrapped", "top"])
def test_adapter_raises_pattern_not_matched_in_either_shape(zoho_sim, shape: str) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0, extra={"deleted_error_shape": shape})
    adapter = make_adapter(sim)
    with pytest.raises(RequestError) as info:
        adapter._call("GET", "/Contacts/deleted", params={"type": "bogus"})
    err = info.value
    assert (err.status, err.vendor_code) == (400, "PATTERN_NOT_MATCHED")
    assert err.details == {"param_name": "type"} and "param_name=type" in str(err)
