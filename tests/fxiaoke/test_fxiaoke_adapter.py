"""FxiaokeAdapter behaviour beyond the contract: faults, paging past the offset ceiling, tokens, writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fxiaoke_support import SECRETS, make
from pydantic import SecretStr
from pydantic import ValidationError as PydanticValidationError

from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.adapters.fxiaoke import FxiaokeConfig
from crmbridge.adapters.fxiaoke.auth import CorpToken, TokenCache
from crmbridge.adapters.fxiaoke.simulator import FxiaokeSimulator
from crmbridge.adapters.simulator import Fault, Knobs
from crmbridge.core.errors import (
    AuthenticationError,
    PermissionDeniedError,
    RecordRejectedError,
    RequestError,
)

TOKEN = "POST /cgi/corpAccessToken/get/V2"


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def sim() -> Iterator[FxiaokeSimulator]:
    with FxiaokeSimulator(Knobs(records=30, extra={"contacts": 10})) as s:
        yield s


def ids_of(pages: list) -> list[str]:
    return [r.external_id for p in pages for r in p.records]


# ---------------------------------------------------------------------------------------- configuration
def test_config_needs_exactly_one_operator() -> None:
    base = dict(app_id="FSAID_1", app_secret="env:X", permanent_code="env:Y")
    with pytest.raises(PydanticValidationError, match="exactly one"):
        FxiaokeConfig(**base)
    with pytest.raises(PydanticValidationError, match="exactly one"):
        FxiaokeConfig(**base, open_user_id="FSUID_1", admin_mobile="13800000000")
    assert FxiaokeConfig(**base, admin_mobile="13800000000").admin_mobile == "13800000000"
    with pytest.raises(PydanticValidationError, match="secret reference"):
        FxiaokeConfig(app_id="FSAID_1", app_secret="plain-secret", permanent_code="env:Y", open_user_id="FSUID_1")
    with pytest.raises(PydanticValidationError, match="not the API gateway"):
        FxiaokeConfig(**base, open_user_id="FSUID_1", base_url="https://www.fxiaoke.com")
    with pytest.raises(PydanticValidationError):
        FxiaokeConfig(**base, open_user_id="FSUID_1", page_size=101)
    cfg = FxiaokeConfig(**base, open_user_id="FSUID_1")
    assert (cfg.trigger_workflow, cfg.trigger_approval_flow, cfg.key_field) == (False, False, "party_id__c")


# ---------------------------------------------------------------------------------------- tokens
def test_expired_token_mid_run_is_refreshed_once_and_the_run_continues(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    pages = []
    for i, page in enumerate(adapter.extract("AccountObj")):
        pages.append(page)
        if i == 1:
            sim.expire_tokens()  # the server forgets every token: the next call gets 20016
    got = ids_of(pages)
    assert len(got) == len(set(got)) == 30
    assert adapter.stats.token_refreshes == 1
    assert sim.requests_seen[TOKEN] == 2


def test_token_is_renewed_before_the_lifetime_rule_ends_it() -> None:
    # lifetime scaled to 1.2 s: same token for 1.1 s, a new one after; the adapter renews at ~1.11 s
    with FxiaokeSimulator(Knobs(records=30, token_lifetime=1.2, extra={"contacts": 0})) as sim:
        adapter = make(sim)
        pages = []
        for page in adapter.extract("AccountObj"):
            pages.append(page)
            if len(pages) == 2:
                time.sleep(1.25)
        assert len(set(ids_of(pages))) == 30
        assert sim.requests_seen[TOKEN] == 2 and sim.token_issued == 2
        assert adapter.stats.token_refreshes == 0  # renewed in time: never refused


def test_token_cache_never_exceeds_ten_fetches_a_minute() -> None:
    now = [0.0]
    fetch_times: list[float] = []

    def fetch() -> CorpToken:
        fetch_times.append(now[0])
        return CorpToken(value=SecretStr("t"), corp_id="FSCID_1", fetched_at=now[0],
                         expires_in=7200)

    def sleep(s: float) -> None:
        # at least 1 µs: TokenBucket's float arithmetic can ask for a wait below the clock's resolution,
        # which a fake clock would never get past (a real one always does)
        now[0] += max(s, 1e-6)

    cache = TokenCache(fetch, calls_per_minute=10, clock=lambda: now[0], sleep=sleep)
    for _ in range(40):  # a token storm: every call finds the token invalidated
        cache.get()
        cache.invalidate()
        now[0] += 0.5
    assert len(fetch_times) == 40
    for t in fetch_times:
        assert sum(1 for u in fetch_times if t <= u < t + 60) <= 10
    # and the cache serves without fetching while the token is fresh
    cache.get()
    before = len(fetch_times)
    for _ in range(100):
        cache.get()
    assert len(fetch_times) == before


def test_concurrent_workers_fetch_one_token(sim: FxiaokeSimulator) -> None:
    adapter = make(sim, max_concurrency=8)
    ids = [r["_id"] for r in sim.records("AccountObj")][:16]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(chunk: list[str]) -> None:
        try:
            barrier.wait()
            for rid in chunk:
                assert adapter.get("AccountObj", rid) is not None
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(ids[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sim.requests_seen[TOKEN] == 1


def test_stale_invalidation_from_another_worker_does_not_refetch(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    adapter.get("AccountObj", "missing")
    old = adapter.client.tokens.get()
    adapter.client.tokens.invalidate(old)
    adapter.get("AccountObj", "missing")  # fetches the replacement
    adapter.client.tokens.invalidate(old)  # a late worker reporting the old token: ignored
    adapter.get("AccountObj", "missing")
    assert sim.requests_seen[TOKEN] == 2


def test_get_by_mobile_resolves_the_operator_once(sim: FxiaokeSimulator) -> None:
    adapter = make(sim, open_user_id=None, admin_mobile=sim.ADMIN_MOBILE)
    assert len(ids_of(list(adapter.extract("AccountObj")))) == 30
    assert adapter.client.open_user_id() == sim.ADMIN_OPEN_USER_ID
    assert sim.requests_seen["POST /cgi/user/getByMobile"] == 1


def test_get_by_mobile_unknown_is_an_authentication_error_without_the_number(sim: FxiaokeSimulator) -> None:
    adapter = make(sim, open_user_id=None, admin_mobile="13712345678")
    with pytest.raises(AuthenticationError) as info:
        list(adapter.extract("AccountObj"))
    assert "13712345678" not in str(info.value) and "5678" not in str(info.value)
    assert adapter.stats.retries == 0


# ---------------------------------------------------------------------------------------- throttling
@pytest.mark.parametrize("code", [14001, 30004])
def test_each_retryable_throttling_code_is_retried(sim: FxiaokeSimulator, code: int) -> None:
    adapter = make(sim)
    adapter.get("AccountObj", "warm-up")
    sim.throttle_code = code
    sim.inject(Fault.THROTTLE, times=2)
    assert len(ids_of(list(adapter.extract("AccountObj")))) == 30
    assert adapter.stats.throttled == 2


def test_system_busy_is_retried(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    adapter.get("AccountObj", "warm-up")
    sim.inject(Fault.SERVER_ERROR, times=2)  # HTTP 200 + errorCode -1 (系统繁忙)
    assert len(ids_of(list(adapter.extract("AccountObj")))) == 30
    assert adapter.stats.retries == 2 and adapter.stats.throttled == 0


def test_daily_quota_stops_at_once_with_resume_hint(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    adapter.get("AccountObj", "warm-up")
    sim.throttle_code = 30002
    sim.inject(Fault.THROTTLE, times=1)
    with pytest.raises(RequestError) as info:
        list(adapter.extract("AccountObj"))
    assert info.value.vendor_code == "30002" and adapter.stats.retries == 0
    assert 0 < info.value.details["resume_in_seconds"] <= 86400


def test_no_quota_purchased_is_a_permission_error(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    adapter.get("AccountObj", "warm-up")
    sim.throttle_code = 30003
    sim.inject(Fault.THROTTLE, times=1)
    with pytest.raises(PermissionDeniedError):
        list(adapter.extract("AccountObj"))


def test_client_rate_keeps_under_the_per_interface_limit() -> None:
    with FxiaokeSimulator(Knobs(records=30, rate_limit=6, extra={"contacts": 0})) as sim:
        adapter = make(sim, rate_per_second=4.0)
        assert len(ids_of(list(adapter.extract("AccountObj")))) == 30
        assert adapter.stats.throttled == 0


def test_token_endpoint_throttle_is_retried(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    sim.inject(Fault.THROTTLE, times=1)  # hits the token call: 14001
    assert len(ids_of(list(adapter.extract("AccountObj")))) == 30
    assert adapter.stats.throttled == 1


# ---------------------------------------------------------------------------------------- paging
def test_paging_beyond_the_offset_ceiling_reaches_every_record(sim: FxiaokeSimulator) -> None:
    sim.reseed("AccountObj", 10_250)
    adapter = make(sim, page_size=100)
    got = ids_of(list(adapter.extract("AccountObj")))
    assert len(got) == len(set(got)) == 10_250
    assert set(got) == {r["_id"] for r in sim.records("AccountObj")}


def test_more_than_the_ceiling_in_one_millisecond_switches_to_an_id_keyset(sim: FxiaokeSimulator) -> None:
    sim.clear("AccountObj")
    sim.add_records("AccountObj", ({"name": f"同刻{i}"} for i in range(10_130)), lmt=1_767_225_600_000)
    sim.add_records("AccountObj", ({"name": f"之后{i}"} for i in range(5)), lmt=1_767_225_601_000)
    adapter = make(sim, page_size=100)
    got = ids_of(list(adapter.extract("AccountObj")))
    assert len(got) == len(set(got)) == 10_135


def test_incremental_extract_sees_boundary_records_exactly_once(sim: FxiaokeSimulator) -> None:
    # seeded records share milliseconds three at a time; page size 7 cuts through those groups
    adapter = make(sim, overlap_seconds=0)
    rows = sorted(sim.records("AccountObj"), key=lambda r: (r["last_modified_time"], r["_id"]))
    since = datetime.fromtimestamp(rows[10]["last_modified_time"] / 1000, tz=UTC)
    got = ids_of(list(adapter.extract("AccountObj", since=since)))
    expected = {r["_id"] for r in rows if r["last_modified_time"] >= rows[10]["last_modified_time"]}
    assert len(got) == len(set(got)) and set(got) == expected


def test_modified_at_is_aware_utc_from_epoch_ms(sim: FxiaokeSimulator) -> None:
    rec = next(iter(make(sim).extract("AccountObj"))).records[0]
    raw = sim.records("AccountObj")
    lmt = {r["_id"]: r["last_modified_time"] for r in raw}[rec.external_id]
    assert rec.modified_at == datetime.fromtimestamp(lmt / 1000, tz=UTC) and rec.modified_at.tzinfo is not None


# ---------------------------------------------------------------------------------------- tombstones
def test_invalidated_records_are_tombstones(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    victim = sim.records("AccountObj")[4]["_id"]
    assert adapter.delete("AccountObj", [victim])[0].status is WriteStatus.DELETED
    live = ids_of(list(adapter.extract("AccountObj")))
    assert victim not in live and len(live) == 29  # the default query hides invalidated rows
    tomb = [r for p in adapter.extract_deleted("AccountObj") for r in p.records]
    assert [(r.external_id, r.deleted) for r in tomb] == [(victim, True)]
    assert sim.count("AccountObj", include_invalid=True) == 30  # 作废 keeps it in the recycle bin


def test_query_that_shows_invalid_rows_marks_them_deleted() -> None:
    with FxiaokeSimulator(Knobs(records=10, extra={"contacts": 0, "query_shows_invalid": True})) as sim:
        adapter = make(sim)
        victim = sim.records("AccountObj")[2]["_id"]
        adapter.delete("AccountObj", [victim])
        recs = [r for p in adapter.extract("AccountObj") for r in p.records]
        assert {r.external_id for r in recs if r.deleted} == {victim} and len(recs) == 10


def test_hard_delete_removes_after_invalidating(sim: FxiaokeSimulator) -> None:
    adapter = make(sim, hard_delete=True)
    victim = sim.records("AccountObj")[0]["_id"]
    assert adapter.delete("AccountObj", [victim, victim])[1].status is WriteStatus.DELETED  # idempotent
    assert sim.count("AccountObj", include_invalid=True) == 29
    assert sim.requests_seen["POST /cgi/crm/v2/data/invalid"] == 2


# ---------------------------------------------------------------------------------------- writes
def item(key: str, **payload: object) -> WriteItem:
    return WriteItem(key=key, payload={"name": "测试客户", **payload}, key_field="party_id__c")


def party_rows(sim: FxiaokeSimulator, key: str) -> list[dict]:
    return [r for r in sim.records("AccountObj") if r.get("party_id__c") == key]


def test_create_timed_out_after_the_server_stored_it_is_not_duplicated(sim: FxiaokeSimulator) -> None:
    adapter = make(sim, timeout=0.3)
    adapter.get("AccountObj", "warm-up")
    sim.knobs.timeout_delay = 0.8
    sim.inject_at("/data/create", Fault.TIMEOUT_AFTER_APPLY)
    res = adapter.write("AccountObj", [item("p-timeout", segment__c="MASS")])
    assert res[0].status is WriteStatus.UNCHANGED and res[0].external_id
    assert len(party_rows(sim, "p-timeout")) == 1
    assert sim.requests_seen["POST /cgi/crm/v2/data/create"] == 1
    assert adapter.stats.retries == 1
    assert party_rows(sim, "p-timeout")[0]["_id"] == res[0].external_id


def test_writes_send_trigger_flags_false_unless_configured(sim: FxiaokeSimulator) -> None:
    make(sim).write("AccountObj", [item("p-flags")])
    assert sim.workflow_runs["AccountObj"] == 0
    make(sim, trigger_workflow=True).write("AccountObj", [item("p-flags", segment__c="WEALTH")])
    assert sim.workflow_runs["AccountObj"] == 1


def test_owner_change_goes_through_change_owner(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    rm = sim.employees[2]["openUserId"]
    first = adapter.write("AccountObj", [item("p-owner")])[0]
    assert party_rows(sim, "p-owner")[0]["owner"] == [sim.ADMIN_OPEN_USER_ID]
    again = adapter.write("AccountObj", [item("p-owner", owner=rm)])[0]
    assert again.status is WriteStatus.UPDATED and again.external_id == first.external_id
    assert party_rows(sim, "p-owner")[0]["owner"] == [rm]
    assert sim.requests_seen["POST /cgi/crm/v2/data/changeOwner"] == 1
    assert sim.requests_seen["POST /cgi/crm/v2/data/update"] == 0
    assert adapter.write("AccountObj", [item("p-owner", owner=[rm])])[0].status is WriteStatus.UNCHANGED


def test_update_by_external_id_sends_only_the_payload(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    row = sim.records("AccountObj")[3]
    res = adapter.write("AccountObj", [WriteItem(key=row["party_id__c"], payload={"segment__c": "PRIVATE"},
                                                 external_id=row["_id"])])[0]
    assert res.status is WriteStatus.UPDATED
    after = {r["_id"]: r for r in sim.records("AccountObj")}[row["_id"]]
    assert after["segment__c"] == "PRIVATE" and after["name"] == row["name"] and after["version"] == "2"


def test_stale_expected_version_is_a_conflict(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    row = sim.records("AccountObj")[5]
    upd = WriteItem(key="k", payload={"segment__c": "WEALTH"}, external_id=row["_id"], expected_version="1")
    assert adapter.write("AccountObj", [upd])[0].status is WriteStatus.UPDATED
    stale = WriteItem(key="k", payload={"segment__c": "MASS"}, external_id=row["_id"], expected_version="1")
    res = adapter.write("AccountObj", [stale])[0]
    assert res.status is WriteStatus.CONFLICT and res.version == "2"
    assert {r["_id"]: r for r in sim.records("AccountObj")}[row["_id"]]["segment__c"] == "WEALTH"


def test_record_level_failures_keep_the_code_and_no_personal_data(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    res = adapter.write("AccountObj", [
        item("p-bad-email", email="zhangsan.private"),
        item("p-bad-pick", segment__c="NOT_A_SEGMENT"),
        WriteItem(key="p-missing", payload={"name": "x"}, external_id="ffffffffffffffffffffffff"),
        item("p-good"),
    ])
    assert [r.status for r in res] == [WriteStatus.FAILED] * 3 + [WriteStatus.CREATED]
    assert all(isinstance(r.error, RecordRejectedError) for r in res[:3])
    assert [r.error.code for r in res[:3]] == ["320004", "320004", "320001"]  # type: ignore[union-attr]
    assert "zhangsan" not in str(res[0].error) and "NOT_A_SEGMENT" not in str(res[1].error)


def test_unknown_errorcode_on_a_write_fails_the_record_only(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    adapter.get("AccountObj", "warm-up")
    sim.throttle_code = 987654  # an undocumented code, answered to the first create
    sim.inject_at("/data/create", Fault.THROTTLE)
    res = adapter.write("AccountObj", [item("p-unknown"), item("p-after")])
    assert res[0].status is WriteStatus.FAILED and res[0].error.code == "987654"  # type: ignore[union-attr]
    assert res[1].status is WriteStatus.CREATED


def test_custom_object_uses_custom_paths(sim: FxiaokeSimulator) -> None:
    adapter = make(sim)
    res = adapter.write("object_party__c", [WriteItem(key="p-c", payload={"name": "主数据"},
                                                      key_field="party_id__c")])
    assert res[0].status is WriteStatus.CREATED
    assert sim.requests_seen["POST /cgi/crm/custom/v2/data/create"] == 1
    assert sim.requests_seen["POST /cgi/crm/v2/data/create"] == 0


def test_describe_gives_field_info(sim: FxiaokeSimulator) -> None:
    fields = {f.name: f for f in make(sim).describe("ContactObj")}
    assert fields["name"].required and not fields["name"].read_only
    assert fields["party_id__c"].type == "text" and fields["party_id__c"].length == 64
    assert fields["last_modified_time"].read_only and not fields["owner"].read_only
    assert fields["risk_rating__c"].picklist == ("LOW", "MEDIUM", "HIGH", "PROHIBITED")
    with pytest.raises(RequestError):
        make(sim).describe("NoSuchObj")


def test_default_owner_applies_to_creates_only(sim: FxiaokeSimulator) -> None:
    rm = sim.employees[1]["openUserId"]
    adapter = make(sim, default_owner=rm)
    adapter.write("AccountObj", [item("p-default-owner")])
    assert party_rows(sim, "p-default-owner")[0]["owner"] == [rm]
    adapter.write("AccountObj", [item("p-default-owner", segment__c="MASS")])
    assert party_rows(sim, "p-default-owner")[0]["owner"] == [rm]
    assert sim.requests_seen["POST /cgi/crm/v2/data/changeOwner"] == 0


def test_records_edited_while_the_list_is_read_shift_nothing_out_of_reach(sim: FxiaokeSimulator) -> None:
    """An edit moves a record to the end of the change list; paging by offset would then skip the record at the
    next page's edge. Keyset paging reads everyone, and the edited ones again at the end."""
    adapter, editor = make(sim), make(sim)
    rows = sorted(sim.records("AccountObj"), key=lambda r: (r["last_modified_time"], r["_id"]))
    everyone = {r["_id"] for r in rows}
    edited = [rows[i]["_id"] for i in (0, 2, 5)]        # all on the first page (size 7)
    seen: list[str] = []
    for n, page in enumerate(adapter.extract("AccountObj")):
        seen += [r.external_id for r in page.records]
        if n == 0:
            results = editor.write("AccountObj", [WriteItem(key=f"k{i}", payload={"name": f"改名{i}"}, external_id=rid)
                                                  for i, rid in enumerate(edited)])
            assert all(r.status is WriteStatus.UPDATED for r in results), results
    assert set(seen) == everyone
    assert sorted(seen[-3:]) == sorted(edited) and len(seen) == len(everyone) + 3
