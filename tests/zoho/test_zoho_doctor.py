"""``crmbridge doctor`` probes of the Zoho adapter (``ZohoAdapter._probe`` through ``Adapter.doctor``) against the
simulator: authentication, data centre, edition, page size, the If-Modified-Since boundary found by reading, clock
skew from the Date header, the API-credit header, the deleted-records read. Read-only: nothing is written."""

from __future__ import annotations

import pytest
from zoho_helpers import make_adapter

from crmbridge.adapters.base import Finding


def _by_check(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.check, []).append(f)
    return out


def _one(findings: list[Finding], check: str) -> Finding:
    found = _by_check(findings)[check]
    assert len(found) == 1, found
    return found[0]


def test_healthy_system_reports_every_probe_and_writes_nothing(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=20)
    adapter = make_adapter(sim)
    findings = adapter.doctor({"Contacts": ["Last_Name", "Party_ID", "Mobile"]})
    checks = _by_check(findings)
    assert {"fields", "authenticated", "data_centre", "clock_skew", "rate_limit", "edition", "operation",
            "page_size", "since_boundary"} <= set(checks)
    assert _one(findings, "fields").status == "ok"
    assert _one(findings, "authenticated").status == "ok"
    assert _one(findings, "data_centre").status == "info"        # loopback: a simulator
    assert _one(findings, "clock_skew").status == "ok"
    assert _one(findings, "rate_limit").status == "ok"
    assert _one(findings, "edition").status == "ok"
    assert [f.status for f in checks["operation"]] == ["ok", "ok"]
    assert _one(findings, "page_size").status == "ok"
    boundary = _one(findings, "since_boundary")                  # the simulator's default: exclusive
    assert boundary.status == "info" and "exclusive" in boundary.detail
    assert boundary.config == {"since_boundary": "exclusive"} and boundary.obj == "Contacts"
    writes = [k for k in sim.requests_seen if not k.startswith("GET ") and k != "POST /oauth/v2/token"]
    assert writes == [], "doctor probes are read-only"
    text = " ".join(f.detail for f in findings)
    assert sim.client_secret not in text and sim.refresh_token not in text and "oauthtoken" not in text


@pytest.mark.parametrize(("server", "cfg", "status", "suggested"), [
    ("inclusive", {}, "info", "inclusive"),
    ("inclusive", {"since_boundary": "inclusive"}, "ok", None),
    ("exclusive", {"since_boundary": "exclusive"}, "ok", None),
    ("exclusive", {"since_boundary": "inclusive"}, "warn", "exclusive"),          # the overlap still covers it
    ("exclusive", {"since_boundary": "inclusive", "overlap_seconds": 0}, "fail", "exclusive"),  # records lost
])
def test_since_boundary_is_detected_by_reading(zoho_sim, server: str, cfg: dict, status: str,  # type: ignore[no-untyped-def,type-arg]
                                               suggested: str | None) -> None:
    sim = zoho_sim(records=10, extra={"ims_boundary": server})
    found = _one(make_adapter(sim, **cfg).doctor({"Contacts": []}), "since_boundary")
    assert found.status == status and server in found.detail
    assert found.config == ({"since_boundary": suggested} if suggested else {})


def test_empty_module_leaves_the_boundary_unknown(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=0)
    found = _one(make_adapter(sim).doctor({"Contacts": []}), "since_boundary")
    assert found.status == "info" and "empty" in found.detail and found.config == {}


def test_clock_skew_from_the_date_header(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3, extra={"clock_skew": 120})
    found = _one(make_adapter(sim).doctor({"Contacts": []}), "clock_skew")
    assert found.status == "warn" and "behind" in found.detail
    assert found.config == {"overlap_seconds": 125}


def test_credit_header_past_half_the_day_is_a_warning(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3, extra={"credits": 4})
    found = _one(make_adapter(sim).doctor({"Contacts": []}), "rate_limit")
    assert found.status == "warn" and "API credits remaining" in found.detail


def test_edition_of_the_org_versus_the_configuration(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3, extra={"edition": "professional"})
    found = _one(make_adapter(sim).doctor({"Contacts": []}), "edition")
    assert found.status == "warn" and found.config == {"edition": "professional"}
    assert _one(make_adapter(sim, edition="professional").doctor({"Contacts": []}), "edition").status == "ok"


@pytest.mark.parametrize(("page_size", "status"), [(200, "fail"), (100, "ok")])
def test_page_size_the_service_accepts(zoho_sim, page_size: int, status: str) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3, extra={"max_per_page": 100})
    found = _one(make_adapter(sim, page_size=page_size).doctor({"Contacts": []}), "page_size")
    assert found.status == status and f"per_page={page_size}" in found.detail


def test_smaller_configured_page_size_is_pointed_out(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3)
    found = _one(make_adapter(sim, page_size=50).doctor({"Contacts": []}), "page_size")
    assert found.status == "info" and found.config == {"page_size": 200}


def test_token_for_another_data_centre_is_a_failure(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3, extra={"api_domain": "https://www.zohoapis.com"})
    found = _one(make_adapter(sim).doctor({"Contacts": []}), "data_centre")
    assert found.status == "fail" and found.config == {"api_domain": "https://www.zohoapis.com"}


def test_system_findings_once_object_findings_per_object(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3)
    checks = _by_check(make_adapter(sim).doctor({"Contacts": [], "Accounts": []}))
    assert len(checks["authenticated"]) == len(checks["edition"]) == len(checks["clock_skew"]) == 1
    assert {f.obj for f in checks["since_boundary"]} == {"Contacts", "Accounts"}
    assert {f.obj for f in checks["page_size"]} == {"Contacts", "Accounts"}


def test_refused_credentials_and_an_unreachable_service_are_findings_not_crashes(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3)
    found = _one(make_adapter(sim, bad_refresh=True).doctor({"Contacts": []}), "authenticated")
    assert found.status == "fail" and "credentials refused" in found.detail
    adapter = make_adapter(sim)
    sim.stop()
    findings = adapter.doctor({"Contacts": []})
    assert _one(findings, "reachable").status == "fail"
    assert all(f.status == "fail" for f in findings)


def test_a_cached_token_zoho_dropped_is_refreshed_not_reported_as_refused(zoho_sim) -> None:  # type: ignore[no-untyped-def]
    sim = zoho_sim(records=3)
    adapter = make_adapter(sim)
    adapter.describe("Contacts")          # a token is cached
    sim.expire_tokens()                   # and Zoho no longer accepts it
    findings = make_adapter(sim)._probe("Contacts")   # the probe itself, not after describe()'s own refresh
    assert _one(findings, "authenticated").status == "ok"
    assert sim.requests_seen["POST /oauth/v2/token"] == 2
