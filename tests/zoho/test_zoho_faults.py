"""Fault tests for the Zoho adapter against the simulator: tokens, throttling, broken responses, partial
results, paging past 2000, 304/204 and the overlap window."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import responses
from zoho_helpers import BAD_ENV, FAST, TickingClock, make_adapter

from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.adapters.simulator import Fault
from crmbridge.core.errors import (
    AuthenticationError,
    BadResponseError,
    RecordRejectedError,
    RequestError,
    ThrottledError,
    TransientServerError,
)
from crmbridge.core.retry import RetryPolicy


def _items(n: int, start: int = 0, **payload: object) -> list[WriteItem]:
    return [WriteItem(key=f"party-{i:05d}", payload={"Last_Name": "张", "First_Name": f"三{i}", **payload},
                      key_field="Party_ID") for i in range(start, start + n)]


def _read_all(adapter, obj: str = "Contacts", **kw):  # type: ignore[no-untyped-def]
    return [r for page in adapter.extract(obj, **kw) for r in page.records]


# ---------------------------------------------------------------------- tokens
def test_token_expiring_mid_run_is_refreshed_once_and_the_run_continues(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=450)
    adapter = make_adapter(sim, page_size=100)
    pages = adapter.extract("Contacts")
    got = [r.external_id for r in next(pages).records]
    sim.expire_tokens()  # the access token dies between two pages
    for page in pages:
        got.extend(r.external_id for r in page.records)
    assert len(got) == len(set(got)) == 450
    assert adapter.stats.token_refreshes == 1
    assert adapter.stats.by_status["401"] == 1
    assert sim.requests_seen["POST /oauth/v2/token"] == 2


def _new_process_adapter(sim, cache):  # type: ignore[no-untyped-def]
    """An adapter as a freshly started process builds it: no token manager of this process is reused."""
    from crmbridge.adapters.zoho.auth import forget_shared_tokens

    forget_shared_tokens()
    return make_adapter(sim, token_cache=str(cache))


def test_processes_share_one_token_through_the_encrypted_token_file(zoho_sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Zoho grants 10 tokens per 10 minutes: a scheduler restarting in a crash loop, cron runs or Celery workers
    each fetching their own would lock the integration out. With token_cache they share one."""
    import os
    import stat

    from crmbridge.adapters.zoho.auth import TokenFile

    sim = zoho_sim(records=5)
    cache = tmp_path / "state" / "zoho.token"
    for _ in range(12):   # more restarts than Zoho's quota of token grants
        assert len(_read_all(_new_process_adapter(sim, cache))) == 5
    assert sim.requests_seen["POST /oauth/v2/token"] == 1
    token = _new_process_adapter(sim, cache)._tokens.token(lambda *a, **k: None).value.get_secret_value()
    raw = cache.read_bytes()
    assert token.encode() not in raw and b"refresh" not in raw            # never in clear
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert TokenFile(cache, b"other credentials", "x").read() is None     # useless without the secrets
    # a token Zoho rejects leaves the file, and the next process uses the replacement without a grant of its own
    sim.expire_tokens()
    assert len(_read_all(_new_process_adapter(sim, cache))) == 5
    assert sim.requests_seen["POST /oauth/v2/token"] == 2
    assert len(_read_all(_new_process_adapter(sim, cache))) == 5
    assert sim.requests_seen["POST /oauth/v2/token"] == 2


def test_an_unreadable_token_file_costs_one_grant_not_a_failure(zoho_sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3)
    cache = tmp_path / "zoho.token"
    cache.write_text("{not json", encoding="ascii")
    assert len(_read_all(_new_process_adapter(sim, cache))) == 3
    assert sim.requests_seen["POST /oauth/v2/token"] == 1
    assert len(_read_all(_new_process_adapter(sim, cache))) == 3          # and it was replaced by a good one
    assert sim.requests_seen["POST /oauth/v2/token"] == 1


