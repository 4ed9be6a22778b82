"""Replies that must never read as success: a records path that matches nothing (or an empty list) while the
reply says records remain, vendor error codes the table does not know, and ``crmbridge doctor``'s read-only probes
(reachable, authenticated, page size, the since-boundary found by reading, clock skew, rate-limit headers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from corebank_rest_support import fineract_config, openbank_config, set_env
from test_corebank_rest_changes import changes_config

from crmbridge.adapters.corebank_rest import CorebankRestAdapter
from crmbridge.adapters.corebank_rest.simulator import CorebankRestSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.core.errors import BadResponseError, ConfigurationError, RequestError


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch)


@pytest.fixture
def ob() -> Iterator[CorebankRestSimulator]:
    with CorebankRestSimulator(Knobs(seed=3, records=35, extra={"dialect": "openbank"})) as s:
        yield s


@pytest.fixture
def sim() -> Iterator[CorebankRestSimulator]:
    with CorebankRestSimulator(Knobs(seed=3, records=35)) as s:
        yield s


def drain(adapter: CorebankRestAdapter, obj: str) -> list[str]:
    return [r.external_id for p in adapter.extract(obj) for r in p.records]


# ---------------------------------------------------------------------- a wrong records path
@pytest.mark.parametrize(("style", "says"), [
    ("next_link", "'links.next' links a next page"),
    ("page", "'meta.totalPages' says 4 pages"),
])
def test_records_path_matching_an_empty_list_is_not_an_empty_core(ob: CorebankRestSimulator, style: str,
                                                                   says: str) -> None:
    """The field case: the reply said more pages and a total, the configured path held no records, and the run
    read 0 customers and succeeded (today's code followed every next link and yielded nothing)."""
    cfg = openbank_config(ob, style=style)
    res = cfg.resources["Customer"]
    res.paths.list = "warnings"     # an operator's slip: the reply's other list
    res.pagination.total_path = "meta.totalElements"
    with pytest.raises(BadResponseError) as info:
        drain(CorebankRestAdapter(cfg), "Customer")
    msg = str(info.value)
    assert "Customer: 0 records at 'warnings' (resources.Customer.paths.list)" in msg
    assert "GET /api/v2/customers" in msg and says in msg and "'meta.totalElements' says 35 records" in msg


def test_has_more_flag_with_no_records_is_refused(ob: CorebankRestSimulator) -> None:
    cfg = openbank_config(ob, style="page")
    cfg.resources["Customer"].paths.list = "warnings"
    cfg.resources["Customer"].pagination.total_pages_path = None
    cfg.resources["Customer"].pagination.has_more_path = "links.next"  # any truthy value: more pages follow
    with pytest.raises(BadResponseError, match="'links.next' says more pages follow"):
        drain(CorebankRestAdapter(cfg), "Customer")


def test_an_empty_core_is_still_empty(ob: CorebankRestSimulator) -> None:
    ob.seed(0)
    cfg = openbank_config(ob, style="page")
    cfg.resources["Customer"].pagination.total_path = "meta.totalElements"
    assert drain(CorebankRestAdapter(cfg), "Customer") == []


def test_records_path_matching_nothing_names_path_resource_and_url(sim: CorebankRestSimulator) -> None:
    cfg = fineract_config(sim)
    cfg.resources["Client"].paths.list = "content"
    with pytest.raises(BadResponseError) as info:
        drain(CorebankRestAdapter(cfg), "Client")
    msg = str(info.value)
    assert "Client: no record list at 'content' (resources.Client.paths.list)" in msg
    assert "GET /fineract-provider/api/v1/clients" in msg and "pageItems" in msg and "totalFilteredRecords" in msg


# ---------------------------------------------------------------------- vendor codes
def test_unknown_business_code_is_named(sim: CorebankRestSimulator) -> None:
    cfg = fineract_config(sim)
    cfg.resources["Client"].params = {"orderBy": "branchRank"}
    with pytest.raises(RequestError) as info:
        drain(CorebankRestAdapter(cfg), "Client")
    assert info.value.vendor_code == "error.msg.invalid.orderBy"
    assert "[vendor code error.msg.invalid.orderBy, not in the error table]" in str(info.value)


def test_auth_config_broken_after_load_is_a_configuration_error(sim: CorebankRestSimulator) -> None:
    cfg = fineract_config(sim)
    cfg.auth.password = None
    with pytest.raises(ConfigurationError, match="basic auth needs username and password"):
        drain(CorebankRestAdapter(cfg), "Client")
    cfg.auth.type = "bearer"
    with pytest.raises(ConfigurationError, match="bearer auth needs a token"):
        drain(CorebankRestAdapter(cfg), "Client")


# ---------------------------------------------------------------------- doctor
def findings(adapter: CorebankRestAdapter, obj: str) -> dict[str, Any]:
    return {f.check: f for f in adapter._probe(obj)}


@pytest.mark.parametrize("dialect", ["fineract", "openbank"])
@pytest.mark.parametrize("boundary", ["inclusive", "exclusive"])
def test_doctor_reads_the_since_boundary(dialect: str, boundary: str) -> None:
    with CorebankRestSimulator(Knobs(seed=3, records=35, extra={"dialect": dialect,
                                                                "since_boundary": boundary})) as s:
        adapter = CorebankRestAdapter(changes_config(s))
        obj = "Client" if dialect == "fineract" else "Customer"
        f = findings(adapter, obj)
        assert f["reachable"].status == "ok" and f["authenticated"].status == "ok"
        assert f["since_boundary"].config == {f"resources.{obj}.since_boundary": boundary}
        assert f"({boundary})" in f["since_boundary"].detail and f["since_boundary"].status == "info"
        assert f["clock_skew"].status == "ok" and f["page_size"].status == "ok"
        wrong = "inclusive" if boundary == "exclusive" else "exclusive"
        f = findings(CorebankRestAdapter(changes_config(s, since_boundary=wrong)), obj)
        assert f["since_boundary"].status == ("fail" if wrong == "inclusive" else "warn")
        f = findings(CorebankRestAdapter(changes_config(s, since_boundary=boundary)), obj)
        assert f["since_boundary"].status == "ok" and f["since_boundary"].config == {}


def test_doctor_finds_the_page_size_the_service_accepts(ob: CorebankRestSimulator) -> None:
    f = findings(CorebankRestAdapter(openbank_config(ob, page_size=400)), "Customer")
    assert f["page_size"].status == "fail"
    assert f["page_size"].config == {"resources.Customer.pagination.page_size": 100}


def test_doctor_reports_refused_credentials_and_rate_limit_headers(sim: CorebankRestSimulator) -> None:
    f = findings(CorebankRestAdapter(fineract_config(sim, bad=True)), "Client")
    assert f["authenticated"].status == "fail" and "wrong-password" not in f["authenticated"].detail
    assert findings(CorebankRestAdapter(fineract_config(sim)), "Client")["rate_limit"].detail == \
        "no rate-limit headers in the reply"
    sim.knobs.rate_limit = 50
    f = findings(CorebankRestAdapter(fineract_config(sim)), "Client")
    assert "X-RateLimit-Limit: 50" in f["rate_limit"].detail
    assert f["since_boundary"].status == "info" and "full scan" in f["since_boundary"].detail


def test_doctor_unreachable_is_a_finding_not_a_crash() -> None:
    with CorebankRestSimulator(Knobs(records=1)) as s:
        cfg = fineract_config(s)
    adapter = CorebankRestAdapter(cfg)   # the simulator has stopped: nothing listens there
    out = adapter.doctor({"Client": ["mobileNo"]})
    assert any(f.check == "reachable" and f.status == "fail" for f in out)


def test_closed_customers_come_once_as_records_never_also_as_tombstones(sim: CorebankRestSimulator) -> None:
    """A first sync read 60 and accounted for 58: the adapter is not where the two went (it yields a closed
    client once, as a record; the mapping's deleted_when makes it a tombstone)."""
    sim.touch("3", status={"id": 600, "code": "clientStatusType.closed", "value": "Closed"}, active=False)
    a = CorebankRestAdapter(fineract_config(sim))
    records = [r for p in a.extract("Client") for r in p.records]
    closed = [r for r in records if r.data["status"]["code"] == "clientStatusType.closed"]
    assert closed and not any(r.deleted for r in records)
    assert len(records) == len({r.external_id for r in records}) == 35
    assert [r for p in a.extract_deleted("Client") for r in p.records] == []


def _raw(status: int, body: bytes, headers: dict[str, str]) -> Any:
    import requests

    resp = requests.Response()
    resp.status_code, resp._content = status, body
    resp.headers.update(headers)
    return resp


def test_retry_after_as_an_http_date_is_honoured() -> None:
    from datetime import UTC, datetime

    from crmbridge.adapters.corebank_rest.errors import retry_after

    now = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)
    resp = _raw(503, b"", {"Retry-After": "Mon, 07 Dec 2026 10:00:30 GMT"})
    assert retry_after(resp, now) == 30.0
    assert retry_after(_raw(503, b"", {"Retry-After": "soon"}), now) is None


def test_a_firewall_page_is_described_not_quoted() -> None:
    from crmbridge.adapters.corebank_rest.errors import classify

    page = b"<html><body>Request blocked. Customer 13812345678 ref 42</body></html>"
    c = classify(_raw(403, page, {"Content-Type": "text/html"}), auth="basic")
    assert c.kind.value == "permission" and "HTTP 403 with an HTML body" in c.message
    assert "<html" not in c.message and "13812345678" not in c.message
