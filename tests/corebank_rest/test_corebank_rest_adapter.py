"""The core-banking REST adapter's own behaviour: configuration, pagination styles, dates, write-back rules,
versions and conflicts, the error table, and the Fineract-shaped simulator itself."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from corebank_rest_support import fineract_config, openbank_config, set_env
from pydantic import ValidationError as PydanticValidationError

from crmbridge.adapters._paths import vendor_get, vendor_path
from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.adapters.corebank_rest.adapter import (
    FINERACT_CLIENTS,
    FINERACT_LOANS,
    FINERACT_SAVINGS_ACCOUNTS,
    CorebankRestAdapter,
    CorebankRestConfig,
)
from crmbridge.adapters.corebank_rest.client import parse_vendor_datetime, resolve_link
from crmbridge.adapters.corebank_rest.simulator import FINERACT_PREFIX, CorebankRestSimulator
from crmbridge.adapters.registry import adapter_class, simulator_class
from crmbridge.adapters.simulator import Fault, Knobs
from crmbridge.canonical.synthetic import customer_at
from crmbridge.core.errors import ConfigurationError, RecordRejectedError
from crmbridge.core.paths import PathIndex, PathKey, PathSelect

PUT = "PUT /fineract-provider/api/v1/clients/{}"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch)


@pytest.fixture
def sim() -> Iterator[CorebankRestSimulator]:
    with CorebankRestSimulator(Knobs(seed=11, records=30, bad_fraction=0.1)) as s:
        yield s


@pytest.fixture
def adapter(sim: CorebankRestSimulator) -> Iterator[CorebankRestAdapter]:
    with CorebankRestAdapter(fineract_config(sim)) as a:
        yield a  # type: ignore[misc]


def ids_of(adapter: CorebankRestAdapter, obj: str, **kw: object) -> list[str]:
    return [r.external_id for p in adapter.extract(obj, **kw) for r in p.records]  # type: ignore[arg-type]


# ---------------------------------------------------------------------- configuration
def test_registry_and_default_fineract_config() -> None:
    assert adapter_class("corebank-rest") is CorebankRestAdapter
    assert simulator_class("corebank-rest") is CorebankRestSimulator
    cfg = CorebankRestConfig(base_url="https://fineract.bank.local/fineract-provider/api",
                             auth={"type": "basic", "username": "crm", "password": "env:X"})  # type: ignore[arg-type]
    assert cfg.resources == {"Client": FINERACT_CLIENTS, "SavingsAccount": FINERACT_SAVINGS_ACCOUNTS,
                             "LoanAccount": FINERACT_LOANS}
    assert cfg.headers == {"Fineract-Platform-TenantId": "default"}


@pytest.mark.parametrize(("change", "needle"), [
    ({"auth": {"type": "basic", "username": "u"}}, "username and password"),
    ({"auth": {"type": "basic", "username": "u", "password": "hunter2"}}, "secret reference"),
    ({"auth": {"type": "bearer"}}, "token_url"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"resources": {"C": {"list_path": "/c", "item_path": "/c/id"}}}, "must contain {id}"),
    ({"resources": {"C": {"list_path": "/c", "item_path": "/c/{id}", "pagination": {"style": "next_link"}}}},
     "needs next_path"),
    ({"resources": {"C": {"list_path": "/c", "item_path": "/c/{id}", "paths": {"id": "a..b"}}}}, "bad JSON path"),
    ({"resources": {"C": {"list_path": "/c", "item_path": "/c/{id}", "find_paths": {"x": "/c"}}}}, "{key}"),
    ({"tenant": "default"}, "tenant"),
])
def test_config_errors_say_what_and_where(change: dict, needle: str) -> None:
    data = {"base_url": "http://x", "auth": {"type": "basic", "username": "u", "password": "env:P"}, **change}
    with pytest.raises(PydanticValidationError) as info:
        CorebankRestConfig.model_validate(data)
    assert needle in str(info.value)


def test_unknown_object_lists_configured_ones(adapter: CorebankRestAdapter) -> None:
    with pytest.raises(ConfigurationError, match="unknown object 'Loan'; configured: Client"):
        adapter.get("Loan", "1")


# ---------------------------------------------------------------------- JSON paths and dates
def test_json_paths() -> None:
    body = {"errors": [{"parameterName": "mobileNo"}], "links": {"next": None}, "a": {"b": [1, {"c": 2}]}}
    # the one path language of mappings and configuration (crmbridge.core.paths)
    assert vendor_path("errors[0].parameterName").ops == (PathKey("errors"), PathIndex(0), PathKey("parameterName"))
    assert vendor_get(body, "errors[0].parameterName") == "mobileNo"
    assert vendor_get(body, "a.b[1].c") == 2 and vendor_get(body, "a.b[5].c") is None
    assert vendor_get(body, "") is body and vendor_get(body, "$") is body
    assert vendor_path("ids[type=RIC].key").ops[1] == PathSelect((("type", "RIC"),))
    assert vendor_get({"ids": [{"type": "PP", "key": 1}, {"type": "RIC", "key": 2}]}, "ids[type=RIC].key") == 2
    for bad in ("a..b", "a[x]", "a[0", "."):
        with pytest.raises(ValueError):
            vendor_path(bad)


@pytest.mark.parametrize(("value", "expected"), [
    ([2024, 1, 15], datetime(2024, 1, 14, 16, 0, tzinfo=UTC)),                  # Fineract LocalDate, bank zone
    ([2024, 1, 15, 9, 30, 5], datetime(2024, 1, 15, 1, 30, 5, tzinfo=UTC)),     # LocalDateTime
    ("2024-01-15", datetime(2024, 1, 14, 16, 0, tzinfo=UTC)),
    ("2024-03-01T08:00:00+08:00", datetime(2024, 3, 1, 0, 0, tzinfo=UTC)),
    ("2024-03-01T08:00:00Z", datetime(2024, 3, 1, 8, 0, tzinfo=UTC)),
    ("2024-03-01T08:00:00", datetime(2024, 3, 1, 0, 0, tzinfo=UTC)),             # naive: the bank's zone
    (1709280000000, datetime(2024, 3, 1, 8, 0, tzinfo=UTC)),                    # epoch ms
    (None, None), ("", None),
])
def test_vendor_dates(value: object, expected: datetime | None) -> None:
    assert parse_vendor_datetime(value, SHANGHAI) == expected


@pytest.mark.parametrize("value", [[2024, 13, 1], [2024, 1], ["2024", 1, 1], "15/01/2024", True, {"y": 1}])
def test_bad_vendor_dates(value: object) -> None:
    with pytest.raises(ValueError):
        parse_vendor_datetime(value, SHANGHAI)


def test_next_links_stay_on_the_service() -> None:
    assert resolve_link("http://127.0.0.1:8080", "/api/v2/customers?page=2") == \
        "http://127.0.0.1:8080/api/v2/customers?page=2"
    assert resolve_link("https://bank/api", "https://bank/api/x?page=3") == "https://bank/api/x?page=3"
    for foreign in ("https://evil.example/x", "http://bank/api/x", "//evil.example/x"):
        with pytest.raises(ValueError, match="another origin"):
            resolve_link("https://bank/api", foreign)


# ---------------------------------------------------------------------- reading
def test_fineract_full_scan_is_marked(sim: CorebankRestSimulator, adapter: CorebankRestAdapter) -> None:
    pages = list(adapter.extract("Client", since=datetime(2030, 1, 1, tzinfo=UTC)))
    assert all(p.full_scan for p in pages)
    assert sum(len(p.records) for p in pages) == 30, "a full scan must return every record"
    assert not any(p.full_scan for p in adapter.extract("Client"))


def test_fields_projection_keeps_the_id(sim: CorebankRestSimulator, adapter: CorebankRestAdapter) -> None:
    recs = [r for p in adapter.extract("Client", fields=["mobileNo"]) for r in p.records]
    assert len(recs) == 30 and all(set(r.data) <= {"id", "mobileNo", "version"} for r in recs)


def test_page_number_style_fits_the_second_bank() -> None:
    with CorebankRestSimulator(Knobs(seed=2, records=47, extra={"dialect": "openbank"})) as ob:
        adapter = CorebankRestAdapter(openbank_config(ob, style="page", page_size=10))
        got = ids_of(adapter, "Customer")
        assert len(got) == 47 and set(got) == ob.ids()
        # keyset (the default) re-asks from the newest stamp read, so each page re-reads that stamp's records
        assert ob.requests_seen["GET /api/v2/customers"] == 6
        ob.requests_seen.clear()
        res = adapter.config.resources["Customer"].model_copy(update={"resume": "position"})
        positional = CorebankRestAdapter(adapter.config.model_copy(update={"resources": {"Customer": res}}))
        assert sorted(ids_of(positional, "Customer")) == sorted(got)
        assert ob.requests_seen["GET /api/v2/customers"] == 5
        since = sorted(r["updatedAt"] for r in (ob.record(i) for i in ob.ids()) if r)[40]
        recent = ids_of(adapter, "Customer", since=datetime.fromisoformat(since))
        assert 7 <= len(recent) < 47


def test_second_bank_record_shape(ob_sim: CorebankRestSimulator) -> None:
    adapter = CorebankRestAdapter(openbank_config(ob_sim))
    rec = adapter.get("Customer", "C0000003")
    assert rec is not None and rec.version == "1" and rec.modified_at is not None
    assert rec.modified_at.tzinfo is not None and rec.data["customerNo"] == "C0000003"
    assert adapter.get("Customer", "C9999999") is None


@pytest.fixture
def ob_sim() -> Iterator[CorebankRestSimulator]:
    with CorebankRestSimulator(Knobs(seed=2, records=5, extra={"dialect": "openbank"})) as s:
        yield s


# ---------------------------------------------------------------------- writing
def test_write_back_by_id_and_find_by_external_id(sim: CorebankRestSimulator, adapter: CorebankRestAdapter) -> None:
    party = "3f2c1e9a-0000-4000-8000-000000000007"
    res = adapter.write("Client", [WriteItem(key=party, external_id="7", key_field="externalId",
                                             payload={"mobileNo": "13900000007", "externalId": party})])
    assert res[0].status is WriteStatus.UPDATED and res[0].version == "2"
    assert sim.record("7")["mobileNo"] == "13900000007"  # type: ignore[index]
    found = adapter.find("Client", "externalId", party)
    assert found is not None and found.external_id == "7"
    # later writes need no id: the key finds the client
    again = adapter.write("Client", [WriteItem(key=party, key_field="externalId",
                                               payload={"emailAddress": "new@example.com"})])
    assert again[0].status is WriteStatus.UPDATED and again[0].external_id == "7"
    same = adapter.write("Client", [WriteItem(key=party, key_field="externalId",
                                              payload={"emailAddress": "new@example.com"})])
    assert same[0].status is WriteStatus.UNCHANGED
    assert sim.count() == 30


def test_golden_fields_are_never_written(sim: CorebankRestSimulator, adapter: CorebankRestAdapter) -> None:
    before = sim.record("3")
    res = adapter.write("Client", [WriteItem(key="k", external_id="3",
                                             payload={"mobileNo": "13900000003", "firstname": "改"})])
    assert res[0].status is WriteStatus.FAILED
    err = res[0].error
    assert isinstance(err, RecordRejectedError) and err.code == "not_writable" and err.field == "firstname"
    assert sim.requests_seen[PUT.format(3)] == 0 and sim.record("3") == before


def test_no_customer_is_ever_created(sim: CorebankRestSimulator, adapter: CorebankRestAdapter) -> None:
    res = adapter.write("Client", [WriteItem(key="unknown-party", key_field="externalId",
                                             payload={"mobileNo": "13900000000"})])
    assert res[0].status is WriteStatus.FAILED and res[0].error is not None and res[0].error.code == "not_found"
    assert sim.count() == 30 and sim.requests_seen["POST /fineract-provider/api/v1/clients"] == 0


def test_duplicate_external_id_is_a_record_failure_not_a_permission_error(
        sim: CorebankRestSimulator, adapter: CorebankRestAdapter) -> None:
    sim.touch("1", externalId="party-1")
    res = adapter.write("Client", [WriteItem(key="k", external_id="2", payload={"externalId": "party-1"})])
    assert res[0].status is WriteStatus.FAILED
    assert res[0].error is not None and res[0].error.code == "error.msg.client.duplicate.externalId"
    assert res[0].error.field == "externalId"


def test_vendor_validation_error_names_the_field(sim: CorebankRestSimulator, adapter: CorebankRestAdapter) -> None:
    res = adapter.write("Client", [WriteItem(key="k", external_id="4", payload={"mobileNo": "1" * 60})])
    err = res[0].error
    assert res[0].status is WriteStatus.FAILED and err is not None
    assert err.field == "mobileNo" and err.code == "validation.msg.client.mobileNo.exceeds.max.length"
    assert "1" * 20 not in str(err), "the rejected value must not be echoed in clear"


def test_stale_version_conflicts_and_leaves_the_record(sim: CorebankRestSimulator,
                                                       adapter: CorebankRestAdapter) -> None:
    sim.touch("5", mobileNo="13700000000")  # a teller changed it: version 1 -> 2
    before = sim.record("5")
    res = adapter.write("Client", [WriteItem(key="k", external_id="5", expected_version="1",
                                             payload={"mobileNo": "13900000005"})])
    assert res[0].status is WriteStatus.CONFLICT and res[0].version == "2"
    assert sim.record("5") == before


def test_retried_write_that_was_applied_is_unchanged_not_a_conflict(sim: CorebankRestSimulator) -> None:
    adapter = CorebankRestAdapter(fineract_config(sim, timeout=0.2))
    sim.knobs.timeout_delay = 0.5
    sim.inject(Fault.TIMEOUT_AFTER_APPLY, times=1)
    res = adapter.write("Client", [WriteItem(key="k", external_id="6", expected_version="1",
                                             payload={"mobileNo": "13900000006"})])
    assert res[0].status is WriteStatus.UNCHANGED, res
    rec = sim.record("6")
    assert rec is not None and rec["mobileNo"] == "13900000006" and rec["version"] == 2


def test_read_then_compare_when_the_service_takes_no_version(sim: CorebankRestSimulator) -> None:
    cfg = fineract_config(sim)
    cfg.resources["Client"].version_in = "none"
    adapter = CorebankRestAdapter(cfg)
    sim.touch("8", emailAddress="teller@example.com")
    res = adapter.write("Client", [WriteItem(key="k", external_id="8", expected_version="1",
                                             payload={"mobileNo": "13900000008"})])
    assert res[0].status is WriteStatus.CONFLICT and sim.requests_seen[PUT.format(8)] == 0
    ok = adapter.write("Client", [WriteItem(key="k", external_id="8", expected_version="2",
                                            payload={"mobileNo": "13900000008"})])
    assert ok[0].status is WriteStatus.UPDATED and ok[0].version == "3"


def test_business_error_rules_come_first(sim: CorebankRestSimulator) -> None:
    # a bank whose 409 means "record locked by a branch user": a record failure, not a stale version
    cfg = fineract_config(sim, business_errors=[{"status": 409, "code": r"error\.msg\.client\.version\..*",
                                                 "kind": "rejected"}])
    adapter = CorebankRestAdapter(cfg)
    sim.touch("9", mobileNo="13700000009")
    res = adapter.write("Client", [WriteItem(key="k", external_id="9", expected_version="1",
                                             payload={"mobileNo": "13900000009"})])
    assert res[0].status is WriteStatus.FAILED and res[0].error is not None
    assert res[0].error.code == "error.msg.client.version.stale"


def test_second_bank_write_back_with_if_match() -> None:
    with CorebankRestSimulator(Knobs(seed=2, records=3, extra={"dialect": "openbank"})) as ob:
        adapter = CorebankRestAdapter(openbank_config(ob))
        ok = adapter.write("Customer", [WriteItem(key="k", external_id="C0000002", expected_version="1",
                                                  payload={"email": "x@example.com"})])
        assert ok[0].status is WriteStatus.UPDATED and ok[0].version == "2" and ok[0].modified_at is not None
        stale = adapter.write("Customer", [WriteItem(key="k", external_id="C0000002", expected_version="1",
                                                     payload={"email": "y@example.com"})])
        assert stale[0].status is WriteStatus.CONFLICT
        assert ob.record("C0000002")["email"] == "x@example.com"  # type: ignore[index]
        bad = adapter.write("Customer", [WriteItem(key="k", external_id="C0000002", payload={"mobile": "n/a"})])
        assert bad[0].status is WriteStatus.FAILED and bad[0].error is not None
        assert (bad[0].error.field, bad[0].error.code) == ("mobile", "INVALID_FIELD")


# ---------------------------------------------------------------------- the simulator
def _get(sim: CorebankRestSimulator, path: str, **kw: object) -> requests.Response:
    headers = kw.pop("headers", {"Fineract-Platform-TenantId": "default"})
    return requests.get(f"{sim.url}{FINERACT_PREFIX}{path}", auth=("mifos", "password"),
                        headers=headers, timeout=5, **kw)  # type: ignore[arg-type]


def test_simulator_speaks_fineract(sim: CorebankRestSimulator) -> None:
    body = _get(sim, "/clients", params={"offset": 5, "limit": 3}).json()
    assert body["totalFilteredRecords"] == 30 and [c["id"] for c in body["pageItems"]] == [6, 7, 8]
    assert len(_get(sim, "/clients", params={"limit": 0}).json()["pageItems"]) == 30
    assert len(_get(sim, "/clients").json()["pageItems"]) == 30  # default limit 200
    desc = _get(sim, "/clients", params={"orderBy": "id", "sortOrder": "DESC", "limit": 2}).json()
    assert [c["id"] for c in desc["pageItems"]] == [30, 29]
    assert _get(sim, "/clients", params={"orderBy": "1; drop table"}).status_code == 400
    one = _get(sim, "/clients/1").json()
    assert isinstance(one["activationDate"], list) and len(one["activationDate"]) == 3
    assert set(one["status"]) == {"id", "code", "value"} and one["legalForm"]["code"].startswith("legalFormType.")
    assert _get(sim, "/clients/1", headers={}, params={"tenantIdentifier": "default"}).status_code == 200
    missing = _get(sim, "/clients/999")
    assert missing.status_code == 404
    assert missing.json()["userMessageGlobalisationCode"] == "error.msg.client.id.invalid"
    ids = _get(sim, "/clients/1/identifiers").json()
    assert ids[0]["documentType"]["name"] in ("Resident Identity Card", "Unified Social Credit Code")
    put = requests.put(f"{sim.url}{FINERACT_PREFIX}/clients/1", json={"nickname": "x"}, auth=("mifos", "password"),
                       headers={"Fineract-Platform-TenantId": "default"}, timeout=5)
    assert put.status_code == 400 and put.json()["errors"][0]["parameterName"] == "nickname"
    unauth = requests.get(f"{sim.url}{FINERACT_PREFIX}/clients", auth=("mifos", "nope"), timeout=5,
                          headers={"Fineract-Platform-TenantId": "default"})
    assert unauth.status_code == 401 and "Basic" in unauth.headers["WWW-Authenticate"]


def test_simulator_seeds_from_the_synthetic_generator(sim: CorebankRestSimulator) -> None:
    people = [c for c in (sim.record(str(i)) for i in range(1, 31)) if c and c["legalForm"]["id"] == 1]
    orgs = [c for c in (sim.record(str(i)) for i in range(1, 31)) if c and c["legalForm"]["id"] == 2]
    assert people and orgs
    c = customer_at(0, 11, 0.1)
    first = sim.record("1")
    assert first is not None and first["mobileNo"] == c.mobile and first["emailAddress"] == c.email
    with CorebankRestSimulator(Knobs(seed=11, records=30, bad_fraction=0.1)) as again:
        assert again.record("17") == sim.record("17"), "seeding is deterministic"
    defective = [customer_at(i, 11, 0.1).defect for i in range(30)]
    assert sum(d is not None for d in defective) == 3


def test_cli_serves_the_simulator_and_prints_its_urls() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "crmbridge", "simulate", "corebank-rest", "--records", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        assert "Fineract-shaped core banking" in lines[0] and "/fineract-provider/api/v1/clients" in lines[0]
        base = lines[1].split("base_url for crmbridge:")[1].strip()
        deadline = time.monotonic() + 5
        while True:
            try:
                r = requests.get(f"{base}/v1/clients", auth=("mifos", "password"), timeout=2,
                                 headers={"Fineract-Platform-TenantId": "default"})
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert r.json()["totalFilteredRecords"] == 5
        assert "password" not in "".join(lines), "the banner must not print the demo password"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


# ---------------------------------------------------------------------- embedded sub-resources
def test_identifiers_are_embedded_pivoted_by_document_type(sim: CorebankRestSimulator) -> None:
    cfg = fineract_config(sim, page_size=10)
    cfg.resources["Client"].embed = FINERACT_CLIENTS.embed
    adapter = CorebankRestAdapter(cfg)
    recs = [r for p in adapter.extract("Client") for r in p.records]
    assert sim.requests_seen["GET /fineract-provider/api/v1/clients/1/identifiers"] == 1
    c = customer_at(0, 11, 0.1)
    first = next(r for r in recs if r.external_id == "1")
    name = "Resident Identity Card" if c.is_individual else "Unified Social Credit Code"
    assert first.data["identifiers"] == {name: c.id_number}
    one = adapter.get("Client", "2")
    assert one is not None and isinstance(one.data["identifiers"], dict)
    sim.inject(Fault.SERVER_ERROR, times=1)  # a failed embed call is retried like any other
    assert adapter.get("Client", "3") is not None and adapter.stats.retries == 1


def test_embed_config_is_checked() -> None:
    from crmbridge.adapters.corebank_rest.adapter import EmbedConfig

    with pytest.raises(PydanticValidationError, match="must contain"):
        EmbedConfig(path="/v1/clients/identifiers")
    with pytest.raises(PydanticValidationError, match="go together"):
        EmbedConfig(path="/v1/clients/{id}/identifiers", key="documentType.name")


# ---------------------------------------------------------------------- the error table
def _reply(status: int, body: object, headers: dict[str, str] | None = None) -> requests.Response:
    import json

    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(body).encode() if not isinstance(body, bytes) else body
    resp.headers.update(headers or {})
    return resp


def _fineract(code: str, msg: str = "m", param: str | None = None) -> dict:
    return {"userMessageGlobalisationCode": code, "defaultUserMessage": msg,
            "errors": [{"userMessageGlobalisationCode": code, "defaultUserMessage": msg, "parameterName": param}]}


@pytest.mark.parametrize(("status", "body", "auth", "kind"), [
    (400, {"status": 400, "error": "Bad Request", "message": "No tenant identifier found: ..."}, "basic", "auth"),
    (400, _fineract("validation.msg.client.mobileNo.exceeds.max.length", "tenant x", "mobileNo"), "basic",
     "validation"),
    (400, _fineract("error.msg.invalid.orderBy"), "basic", "request"),
    (401, {"status": 401, "error": "Unauthorized"}, "basic", "auth"),
    (401, {"error": "invalid_token"}, "bearer", "token_expired"),
    (403, _fineract("error.msg.client.duplicate.externalId"), "basic", "rejected"),
    (403, _fineract("error.msg.not.authorized"), "basic", "permission"),
    (404, _fineract("error.msg.client.id.invalid"), "basic", "not_found"),
    (409, _fineract("error.msg.client.version.stale"), "basic", "conflict"),
    (412, {"code": "PRECONDITION_FAILED"}, "bearer", "conflict"),
    (422, {"code": "INVALID_FIELD", "field": "mobile"}, "bearer", "validation"),
    (429, {}, "basic", "throttled"),
    (502, b"<html>bad gateway</html>", "basic", "transient"),
    (418, {}, "basic", "request"),
])
def test_error_table(status: int, body: object, auth: str, kind: str) -> None:
    from crmbridge.adapters.corebank_rest.errors import classify

    assert classify(_reply(status, body), auth=auth).kind.value == kind


def test_classified_errors_keep_vendor_details_and_mask_personal_data() -> None:
    from crmbridge.adapters.corebank_rest.errors import classify, to_error

    c = classify(_reply(429, _fineract("error.msg.platform.rate.limit", "slow down 13812345678"),
                        {"Retry-After": "7", "X-Request-Id": "req-1"}), auth="basic")
    err = to_error(c)
    assert (err.status, err.vendor_code, err.request_id, getattr(err, "retry_after", None)) == \
        (429, "error.msg.platform.rate.limit", "req-1", 7.0)
    assert "13812345678" not in str(err) and "5678" in str(err)