def test_token_refreshed_before_expiry_without_a_401(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=30, token_lifetime=1.0)
    adapter = make_adapter(sim, page_size=10)
    got = []
    for page in adapter.extract("Contacts"):
        got.extend(page.records)
        time.sleep(0.6)  # page 3 comes 1.2 s after the grant: past the refresh point (0.9 s)
    assert len(got) == 30
    assert adapter.stats.by_status["401"] == 0, "the token should be refreshed before it expires"
    assert sim.requests_seen["POST /oauth/v2/token"] >= 2


def test_legacy_expires_in_sec_is_read_as_seconds(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=1, token_lifetime=120, extra={"legacy_expires": True})
    adapter = make_adapter(sim)
    _read_all(adapter)
    token = adapter._tokens.token(adapter._token_post)
    assert 60 < token.refresh_at - time.monotonic() <= 120, "expires_in is in ms when expires_in_sec is present"


def test_parallel_workers_share_one_refresh(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0, latency_ms=20)
    adapter = make_adapter(sim)
    adapter.write("Contacts", _items(50))
    sim.expire_tokens()
    res = adapter.write("Contacts", _items(800, start=50))  # 8 parallel batches all meet INVALID_TOKEN
    assert all(r.status is WriteStatus.CREATED for r in res)
    assert sim.requests_seen["POST /oauth/v2/token"] == 2, "one refresh for all workers (10 per 10 min limit)"


@pytest.mark.parametrize(("bad", "fragment"), [("secret", "accounts_url"), ("refresh", "refresh token")])
def test_token_endpoint_errors_are_authentication_errors(zoho_sim, bad: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=1)
    adapter = make_adapter(sim, bad_secret=bad == "secret", bad_refresh=bad == "refresh")
    with pytest.raises(AuthenticationError) as info:
        _read_all(adapter)
    assert fragment in str(info.value)
    assert info.value.vendor == "zoho" and info.value.vendor_code in ("invalid_client", "invalid_code")
    assert adapter.stats.retries == 0
    assert "not-the-secret" not in str(info.value) and BAD_ENV not in str(info.value)


def test_token_endpoint_throttle_is_a_throttled_error(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3, extra={"token_limit": 1})
    adapter = make_adapter(sim)
    assert len(_read_all(adapter)) == 3
    sim.expire_tokens()  # the refresh that follows is the second in the window: "Access Denied"
    with pytest.raises(ThrottledError) as info:
        _read_all(adapter)
    assert "10 token requests per 10 minutes" in str(info.value)
    assert adapter.stats.throttled >= 1


def test_injected_token_throttle_is_retried(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3)
    sim.inject(Fault.THROTTLE, times=1)  # lands on the token request
    adapter = make_adapter(sim)
    assert len(_read_all(adapter)) == 3
    assert adapter.stats.throttled == 1


# ---------------------------------------------------------------------- throttling and concurrency
def test_429_storm_backs_off_and_writes_everything_once(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0, latency_ms=30, concurrency_limit=3)
    policy = RetryPolicy(max_attempts=25, initial_wait=0.01, max_wait=0.1, jitter=0.5)
    adapter = make_adapter(sim, retry=policy, edition="ultimate")  # 25 parallel calls against a limit of 3
    res = adapter.write("Contacts", _items(1200))
    assert [r.key for r in res] == [f"party-{i:05d}" for i in range(1200)]
    assert all(r.status is WriteStatus.CREATED for r in res), {r.status for r in res}
    assert adapter.stats.throttled > 0 and adapter.stats.by_status["429"] > 0
    assert sim.count("Contacts") == 1200
    assert all(len(sim.find("Contacts", "Party_ID", f"party-{i:05d}")) == 1 for i in range(0, 1200, 37))


def test_edition_sets_concurrency_and_stays_under_the_limit(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0, latency_ms=30, extra={"edition": "free"})
    assert sim.knobs.concurrency_limit == 5
    adapter = make_adapter(sim, edition="free")
    assert adapter._gate.concurrency == 5
    res = adapter.write("Contacts", _items(1000))
    assert all(r.status is WriteStatus.CREATED for r in res)
    assert adapter.stats.throttled == 0 and adapter.stats.by_status["429"] == 0


