"""``crmbridge doctor`` probes of the core-banking SOAP adapter (read-only) against the simulators: operations in
the WSDL, reachability and credentials, the largest page accepted, the changed-since boundary found by reading
(both simulator modes), clock skew and rate-limit headers."""

from __future__ import annotations

import pytest
from corebank_soap_support import fcubs_config

from crmbridge.adapters.base import Finding
from crmbridge.adapters.corebank_soap import CorebankSoapAdapter
from crmbridge.adapters.corebank_soap.simulator import CorebankSoapSimulator, T24StyleSimulator
from crmbridge.adapters.simulator import Knobs

KEY = "operations.list.since_boundary"


def _by(findings: list[Finding], check: str) -> list[Finding]:
    return [f for f in findings if f.check == check]


def _one(findings: list[Finding], check: str) -> Finding:
    [f] = _by(findings, check)
    return f


@pytest.mark.parametrize("boundary", ["inclusive", "exclusive"])
@pytest.mark.parametrize("same_second", [0, 30], ids=["distinct-stamps", "30-in-one-second"])
def test_probe_detects_the_since_boundary(boundary: str, same_second: int) -> None:
    with CorebankSoapSimulator(Knobs(seed=5, records=80), since_boundary=boundary,
                               same_second=same_second) as sim, \
            CorebankSoapAdapter(fcubs_config(sim)) as adapter:
        found = adapter.doctor({"Customer": ["CUSTNO", "Custpersonal.MOBNUM"]})
        f = _one(found, "since_boundary")
        assert f.config == {KEY: boundary} and f.status == "info" and boundary in f.detail
        assert _one(found, "reachable").status == "ok" and _one(found, "authenticated").status == "ok"
        assert {x.detail.split(":")[0] for x in _by(found, "operation") if x.status == "ok"} == {
            "list", "get", "modify"}
        assert _one(found, "fields").status == "ok"
        assert all(sim.store.record(i)["modno"] == 1 for i in range(sim.store.n))   # read-only


def test_probe_fails_inclusive_configured_on_an_exclusive_core() -> None:
    with CorebankSoapSimulator(Knobs(seed=5, records=40), since_boundary="exclusive") as sim, \
            CorebankSoapAdapter(fcubs_config(sim, operations={"list": {"since_boundary": "inclusive"}})) as adapter:
        f = _one(adapter.doctor({"Customer": []}), "since_boundary")
        assert f.status == "fail" and f.config == {KEY: "exclusive"}


def test_probe_is_quiet_when_the_configuration_matches() -> None:
    with CorebankSoapSimulator(Knobs(seed=5, records=40), since_boundary="exclusive") as sim, \
            CorebankSoapAdapter(fcubs_config(sim, operations={"list": {"since_boundary": "exclusive"}})) as adapter:
        f = _one(adapter.doctor({"Customer": []}), "since_boundary")
        assert f.status == "ok" and f.config == {}


def test_probe_t24_enquiry_is_inclusive(t24_sim: T24StyleSimulator, t24: CorebankSoapAdapter) -> None:
    found = t24.doctor({"Customer": []})
    assert _one(found, "since_boundary").config == {KEY: "inclusive"}
    assert _one(found, "reachable").status == "ok"


def test_probe_finds_the_page_size_limit() -> None:
    with CorebankSoapSimulator(Knobs(seed=5, records=20), max_page_size=150) as sim, \
            CorebankSoapAdapter(fcubs_config(sim)) as adapter:
        f = _one(adapter.doctor({"Customer": []}), "page_size")
        assert f.status == "warn" and f.config == {"operations.list.paging.max_page_size": 150}
    with CorebankSoapSimulator(Knobs(seed=5, records=20), max_page_size=5) as sim, \
            CorebankSoapAdapter(fcubs_config(sim)) as adapter:
        f = _one(adapter.doctor({"Customer": []}), "page_size")
        assert f.status == "fail" and f.config["operations.list.paging.page_size"] == 5


def test_probe_accepting_more_than_configured_is_information(fcubs_sim: CorebankSoapSimulator) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, operations={
            "list": {"paging": {"page_size": 10, "max_page_size": 200}}})) as adapter:
        f = _one(adapter.doctor({"Customer": []}), "page_size")
        assert f.status == "info" and f.config == {"operations.list.paging.max_page_size": 1000}


def test_probe_reports_a_missing_operation(fcubs_sim: CorebankSoapSimulator) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, operations={
            "get": {"operation": "QueryCustomerIOX"}, "list": {"paging": {"page_size": 10}}})) as adapter:
        found = adapter.doctor({"Customer": []})
        [bad] = [f for f in _by(found, "operation") if f.status == "fail"]
        assert "QueryCustomerIOX" in bad.detail and bad.config == {"operations.get.operation": "QueryCustomerIO"}


def test_probe_reports_refused_credentials(fcubs_sim: CorebankSoapSimulator) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, bad_credentials=True)) as adapter:
        found = adapter.doctor({"Customer": []})
        assert _one(found, "authenticated").status == "fail"
        assert "not-the-password" not in repr(found)


def test_probe_reports_clock_skew_and_rate_limit_headers(fcubs_sim: CorebankSoapSimulator,
                                                         fcubs: CorebankSoapAdapter) -> None:
    found = fcubs.doctor({"Customer": []})
    skew = _by(found, "clock_skew")
    assert skew and skew[0].status == "ok"
    assert _one(found, "rate_limit").status == "info"


def test_probe_unreachable_service_is_a_finding_not_a_crash(fcubs_sim: CorebankSoapSimulator) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim)) as adapter:
        adapter.describe("Customer")        # the WSDL is loaded
        fcubs_sim.queue_gateway("empty503", times=50)
        found = adapter.doctor({"Customer": []})
        assert _one(found, "reachable").status == "fail"
