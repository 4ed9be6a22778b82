"""Issue 13 (truthful runs) on Fxiaoke: duplicate-rule refusals named as such, the duplicate-search flag honoured,
unknown codes explained, the change filter's boundary safe under either reading, and doctor's probes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from fxiaoke_support import SECRETS, make

from crmbridge.adapters.base import Finding, WriteItem, WriteStatus
from crmbridge.adapters.fxiaoke import FxiaokeAdapter, FxiaokeConfig
from crmbridge.adapters.fxiaoke.errors import DUPLICATE_RULE_CODE, check_response, vendor_message
from crmbridge.adapters.fxiaoke.simulator import FxiaokeSimulator
from crmbridge.adapters.simulator import Fault, Knobs
from crmbridge.core.errors import RecordRejectedError, RequestError

NAME_RULE = {"AccountObj": [["name"]], "object_party__c": [["name"]]}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def simulator(**extra: Any) -> FxiaokeSimulator:
    return FxiaokeSimulator(Knobs(records=30, extra={"contacts": 0, **extra}))


@pytest.fixture
def dup_sim() -> Iterator[FxiaokeSimulator]:
    with simulator(duplicate_rules=NAME_RULE) as s:
        yield s


def item(key: str, name: str, dup: bool | None = None, **payload: object) -> WriteItem:
    return WriteItem(key=key, payload={"name": name, **payload}, key_field="party_id__c", duplicate_search=dup)


def existing_name(sim: FxiaokeSimulator) -> tuple[str, str]:
    row = sim.records("AccountObj")[0]
    return row["_id"], row["name"]


# ============================================================================== duplicate rules: simulator
def test_simulator_duplicate_rule_refuses_matching_creates_and_updates_in_its_shape(
        dup_sim: FxiaokeSimulator) -> None:
    sim = dup_sim
    rid, name = existing_name(sim)
    adapter = make(sim)
    tok = adapter.client.token()
    auth = {"corpAccessToken": tok.value.get_secret_value(), "corpId": tok.corp_id,
            "currentOpenUserId": sim.ADMIN_OPEN_USER_ID}

    def create(option: dict[str, Any] | None) -> dict[str, Any]:
        data: dict[str, Any] = {"object_data": {"dataObjectApiName": "AccountObj", "name": name}}
        if option is not None:
            data["optionInfo"] = option
        return requests.post(f"{sim.url}/cgi/crm/v2/data/create", json={**auth, "data": data}, timeout=5).json()

    refused = create({"isDuplicateSearch": True})
    assert refused["errorCode"] == DUPLICATE_RULE_CODE and "duplicate" in refused["errorMessage"]
    assert refused["errorDescription"].startswith("查重规则") and refused["traceId"]
    assert refused["data"]["matchType"] == "PRECISE" and refused["data"]["keepSave"] is False
    assert [r["_id"] for r in refused["data"]["dataList"]] == [rid]
    assert create(None)["errorCode"] == DUPLICATE_RULE_CODE          # searching is the default
    created = create({"isDuplicateSearch": False})                  # the flag turns the rule off
    assert created["errorCode"] == 0 and created["dataId"]
    # an update that makes another record match is refused too
    other = sim.records("AccountObj")[1]["_id"]
    upd = requests.post(f"{sim.url}/cgi/crm/v2/data/update", json={**auth, "data": {
        "object_data": {"_id": other, "dataObjectApiName": "AccountObj", "name": name},
        "optionInfo": {"isDuplicateSearch": True}}}, timeout=5).json()
    assert upd["errorCode"] == DUPLICATE_RULE_CODE


# ============================================================================== duplicate rules: adapter
def test_a_duplicate_rule_refusal_is_a_failed_record_named_duplicate_rule_with_masked_values(
        dup_sim: FxiaokeSimulator) -> None:
    rid, name = existing_name(dup_sim)
    res = make(dup_sim).write("AccountObj", [item("p-dup", name, dup=True), item("p-new", "独一无二", dup=True)])
    assert [r.status for r in res] == [WriteStatus.FAILED, WriteStatus.CREATED]
    err = res[0].error
    assert isinstance(err, RecordRejectedError) and err.code == "duplicate_rule" and err.field == "name"
    text = str(err)
    assert "unknown errorCode" not in text and "duplicate rule" in text and "name=" in text
    assert name not in text and rid in text and str(DUPLICATE_RULE_CODE) in text
    assert err.where == "AccountObj.name"


def test_duplicate_search_follows_the_item_then_the_system_default(dup_sim: FxiaokeSimulator) -> None:
    _, name = existing_name(dup_sim)
    # default (no job choice, system default false): the rule does not judge crmbridge's writes
    assert make(dup_sim).write("AccountObj", [item("p-a", name)])[0].status is WriteStatus.CREATED
    on = make(dup_sim, duplicate_search=True)
    assert on.write("AccountObj", [item("p-b", name)])[0].error.code == "duplicate_rule"  # type: ignore[union-attr]
    assert on.write("AccountObj", [item("p-c", name, dup=False)])[0].status is WriteStatus.CREATED
    assert FxiaokeConfig(app_id="FSAID_1", app_secret="env:X", permanent_code="env:Y",
                         open_user_id="FSUID_1").duplicate_search is False


def test_duplicate_search_on_an_update_and_on_custom_objects(dup_sim: FxiaokeSimulator) -> None:
    _, name = existing_name(dup_sim)
    adapter = make(dup_sim)
    created = adapter.write("AccountObj", [item("p-u", "别的名字")])[0]
    res = adapter.write("AccountObj", [WriteItem(key="p-u", payload={"name": name}, external_id=created.external_id,
                                                 duplicate_search=True)])
    assert res[0].status is WriteStatus.FAILED and res[0].error.code == "duplicate_rule"  # type: ignore[union-attr]
    custom = [item("c-1", "主数据甲", dup=True), item("c-2", "主数据甲", dup=True), item("c-3", "主数据甲", dup=False)]
    out = adapter.write("object_party__c", custom)
    assert [r.status for r in out] == [WriteStatus.CREATED, WriteStatus.FAILED, WriteStatus.CREATED]


def test_the_live_services_unpublished_code_is_still_named_a_duplicate_rule() -> None:
    # stand-in for the live tenant: an undocumented code whose message says "duplicate" (crm-cli's rule)
    with simulator(duplicate_rules=NAME_RULE, duplicate_rule_code=201112009) as sim:
        _, name = existing_name(sim)
        err = make(sim).write("AccountObj", [item("p-live", name, dup=True)])[0].error
        assert isinstance(err, RecordRejectedError) and err.code == "duplicate_rule" and err.field == "name"
        assert "201112009" in str(err) and name not in str(err)


def test_configured_duplicate_codes_and_fields_name_the_refusal_without_any_hint() -> None:
    doc = {"errorCode": 555001, "errorMessage": "save refused", "traceId": "T-1"}
    raw = json.dumps(doc).encode()
    with pytest.raises(RecordRejectedError) as plain:
        check_response(200, raw, where="/c", record_level=True)
    assert plain.value.code == "555001" and "unknown errorCode 555001" in str(plain.value)
    assert "save refused" in str(plain.value)  # (d): the vendor's own message, masked
    with pytest.raises(RecordRejectedError) as named:
        check_response(200, raw, where="/c", record_level=True, duplicate_codes={555001})
    assert named.value.code == "duplicate_rule"


def test_unknown_codes_say_the_code_and_the_vendors_message_masked() -> None:
    doc = {"errorCode": 987654, "errorMessage": "客户[张三]手机13812345678已存在 Zhang San", "traceId": "T-2"}
    with pytest.raises(RecordRejectedError) as info:
        check_response(200, json.dumps(doc, ensure_ascii=False).encode(), where="/c", record_level=True,
                       sent={"name": "Zhang San"})
    text = str(info.value)
    assert "987654" in text and "T-2" in text and "vendor says" in text
    assert "张三" not in text and "13812345678" not in text and "Zhang San" not in text and "[value]" in text
    with pytest.raises(RequestError, match="unknown errorCode 424242; vendor says: no such thing"):
        check_response(200, json.dumps({"errorCode": 424242, "errorMessage": "no such thing"}).encode(),
                       where="/q")
    assert vendor_message({"errorDescription": "缺少参数"}) == "缺***"
    assert vendor_message({"errorCode": 1}) is None


def test_unknown_code_from_the_simulator_names_the_code_and_message(dup_sim: FxiaokeSimulator) -> None:
    adapter = make(dup_sim)
    adapter.get("AccountObj", "warm-up")
    dup_sim.throttle_code = 987654
    dup_sim.inject_at("/data/create", Fault.THROTTLE)
    err = adapter.write("AccountObj", [item("p-x", "某某")])[0].error
    assert err is not None and err.code == "987654"
    assert "unknown errorCode 987654; vendor says: the api call is over limit" in str(err)


# ============================================================================== change filter boundary
def all_ids(adapter: FxiaokeAdapter, since: datetime | None = None) -> list[str]:
    return [r.external_id for p in adapter.extract("AccountObj", since=since) for r in p.records]


@pytest.mark.parametrize("exclusive", [True, False])
def test_default_boundary_loses_nothing_whether_gte_includes_the_boundary_or_not(exclusive: bool) -> None:
    # three records per second (shared milliseconds) and pages of 7: ties straddle every page edge
    with simulator(lmt_filter_exclusive=exclusive) as sim:
        sim.add_records("AccountObj", [{"name": f"同刻{i}"} for i in range(12)], lmt=1_900_000_000_000)
        everyone = {r["_id"] for r in sim.records("AccountObj")}
        ids = all_ids(make(sim))
        assert set(ids) == everyone and len(ids) == len(everyone)  # none lost, none twice


def test_inclusive_config_on_an_exclusive_service_loses_records_which_is_why_it_is_not_the_default() -> None:
    with simulator(lmt_filter_exclusive=True) as sim:
        everyone = {r["_id"] for r in sim.records("AccountObj")}
        assert set(all_ids(make(sim, since_boundary="inclusive"))) < everyone
        assert set(all_ids(make(sim, since_boundary="exclusive"))) == everyone


def test_since_at_the_exact_millisecond_is_read_on_an_exclusive_service() -> None:
    with simulator(lmt_filter_exclusive=True) as sim:
        t = 1_900_000_000_000
        ids = sim.add_records("AccountObj", [{"name": f"边界{i}"} for i in range(3)], lmt=t)
        got = all_ids(make(sim, overlap_seconds=0), since=datetime.fromtimestamp(t / 1000, tz=UTC))
        assert set(got) == set(ids)


def test_a_full_page_of_the_extra_millisecond_is_stepped_over() -> None:
    # inclusive service, since at t: the safe filter reads t-1 too; a whole page of it is skipped, not looped on
    with simulator() as sim:
        t = 1_900_000_000_000
        sim.add_records("AccountObj", [{"name": f"前一毫秒{i}"} for i in range(9)], lmt=t - 1)
        want = sim.add_records("AccountObj", [{"name": f"边界{i}"} for i in range(4)], lmt=t)
        got = all_ids(make(sim, overlap_seconds=0, page_size=3), since=datetime.fromtimestamp(t / 1000, tz=UTC))
        assert got == sorted(want)


# ============================================================================== doctor
def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def test_doctor_probes_a_healthy_simulator() -> None:
    with simulator() as sim:
        found = by_check(make(sim, rate_per_second=3.0).doctor({"AccountObj": ["name", "party_id__c"]}))
        assert found["fields"].status == "ok"
        assert found["authenticated"].status == "ok" and sim.CORP_ID in found["authenticated"].detail
        assert found["page_size"].status == "ok"
        assert found["since_boundary"].status == "info"
        assert found["since_boundary"].config == {"since_boundary": "inclusive"}
        assert found["clock_skew"].status == "ok"
        assert found["rate_limit"].status == "ok"
        assert found["duplicate_rule"].status == "info" and "查重规则" in found["duplicate_rule"].detail
        assert sim.requests_seen["POST /cgi/crm/v2/data/create"] == 0  # read-only
        assert sim.requests_seen["POST /cgi/crm/v2/data/update"] == 0


def test_doctor_detects_an_exclusive_filter_and_a_wrong_configuration() -> None:
    with simulator(lmt_filter_exclusive=True) as sim:
        found = by_check(make(sim, since_boundary="inclusive")._probe("AccountObj"))
        assert found["since_boundary"].status == "fail"
        assert found["since_boundary"].config == {"since_boundary": "exclusive"}
        assert by_check(make(sim, since_boundary="exclusive")._probe("AccountObj"))["since_boundary"].status == "ok"


def test_doctor_rate_limit_and_empty_object_and_bad_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulator() as sim:
        sim.clear("AccountObj")
        found = by_check(make(sim, rate_per_second=None)._probe("AccountObj"))
        assert found["rate_limit"].status == "warn" and found["rate_limit"].config == {"rate_per_second": 3.0}
        assert found["since_boundary"].status == "info" and "no records" in found["since_boundary"].detail
        monkeypatch.setenv("FXT_SECRET", "wrong-secret-value")
        bad = make(sim)._probe("AccountObj")
        assert [(f.check, f.status) for f in bad] == [("authenticated", "fail")]
        assert "wrong-secret-value" not in bad[0].detail


def test_doctor_reports_clock_skew_from_the_gateway_date(monkeypatch: pytest.MonkeyPatch) -> None:
    with simulator() as sim:
        adapter = make(sim)
        real = adapter.client.last_headers

        def skewed() -> tuple[dict[str, str], float | None]:
            headers, received = real()
            return headers, None if received is None else received + 600.0

        monkeypatch.setattr(adapter.client, "last_headers", skewed)
        found = by_check(adapter._probe("AccountObj"))
        skew = re.search(r"([+-]\d+(?:\.\d+)?) s from the gateway", found["clock_skew"].detail)
        # the Date header has whole seconds: 600 s give or take the second it was cut at
        assert found["clock_skew"].status == "warn" and skew and 598 <= float(skew.group(1)) <= 602, found
        assert found["clock_skew"].config["overlap_seconds"] >= 1200


def test_simulator_exclusive_mode_and_gateway_kinds_on_the_wire() -> None:
    with simulator(lmt_filter_exclusive=True) as sim:
        t = 1_900_000_000_000
        sim.add_records("AccountObj", [{"name": "边界"}], lmt=t)
        adapter = make(sim)
        gte = [{"field_name": "last_modified_time", "operator": "GTE", "field_values": [str(t)]}]
        assert adapter.client.query("AccountObj", {"limit": 10, "offset": 0, "filters": gte}) == []
        sim.lmt_filter_exclusive = False
        assert len(adapter.client.query("AccountObj", {"limit": 10, "offset": 0, "filters": gte})) == 1
        sim.inject_gateway("503_empty", retry_after="3")
        resp = requests.post(f"{sim.url}/cgi/crm/v2/data/query", json={}, timeout=5)
        assert (resp.status_code, resp.content, resp.headers["Retry-After"]) == (503, b"", "3")
        with pytest.raises(ValueError, match="unknown gateway kind"):
            sim.inject_gateway("418_teapot")