def test_credits_remaining_header_is_recorded(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=50, extra={"credits": 10})
    adapter = make_adapter(sim, page_size=10)
    assert len(_read_all(adapter)) == 50  # 1 metadata + 5 pages = 6 credits: past half of 10
    assert adapter.stats.credits_remaining == 4


def test_exhausted_credits_raise_throttled_after_retries(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=5, extra={"credits": 2})
    adapter = make_adapter(sim, page_size=2)
    with pytest.raises(ThrottledError) as info:
        _read_all(adapter)
    assert info.value.status == 429 and info.value.vendor_code == "TOO_MANY_REQUESTS"
    assert info.value.retry_after is None  # Zoho sends no Retry-After


# ---------------------------------------------------------------------- broken responses
def test_server_error_is_transient_with_vendor_details(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=2)
    adapter = make_adapter(sim)
    _read_all(adapter)
    sim.inject(Fault.SERVER_ERROR, times=10)
    with pytest.raises(TransientServerError) as info:
        _read_all(adapter)
    err = info.value
    assert (err.vendor, err.status, err.vendor_code) == ("zoho", 500, "INTERNAL_ERROR")
    assert adapter.stats.retries == FAST.max_attempts - 1


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.TRUNCATED])
def test_connection_lost_mid_batch_is_retried_without_duplicates(zoho_sim, fault: Fault) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0)
    adapter = make_adapter(sim)
    first = adapter.write("Contacts", _items(100))
    sim.inject(fault, times=1)  # TRUNCATED applies the upsert, then cuts the answer short
    res = adapter.write("Contacts", _items(250))
    assert adapter.stats.retries >= 1
    assert [r.status for r in res[:100]] == [WriteStatus.UPDATED] * 100
    assert all(r.status in (WriteStatus.CREATED, WriteStatus.UPDATED) for r in res[100:])
    assert [r.external_id for r in res[:100]] == [r.external_id for r in first]
    assert sim.count("Contacts") == 250


@responses.activate
@pytest.mark.parametrize(("body", "status"), [
    (b"not json at all", 200),
    (json.dumps({"data": "oops"}).encode(), 200),
    (json.dumps([1, 2]).encode(), 200),
    (json.dumps({"data": [{"no": "id"}]}).encode(), 200),
])
def test_wrong_shapes_are_bad_responses(body: bytes, status: int) -> None:
    """Shapes the simulator never produces (a proxy's answer, a broken release) via `responses`."""
    base = "https://www.zohoapis.com.cn"
    responses.add(responses.POST, "https://accounts.zoho.com.cn/oauth/v2/token",
                  json={"access_token": "1000.a.b", "expires_in": 3600, "api_domain": base})
    responses.add(responses.GET, f"{base}/crm/v8/Contacts", body=body, status=status,
                  content_type="application/json")
    import os

    os.environ.setdefault("CRMBRIDGE_TEST_ZOHO_CN_SECRET", "x")
    from crmbridge.adapters.zoho import ZohoAdapter, ZohoConfig

    cfg = ZohoConfig(client_id="1000.CN", client_secret="env:CRMBRIDGE_TEST_ZOHO_CN_SECRET",
                     refresh_token="env:CRMBRIDGE_TEST_ZOHO_CN_SECRET", retry=FAST)
    adapter = ZohoAdapter(cfg)
    with pytest.raises(BadResponseError):
        list(adapter.extract("Contacts", fields=["Last_Name"]))


# ---------------------------------------------------------------------- per-record results
def test_207_mixed_results_name_the_field_and_hide_the_value(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0)
    adapter = make_adapter(sim)
    items = _items(4)
    items[1] = WriteItem(key="party-00001", payload={"Last_Name": "李", "Email": "li.si.secret@"},
                         key_field="Party_ID")
    items[2] = WriteItem(key="party-00002", payload={"Last_Name": "赵", "SMS_Opt_In": "yes"}, key_field="Party_ID")
    res = adapter.write("Contacts", items)
    assert adapter.stats.by_status["207"] == 1
    assert [r.status for r in res] == [WriteStatus.CREATED, WriteStatus.FAILED, WriteStatus.FAILED,
                                       WriteStatus.CREATED]
    bad_email, bad_bool = res[1].error, res[2].error
    assert isinstance(bad_email, RecordRejectedError) and isinstance(bad_bool, RecordRejectedError)
    assert (bad_email.field, bad_email.code) == ("Email", "INVALID_DATA")
    assert (bad_bool.field, bad_bool.code) == ("SMS_Opt_In", "INVALID_DATA")
    assert "expected_data_type=boolean" in str(bad_bool) and bad_bool.where == "$.data[2].SMS_Opt_In"
    assert "li.si.secret" not in str(bad_email)
    assert sim.count("Contacts") == 2


