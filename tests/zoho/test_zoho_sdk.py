"""The official Zoho SDK for API v8 (``zohocrmsdk8_0``) against the simulator: refresh a token, walk the SDK's
start-up calls (users, org, settings/fields), page past record 2000 with page_token, upsert, and parse a 207,
a single GET, a delete and the deleted-records list.

The SDK runs in a subprocess with its working directory, token store and resource path in ``tmp_path``, so it
leaves nothing in the repository and its process-wide singletons do not leak into other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crmbridge.adapters.simulator import Knobs
from crmbridge.adapters.zoho.simulator import ZohoSimulator

pytestmark = [pytest.mark.thirdparty, pytest.mark.slow]   # slow tier: Zoho's own SDK against the simulator

SCRIPT = r'''
import json, os, sys
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zohocrmsdk.src.com.zoho.api.logger import Logger
from zohocrmsdk.src.com.zoho.crm.api import HeaderMap, ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.record import (APIException, ActionWrapper, BodyWrapper, DeleteRecordsParam,
                                                    DeletedRecordsWrapper, GetDeletedRecordsParam, GetRecordsParam,
                                                    Record, RecordOperations, ResponseWrapper, SuccessResponse)

base, client_id, client_secret, refresh_token = sys.argv[1:5]
here = os.getcwd()
Initializer.initialize(environment=DataCenter.Environment(base, base + "/oauth/v2/token", base),
                       token=OAuthToken(client_id=client_id, client_secret=client_secret, refresh_token=refresh_token),
                       store=FileStore(os.path.join(here, "tokens.csv")), sdk_config=SDKConfig(),
                       resource_path=here,
                       logger=Logger.get_instance(level=Logger.Levels.INFO, file_path=os.path.join(here, "sdk.log")))
ops = RecordOperations("Contacts")
out = {"ids": [], "token_pages": 0, "errors": [], "upserts": []}
page, token = 1, None
while True:
    params = ParameterMap()
    params.add(GetRecordsParam.fields, "Last_Name,Email,Party_ID,Modified_Time")
    params.add(GetRecordsParam.per_page, 200)
    if token:
        params.add(GetRecordsParam.page_token, token)
        out["token_pages"] += 1
    else:
        params.add(GetRecordsParam.page, page)
    resp = ops.get_records(params, HeaderMap())
    if resp.get_status_code() in (204, 304):
        break
    obj = resp.get_object()
    if isinstance(obj, APIException):
        out["errors"].append(obj.get_code().get_value())
        break
    out["ids"].extend(r.get_id() for r in obj.get_data())
    info = obj.get_info()
    if not info.get_more_records():
        break
    page += 1
    if page * 200 > 2000:
        token = info.get_next_page_token()
record = Record()
record.add_key_value("Last_Name", "李")
record.add_key_value("Party_ID", "sdk-party-0001")
record.add_key_value("Email", "sdk0001@mail.example.cn")
body = BodyWrapper()
body.set_data([record])
body.set_duplicate_check_fields(["Party_ID"])
body.set_trigger([])
for _ in range(2):
    resp = ops.upsert_records(body, HeaderMap())
    obj = resp.get_object()
    if not isinstance(obj, ActionWrapper):
        out["errors"].append(type(obj).__name__)
        continue
    for item in obj.get_data():
        if isinstance(item, SuccessResponse):
            out["upserts"].append([resp.get_status_code(), item.get_code().get_value(), str(item.get_details()["id"])])
        else:
            out["errors"].append(item.get_code().get_value())
# a 207: one good record, one the simulator must refuse for its e-mail format
good, bad = Record(), Record()
good.add_key_value("Last_Name", "王")
bad.add_key_value("Last_Name", "赵")
bad.add_key_value("Email", "not-an-email@")
body = BodyWrapper()
body.set_data([good, bad])
body.set_trigger([])
resp = ops.create_records(body, HeaderMap())
out["mixed"] = [resp.get_status_code()] + [
    [type(i).__name__, i.get_code().get_value(), (i.get_details() or {}).get("api_name")]
    for i in resp.get_object().get_data()]
rid = int(out["upserts"][0][2]) if out["upserts"] else 0
one = ops.get_record(rid, ParameterMap(), HeaderMap()).get_object()
out["get"] = isinstance(one, ResponseWrapper) and one.get_data()[0].get_key_value("Party_ID")
params = ParameterMap()
params.add(DeleteRecordsParam.ids, str(rid))
out["delete"] = [i.get_code().get_value() for i in ops.delete_records(params, HeaderMap()).get_object().get_data()]
params = ParameterMap()
params.add(GetDeletedRecordsParam.type, "all")
gone = ops.get_deleted_records(params, HeaderMap()).get_object()
out["deleted"] = [str(d.get_id()) for d in gone.get_data()] if isinstance(gone, DeletedRecordsWrapper) else None
out["after_delete"] = ops.get_record(rid, ParameterMap(), HeaderMap()).get_status_code()
print("RESULT " + json.dumps(out))
'''


def test_official_sdk_pages_past_2000_and_upserts(tmp_path: Path) -> None:
    script = tmp_path / "sdk_client.py"
    script.write_text(SCRIPT, encoding="utf-8")
    with ZohoSimulator(Knobs(records=2300, seed=11)) as sim:
        seeded = set(sim.stores["Contacts"].records)
        proc = subprocess.run([sys.executable, str(script), sim.url, sim.client_id, sim.client_secret,
                               sim.refresh_token], cwd=tmp_path, capture_output=True, text=True, timeout=240)
        seen = dict(sim.requests_seen)
        after = sim.count("Contacts")
        written = sim.find("Contacts", "Party_ID", "sdk-party-0001")
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line is not None, proc.stderr[-3000:]
    out = json.loads(line[len("RESULT "):])
    assert out["errors"] == []
    got = [str(i) for i in out["ids"]]  # the SDK turns ids into ints
    assert len(got) == 2300 and set(got) == seeded, "the SDK did not read every record exactly once"
    assert out["token_pages"] == 2, "records 2001-2300 must come through page_token"
    # start-up sequence (docs/vendors/zoho.md §12): token grant, current user, org, field metadata (+ lookup's module)
    assert seen["POST /oauth/v2/token"] == 1
    assert seen["GET /crm/v8/users"] == 1 and seen["GET /crm/v8/org"] == 1
    assert seen["GET /crm/v8/settings/fields"] >= 1
    # upsert by the unique Party_ID: inserted once, then matched
    assert len(out["upserts"]) == 2 and all(u[1] == "SUCCESS" for u in out["upserts"])
    assert out["upserts"][0][2] == out["upserts"][1][2]
    assert after == 2300 + 1 + 1 - 1 and written == []  # + upsert + the 207's good record - delete
    # 207 with per-record results the SDK parses into SuccessResponse / APIException
    assert out["mixed"] == [207, ["SuccessResponse", "SUCCESS", None], ["APIException", "INVALID_DATA", "Email"]]
    assert out["get"] == "sdk-party-0001" and out["delete"] == ["SUCCESS"]
    assert out["deleted"] == [out["upserts"][0][2]] and out["after_delete"] == 204
    assert (tmp_path / "tokens.csv").exists(), "the SDK's token store belongs in tmp_path"


IDS_SCRIPT = r'''
import json, os, sys
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zohocrmsdk.src.com.zoho.api.logger import Logger
from zohocrmsdk.src.com.zoho.crm.api import HeaderMap, ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.record import (APIException, GetDeletedRecordsParam, GetRecordsParam,
                                                    RecordOperations, ResponseWrapper)

base, client_id, client_secret, refresh_token, ids = sys.argv[1:6]
here = os.getcwd()
Initializer.initialize(environment=DataCenter.Environment(base, base + "/oauth/v2/token", base),
                       token=OAuthToken(client_id=client_id, client_secret=client_secret, refresh_token=refresh_token,
                                        find_user=False),
                       store=FileStore(os.path.join(here, "tokens.csv")), sdk_config=SDKConfig(), resource_path=here,
                       logger=Logger.get_instance(level=Logger.Levels.INFO, file_path=os.path.join(here, "sdk.log")))
ops = RecordOperations("Contacts")
out = {}
params = ParameterMap()
params.add(GetRecordsParam.fields, "Last_Name,Party_ID")
params.add(GetRecordsParam.ids, ids)
resp = ops.get_records(params, HeaderMap())
obj = resp.get_object()
out["by_ids"] = [resp.get_status_code(), [str(r.get_id()) for r in obj.get_data()]
                 if isinstance(obj, ResponseWrapper) else type(obj).__name__]
params = ParameterMap()
params.add(GetDeletedRecordsParam.type, "bogus")
resp = ops.get_deleted_records(params, HeaderMap())
obj = resp.get_object()
out["bad_type"] = [resp.get_status_code(), type(obj).__name__,
                   obj.get_code().get_value() if isinstance(obj, APIException) else None]
print("RESULT " + json.dumps(out))
'''


@pytest.mark.parametrize("shape", ["wrapped", "top"])
def test_official_sdk_reads_by_ids_and_sees_the_bad_type_400(tmp_path: Path, shape: str) -> None:
    """The SDK's read-by-ids gets exactly the asked records (the simulator used to ignore ids= and return all).
    A bad deleted-records type is HTTP 400 in both shapes; only the top-level one becomes the SDK's APIException
    (the SDK parses Zoho's documented data[]-wrapped 400 as a deleted-records list: SDK users must check the status)."""
    script = tmp_path / "sdk_ids.py"
    script.write_text(IDS_SCRIPT, encoding="utf-8")
    with ZohoSimulator(Knobs(records=60, seed=5, extra={"deleted_error_shape": shape})) as sim:
        wanted = sorted(sim.stores["Contacts"].records, key=int)[10:13]
        proc = subprocess.run([sys.executable, str(script), sim.url, sim.client_id, sim.client_secret,
                               sim.refresh_token, ",".join(wanted)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line is not None, proc.stderr[-3000:]
    out = json.loads(line[len("RESULT "):])
    assert out["by_ids"][0] == 200 and sorted(out["by_ids"][1], key=int) == wanted
    if shape == "top":
        assert out["bad_type"] == [400, "APIException", "PATTERN_NOT_MATCHED"]
    else:
        assert out["bad_type"][0] == 400 and out["bad_type"][1] == "DeletedRecordsWrapper"


CUSTOM_SCRIPT = r'''
import json, os, sys
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zohocrmsdk.src.com.zoho.api.logger import Logger
from zohocrmsdk.src.com.zoho.crm.api import HeaderMap, ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.record import APIException, GetRecordsParam, RecordOperations, ResponseWrapper
from zohocrmsdk.src.com.zoho.crm.api.util import Choice

base, client_id, client_secret, refresh_token, module = sys.argv[1:6]
here = os.getcwd()
Initializer.initialize(environment=DataCenter.Environment(base, base + "/oauth/v2/token", base),
                       token=OAuthToken(client_id=client_id, client_secret=client_secret, refresh_token=refresh_token,
                                        find_user=False),
                       store=FileStore(os.path.join(here, "tokens.csv")), sdk_config=SDKConfig(), resource_path=here,
                       logger=Logger.get_instance(level=Logger.Levels.INFO, file_path=os.path.join(here, "sdk.log")))
ops = RecordOperations(module)
out = {"rows": [], "errors": []}
page = 1
while True:
    params = ParameterMap()
    params.add(GetRecordsParam.fields, "Name,Holding_Key,Product_Type,Contact,Open_Date")
    params.add(GetRecordsParam.per_page, 20)
    params.add(GetRecordsParam.page, page)
    resp = ops.get_records(params, HeaderMap())
    obj = resp.get_object()
    if isinstance(obj, APIException):
        out["errors"].append(obj.get_code().get_value())
        break
    for r in obj.get_data():
        contact = r.get_key_value("Contact")
        ptype = r.get_key_value("Product_Type")
        out["rows"].append([str(r.get_id()), r.get_key_value("Holding_Key"),
                            ptype.get_value() if isinstance(ptype, Choice) else ptype,
                            str(contact.get_id()) if contact is not None else None,
                            type(contact).__name__, str(r.get_key_value("Open_Date"))])
    if not obj.get_info().get_more_records():
        break
    page += 1
print("RESULT " + json.dumps(out))
'''


def test_official_sdk_reads_a_custom_module(tmp_path: Path) -> None:
    """The SDK reads the bank's holdings module under the API name the org gave it (``CustomModule1``): it loads the
    module's field metadata (a custom module), pages it and parses the Contacts lookup into a record."""
    script = tmp_path / "sdk_custom.py"
    script.write_text(CUSTOM_SCRIPT, encoding="utf-8")
    with ZohoSimulator(Knobs(records=10, seed=3, extra={"holdings_module": "CustomModule1"})) as sim:
        sim.reset("CustomModule1", 45)
        seeded = {rid: rec for rid, rec in sim.stores["CustomModule1"].records.items()}
        proc = subprocess.run([sys.executable, str(script), sim.url, sim.client_id, sim.client_secret,
                               sim.refresh_token, "CustomModule1"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
        seen = dict(sim.requests_seen)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line is not None, proc.stderr[-3000:]
    out = json.loads(line[len("RESULT "):])
    assert out["errors"] == []
    assert {r[0] for r in out["rows"]} == set(seeded) and len(out["rows"]) == 45
    for rid, key, ptype, contact, kind, _opened in out["rows"]:
        assert key == seeded[rid]["Holding_Key"] and ptype == seeded[rid]["Product_Type"]
        assert contact == seeded[rid]["Contact"]["id"] and kind == "Record"
    assert seen["GET /crm/v8/CustomModule1"] == 3
    assert seen.get("GET /crm/v8/settings/fields", 0) >= 1
