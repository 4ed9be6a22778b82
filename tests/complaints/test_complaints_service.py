"""The complaint-service adapter against its simulator over real HTTP on loopback: the adapter contract, the
idempotency key, status coming back incrementally, documented problem bodies, and a customer not yet at the bank."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from crmbridge.adapters.base import Adapter, WriteItem, WriteStatus
from crmbridge.adapters.complaints import ComplaintsAdapter, ComplaintsConfig
from crmbridge.adapters.complaints.simulator import ComplaintSimulator
from crmbridge.adapters.registry import adapter_class, simulator_class
from crmbridge.adapters.simulator import Fault, Knobs
from crmbridge.core.errors import AuthenticationError
from crmbridge.core.retry import RetryPolicy
from crmbridge.testing.contract import AdapterContract, ContractHarness

FAST = RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.01, jitter=0.0)
ENV = "CRMBRIDGE_TEST_COMPLAINTS_KEY"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, ComplaintSimulator.api_key)
    monkeypatch.setenv(ENV + "_BAD", "wrong-key")


def make(sim: ComplaintSimulator, *, bad: bool = False, **cfg: Any) -> ComplaintsAdapter:
    config = ComplaintsConfig(base_url=f"{sim.url}/api/v1", api_key=f"env:{ENV}{'_BAD' if bad else ''}",
                              retry=FAST, timeout=5.0, source_system="ZOHO", **cfg)
    return ComplaintsAdapter(config, system="complaints_test")


def case(i: int, **over: Any) -> dict[str, Any]:
    return {"party_id": f"party-{i}", "priority": "HIGH", "summary": f"信用卡年费争议 {i}",
            "received_at": "2026-12-01T09:30:00+08:00", "business_code": "B03", "reason_code": "C08",
            "channel_code": "A0101", "due_at": "2026-12-16T09:30:00+08:00", **over}


@pytest.fixture
def sim() -> Iterator[ComplaintSimulator]:
    with ComplaintSimulator(Knobs(records=0)) as s:
        yield s  # type: ignore[misc]


def test_registered_by_name_and_seeds_its_records() -> None:
    assert adapter_class("complaints") is ComplaintsAdapter
    assert simulator_class("complaints") is ComplaintSimulator
    with ComplaintSimulator(Knobs(records=12, seed=3)) as sim:
        assert sim.count() == 12 and "12 complaints" in sim.banner()[0]


def test_create_is_idempotent_and_status_comes_back_incrementally(sim: ComplaintSimulator) -> None:
    with make(sim, page_size=2, overlap_seconds=0) as ad:
        res = ad.write("complaints", [WriteItem(key=f"case-{i}", payload=case(i), known_new=True) for i in range(5)])
        assert [r.status for r in res] == [WriteStatus.CREATED] * 5 and sim.count() == 5
        again = ad.write("complaints", [WriteItem(key="case-0", payload=case(0))])
        assert again[0].status is WriteStatus.UNCHANGED and again[0].external_id == res[0].external_id
        assert sim.count() == 5
        pages = list(ad.extract("complaints"))
        assert len(pages) == 3 and sum(len(p.records) for p in pages) == 5
        cut = max(r.modified_at for p in pages for r in p.records)
        sim.clock = lambda: cut.timestamp() + 10
        sim.advance(res[3].external_id, "IN_PROGRESS")
        later = [r for p in ad.extract("complaints", since=cut + timedelta(seconds=1)) for r in p.records]
        assert [(r.external_id, r.data["status"], r.version) for r in later] == [(res[3].external_id, "IN_PROGRESS",
                                                                                  "2")]


def test_retried_post_with_the_same_key_replays(sim: ComplaintSimulator) -> None:
    """known_new skips the lookup: a POST whose answer was lost is sent again with the same Idempotency-Key."""
    with make(sim) as ad:
        ad.config.timeout = 0.3
        sim.knobs.timeout_delay = 0.8
        sim.inject(Fault.TIMEOUT_AFTER_APPLY, times=1)
        res = ad.write("complaints", [WriteItem(key="case-t", payload=case(1), known_new=True)])
    assert res[0].status in (WriteStatus.CREATED, WriteStatus.UNCHANGED) and sim.count() == 1


def test_expired_idempotency_key_is_covered_by_the_lookup() -> None:
    with ComplaintSimulator(Knobs(records=0, extra={"idempotency_ttl": 0})) as sim, make(sim) as ad:  # type: ignore[arg-type]
        ad.write("complaints", [WriteItem(key="case-e", payload=case(1), known_new=True)])
        # the service forgot the key at once: only the lookup by source_case_id prevents a second complaint
        res = ad.write("complaints", [WriteItem(key="case-e", payload=case(1))])
        assert res[0].status is WriteStatus.UNCHANGED and sim.count() == 1
        raw = requests.post(f"{sim.url}/api/v1/complaints", json={**case(1), "source_system": "ZOHO",
                                                                   "source_case_id": "case-e"},
                            headers={"Authorization": f"Bearer {sim.api_key}", "Idempotency-Key": "case-e"},
                            timeout=5)
        assert raw.status_code == 201 and sim.count() == 2   # without the lookup: a duplicate complaint


def test_problem_documents_on_the_wire(sim: ComplaintSimulator) -> None:
    h = {"Authorization": f"Bearer {sim.api_key}"}
    url = f"{sim.url}/api/v1/complaints"
    r = requests.post(url, json=case(1), headers=h, timeout=5)
    assert r.status_code == 400 and r.json()["code"] == "IDEMPOTENCY_KEY_MISSING"
    assert r.headers["Content-Type"] == "application/problem+json"
    r = requests.post(url, json={"priority": "SOON"}, headers={**h, "Idempotency-Key": "k1"}, timeout=5)
    body = r.json()
    assert r.status_code == 422 and body["code"] == "VALIDATION_FAILED" and body["status"] == 422
    assert {e["field"] for e in body["errors"]} >= {"priority", "summary", "party_id"}
    full = {**case(1), "source_system": "ZOHO", "source_case_id": "c1"}
    assert requests.post(url, json=full, headers={**h, "Idempotency-Key": "k2"}, timeout=5).status_code == 201
    again = requests.post(url, json=full, headers={**h, "Idempotency-Key": "k2"}, timeout=5)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    other = requests.post(url, json={**full, "priority": "LOW"}, headers={**h, "Idempotency-Key": "k2"}, timeout=5)
    assert other.status_code == 422 and other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert requests.get(f"{url}/CMP0", headers=h, timeout=5).json()["code"] == "NOT_FOUND"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(f"{url}?page_size=500", headers=h, timeout=5).status_code == 422


def test_record_failures_and_a_customer_not_yet_at_the_bank() -> None:
    with ComplaintSimulator(Knobs(records=0, extra={"party_must_exist": True})) as sim, make(sim) as ad:  # type: ignore[arg-type]
        sim.know_party("party-1")
        res = ad.write("complaints", [
            WriteItem(key="a", payload=case(1), known_new=True),
            WriteItem(key="b", payload=case(2), known_new=True),                      # party not at the bank yet
            WriteItem(key="c", payload=case(1, priority="SOON"), known_new=True),     # bad value
        ])
        assert [r.status for r in res] == [WriteStatus.CREATED, WriteStatus.FAILED, WriteStatus.FAILED]
        assert res[1].error.code == "UNKNOWN_PARTY" and res[2].error.code == "VALIDATION_FAILED"
        assert res[2].error.field == "priority"
        sim.know_party("party-2")   # the customer reaches the bank: the same write now goes through
        assert ad.write("complaints", [WriteItem(key="b", payload=case(2))])[0].status is WriteStatus.CREATED


def test_closed_complaint_refuses_changes_and_stale_version_conflicts(sim: ComplaintSimulator) -> None:
    with make(sim) as ad:
        first = ad.write("complaints", [WriteItem(key="x", payload=case(1), known_new=True)])[0]
        upd = ad.write("complaints", [WriteItem(key="x", payload=case(1, priority="URGENT"),
                                                external_id=first.external_id, expected_version=first.version)])[0]
        assert upd.status is WriteStatus.UPDATED and upd.version == "2"
        stale = ad.write("complaints", [WriteItem(key="x", payload=case(1, priority="LOW"),
                                                  external_id=first.external_id, expected_version="1")])[0]
        assert stale.status is WriteStatus.CONFLICT and stale.error.code == "VERSION_MISMATCH"
        sim.advance(first.external_id, "CLOSED", resolution="已退还年费")
        closed = ad.write("complaints", [WriteItem(key="x", payload=case(1, priority="LOW"),
                                                   external_id=first.external_id)])[0]
        assert closed.status is WriteStatus.FAILED and closed.error.code == "INVALID_TRANSITION"
        got = ad.get("complaints", first.external_id)
        assert got.data["status"] == "CLOSED" and got.data["closed_at"] and got.data["priority"] == "URGENT"


def test_bad_key_is_an_authentication_error(sim: ComplaintSimulator) -> None:
    with make(sim, bad=True) as ad, pytest.raises(AuthenticationError):
        list(ad.extract("complaints"))


class ComplaintsHarness(ContractHarness):
    object_name = "complaints"
    key_field = "source_case_id"
    page_size = 20
    supports_delete = False
    supports_versions = True
    token_auth = False
    modified_granularity = timedelta(seconds=3)

    def __init__(self, sim: ComplaintSimulator) -> None:
        self.simulator = sim
        self.sim = sim

    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        return make(self.sim, bad=bad_credentials, page_size=self.page_size)

    def seed(self, n: int) -> None:
        self.sim.seed(n)

    def payload(self, i: int, variant: int = 0) -> dict:
        return case(i, priority=("HIGH", "LOW", "URGENT")[variant % 3])

    def count(self) -> int:
        return self.sim.count()

    def ids(self) -> set[str]:
        return set(self.sim.complaints)

    def invalid_payload(self, i: int) -> dict:
        return case(i, priority="SOON")


class TestComplaintsContract(AdapterContract):
    @pytest.fixture
    def harness(self) -> Iterator[ComplaintsHarness]:
        with ComplaintSimulator(Knobs(records=0)) as sim:
            yield ComplaintsHarness(sim)  # type: ignore[arg-type]


def test_doctor(sim: ComplaintSimulator) -> None:
    with make(sim) as ad:
        found = ad.doctor({"complaints": ["priority", "summary"]})
    assert [f.status for f in found] == ["ok", "ok", "ok"], found
    with make(sim, bad=True) as ad:
        refused = ad.doctor({"complaints": []})
    assert any(f.check == "authenticated" and f.status == "fail" for f in refused)


def test_resending_a_closed_complaint_unchanged_is_not_a_failure(sim: ComplaintSimulator) -> None:
    with make(sim) as ad:
        first = ad.write("complaints", [WriteItem(key="y", payload=case(1), known_new=True)])[0]
        sim.advance(first.external_id, "CLOSED")
        again = ad.write("complaints", [WriteItem(key="y", payload=case(1))])[0]
    assert again.status is WriteStatus.UNCHANGED and again.external_id == first.external_id