def test_all_failed_batch_is_400_with_per_record_results(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0)
    adapter = make_adapter(sim)
    res = adapter.write("Contacts", [WriteItem(key=f"k{i}", payload={"First_Name": "无姓"}, key_field="Party_ID")
                                     for i in range(3)])
    assert adapter.stats.by_status["400"] == 1
    assert [(r.status, r.error.code, r.error.field) for r in res if r.error] == [
        (WriteStatus.FAILED, "MANDATORY_NOT_FOUND", "Last_Name")] * 3


def test_length_and_unique_field_rejections(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0, extra={"accounts": 0})
    adapter = make_adapter(sim)
    res = adapter.write("Accounts", [
        WriteItem(key="org-1", payload={"Account_Name": "上海某某有限公司", "USCC": "91310000MA1FL0AB1X"}),
        WriteItem(key="org-2", payload={"Account_Name": "x" * 201}),
        WriteItem(key="org-3", payload={"Account_Name": "北京某某有限公司", "USCC": "91310000MA1FL0AB1X"}),
    ])
    assert res[0].status is WriteStatus.CREATED
    assert (res[1].error.code, res[1].error.field) == ("INVALID_DATA", "Account_Name")
    assert "maximum_length=200" in str(res[1].error)
    # USCC is a second unique field: Zoho's upsert checks it too and matches the existing record
    assert res[2].status is WriteStatus.UPDATED and res[2].external_id == res[0].external_id


def test_request_level_write_errors_are_raised(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0)
    adapter = make_adapter(sim)
    with pytest.raises(RequestError) as info:
        adapter.write("Leads", _items(5))  # one INVALID_MODULE item in data[] for a batch of five
    assert info.value.vendor_code == "INVALID_MODULE"
    with pytest.raises(RequestError) as info:
        adapter.write("Contacts", [WriteItem(key="k", payload={"Last_Name": "王"}, key_field="Last_Name")])
    assert info.value.vendor_code == "INVALID_DATA"  # duplicate_check_fields must be unique/system fields


def test_wrapped_request_errors_on_reads_are_raised(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0)
    adapter = make_adapter(sim)
    with pytest.raises(RequestError) as info:
        list(adapter.extract_deleted("Leads"))  # INVALID_MODULE inside data[] with HTTP 400
    assert info.value.vendor_code == "INVALID_MODULE" and info.value.status == 400


def test_trigger_is_sent_empty_by_default(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0)
    make_adapter(sim).write("Contacts", _items(2))
    make_adapter(sim, trigger=["workflow"]).write("Contacts", _items(1, start=5))
    assert sim.triggers_seen == [[], ["workflow"]]


# ---------------------------------------------------------------------- paging, 304/204, overlap
def test_paging_past_2000_uses_page_token(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=2450)
    adapter = make_adapter(sim)
    pages = list(adapter.extract("Contacts", fields=["Last_Name", "Party_ID"]))
    ids = [r.external_id for p in pages for r in p.records]
    assert len(ids) == len(set(ids)) == 2450 and set(ids) == set(sim.stores["Contacts"].records)
    assert len(pages) == 13 and pages[-2].next_state["token"]  # pages 11-13 came through page_token
    stamps = [r.modified_at for p in pages for r in p.records]
    assert stamps == sorted(stamps), "sort_by=Modified_Time&sort_order=asc"
    assert all(t.tzinfo is UTC for t in stamps)


def test_pagination_limit_starts_a_new_modified_time_window(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=1200, extra={"pagination_limit": 500})  # Zoho's is 100,000
    adapter = make_adapter(sim, page_size=100)
    records = _read_all(adapter, fields=["Last_Name"])
    ids = [r.external_id for r in records]
    assert set(ids) == set(sim.stores["Contacts"].records)
    assert len(ids) - len(set(ids)) <= 10, "only the boundary second is read twice"
    assert adapter.stats.by_status["400"] >= 2  # PAGINATION_LIMIT_EXCEEDED at the end of each window


def test_304_and_204_end_the_data(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=20)
    adapter = make_adapter(sim)
    future = datetime.now(UTC) + timedelta(days=1)
    pages = list(adapter.extract("Contacts", since=future))
    assert [p.records for p in pages] == [[]] and adapter.stats.by_status["304"] == 1
    sim.reset("Contacts", 0)
    pages = list(adapter.extract("Contacts"))
    assert [p.records for p in pages] == [[]] and adapter.stats.by_status["204"] == 1
    assert list(adapter.extract_deleted("Contacts")) and adapter.stats.by_status["204"] == 2


@pytest.mark.parametrize(("overlap", "server", "configured", "sees_late_edit"), [
    (0, "exclusive", "inclusive", False),  # configured wrongly: If-Modified-Since = cursor with ">" loses the edit
    (0, "exclusive", "unknown", True),     # the default is safe whatever the server does
    (0, "exclusive", "exclusive", True),
    (0, "inclusive", "inclusive", True),
    (0, "inclusive", "unknown", True),
    (5, "exclusive", "inclusive", True),   # the overlap window re-reads the cursor's second
])
def test_overlap_window_rereads_records_edited_in_the_same_second(
        zoho_sim, overlap: int, server: str, configured: str, sees_late_edit: bool) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3, extra={"ims_boundary": server})
    frozen = float(int(time.time()))
    sim.clock = lambda: frozen
    adapter = make_adapter(sim, overlap_seconds=overlap, since_boundary=configured)
    first = adapter.write("Contacts", _items(1))[0]
    cursor = max(r.modified_at for r in _read_all(adapter))
    assert cursor == first.modified_at
    late = adapter.write("Contacts", _items(1, start=1))[0]  # same second, after the read
    assert late.modified_at == cursor
    again = {r.external_id for r in _read_all(adapter, since=cursor)}
    assert (late.external_id in again) is sees_late_edit


def test_modified_time_offset_is_parsed_into_utc(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=1)
    sim.clock = TickingClock(1767225600)  # 2026-01-01T00:00:00Z = 08:00+08:00
    rec = make_adapter(sim).write("Contacts", _items(1))[0]
    assert rec.version == "2026-01-01T08:00:00+08:00"
    assert rec.modified_at == datetime(2026, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------------- deletes
def test_deleted_records_come_back_as_tombstones(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=5)
    adapter = make_adapter(sim)
    before = datetime.now(UTC) - timedelta(seconds=2)
    victims = [r.external_id for r in _read_all(adapter)[:2]]
    res = adapter.delete("Contacts", [*victims, "5725767000009999999"])
    assert [r.status for r in res] == [WriteStatus.DELETED, WriteStatus.DELETED, WriteStatus.FAILED]
    tombs = [r for p in adapter.extract_deleted("Contacts", since=before) for r in p.records]
    assert {t.external_id for t in tombs} == set(victims)
    assert all(t.deleted and t.modified_at and t.data["type"] == "recycle" for t in tombs)
    assert [r for p in adapter.extract_deleted("Contacts", since=datetime.now(UTC) + timedelta(hours=1))
            for r in p.records] == []


def test_describe_reports_field_metadata(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0)
    fields = {f.name: f for f in make_adapter(sim).describe("Contacts")}
    assert fields["Last_Name"].required and fields["Last_Name"].length == 80
    assert fields["Party_ID"].type == "text" and fields["Party_ID"].length == 64
    assert fields["Modified_Time"].read_only
    assert fields["Customer_Segment"].picklist and "Wealth" in fields["Customer_Segment"].picklist
