"""Configuration of the core-banking SOAP adapter: WSDL sources, service/port/operation selection, endpoint
override, unsafe WSDLs, time zone, live timeouts, registry names."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from corebank_soap_support import fcubs_config
from pydantic import ValidationError as PydanticValidationError

from crmbridge.adapters.corebank_soap import CorebankSoapAdapter, CorebankSoapConfig
from crmbridge.adapters.corebank_soap.simulator import CorebankSoapSimulator
from crmbridge.adapters.registry import adapter_class, simulator_class
from crmbridge.adapters.simulator import Fault
from crmbridge.core.errors import BadResponseError, ConfigurationError

PACKAGED = Path(__file__).resolve().parents[2] / "adapters" / "corebank_soap" / "fcubs_customer.wsdl"


def test_registry_names() -> None:
    assert adapter_class("corebank-soap") is CorebankSoapAdapter
    assert adapter_class("corebank_soap").Config is CorebankSoapConfig
    assert simulator_class("corebank-soap") is CorebankSoapSimulator


def test_pinned_packaged_wsdl_with_endpoint_override(fcubs_sim: CorebankSoapSimulator) -> None:
    cfg = fcubs_config(fcubs_sim, wsdl="package:fcubs_customer.wsdl", endpoint=fcubs_sim.endpoint)
    with CorebankSoapAdapter(cfg) as adapter:
        assert adapter.get("Customer", "000000001") is not None
    assert fcubs_sim.requests_seen["GET /FCUBSCustomerService/FCUBSCustomerService"] == 0


def test_wsdl_from_a_file_path(fcubs_sim: CorebankSoapSimulator) -> None:
    cfg = fcubs_config(fcubs_sim, wsdl=str(PACKAGED), endpoint=fcubs_sim.endpoint,
                       service="FCUBSCustomerService", port="FCUBSCustomerServiceSEI")
    with CorebankSoapAdapter(cfg) as adapter:
        assert adapter.get("Customer", "000000002") is not None


@pytest.mark.parametrize(("override", "message"), [
    ({"service": "NoSuchService"}, "no service 'NoSuchService'; it has FCUBSCustomerService"),
    ({"port": "NoSuchPort"}, "has no port 'NoSuchPort'"),
    ({"wsdl": "/nonexistent/fcubs.wsdl"}, "does not exist"),
    ({"wsdl": "package:nope.wsdl"}, "no packaged WSDL"),
    ({"operations": {"get": {"operation": "QueryCustomerXX"}}}, "no operation 'QueryCustomerXX'"),
])
def test_configuration_mistakes_name_the_key(fcubs_sim: CorebankSoapSimulator, override: dict,
                                             message: str) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, **override)) as adapter:
        with pytest.raises(ConfigurationError, match=message):
            adapter.get("Customer", "000000001")


def test_config_is_strict() -> None:
    with pytest.raises(PydanticValidationError):
        CorebankSoapConfig.model_validate({"adapter": "corebank_soap", "wsdll": "x"})
    with pytest.raises(PydanticValidationError, match="unknown time zone"):
        CorebankSoapConfig.model_validate({"adapter": "corebank_soap", "timezone": "Mars/Olympus"})
    with pytest.raises(PydanticValidationError):
        CorebankSoapConfig.model_validate({"adapter": "corebank_soap", "business_errors": [
            {"code": "X", "kind": "explode"}]})


def test_a_wsdl_with_a_dtd_is_refused(tmp_path: Path, fcubs_sim: CorebankSoapSimulator) -> None:
    evil = tmp_path / "evil.wsdl"
    text = PACKAGED.read_text(encoding="utf-8")
    evil.write_text(text.replace('<?xml version="1.0" encoding="UTF-8"?>',
                                 '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM '
                                 '"file:///etc/hostname">]>', 1), encoding="utf-8")
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, wsdl=str(evil), endpoint=fcubs_sim.endpoint)) as adapter:
        with pytest.raises(BadResponseError, match="refused unsafe XML"):
            adapter.get("Customer", "000000001")


def test_core_time_zone_is_configuration(fcubs_sim: CorebankSoapSimulator) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim)) as shanghai, \
            CorebankSoapAdapter(fcubs_config(fcubs_sim, timezone="UTC")) as utc:
        a, b = shanghai.get("Customer", "000000005"), utc.get("Customer", "000000005")
    assert a is not None and b is not None and a.modified_at and b.modified_at
    assert b.modified_at - a.modified_at == timedelta(hours=8)
    assert a.modified_at.isoformat().endswith("+00:00")


def test_a_changed_timeout_applies_to_the_next_call(fcubs_sim: CorebankSoapSimulator,
                                                    fcubs: CorebankSoapAdapter) -> None:
    assert fcubs.get("Customer", "000000001") is not None
    fcubs.config.timeout = 0.2
    fcubs_sim.knobs.timeout_delay = 0.6
    fcubs_sim.inject(Fault.TIMEOUT_AFTER_APPLY, times=1)
    assert fcubs.get("Customer", "000000001") is not None
    assert fcubs.stats.by_status["timeout"] == 1


def test_describe_lists_the_record_fields_and_what_is_writable(fcubs: CorebankSoapAdapter) -> None:
    fields = {f.name: f for f in fcubs.describe("Customer")}
    assert fields["CUSTNO"].required and fields["CUSTNO"].read_only
    assert not fields["Custpersonal.MOBNUM"].read_only and fields["NAME"].read_only
    assert "UDFDETAILS.FLDNAM" in fields


def test_page_number_paging_stops_on_has_more(fcubs_sim: CorebankSoapSimulator) -> None:
    fcubs_sim.store.reseed(20)
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, page_size=10, operations={
            "list": {"paging": {"page_size": 10, "mode": "page_number"}}})) as adapter:
        pages = list(adapter.extract("Customer"))
    assert [len(p.records) for p in pages] == [10, 10] and pages[-1].next_state is None


def test_keyset_paging_asks_again_from_the_last_record_and_drops_the_re_read(
        fcubs_sim: CorebankSoapSimulator) -> None:
    fcubs_sim.store.reseed(20)
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, page_size=10)) as adapter:
        pages = list(adapter.extract("Customer"))
        calls = adapter.stats.api_calls
    ids = [r.external_id for p in pages for r in p.records]
    assert ids == [fcubs_sim.store.custno(i) for i in range(20)]     # each once, oldest first
    # the since criterion is inclusive: the next page is asked one larger, for the record read again
    assert [len(p.records) for p in pages] == [10, 10] and calls == 2
    assert pages[-1].next_state is None


def _read_while_editing(adapter: CorebankSoapAdapter, sim: CorebankSoapSimulator, edit: list[str]) -> list[str]:
    """Every id the adapter's extract yields, while ``edit`` are changed in the core after the first page."""
    seen: list[str] = []
    for n, page in enumerate(adapter.extract("Customer")):
        seen += [r.external_id for r in page.records]
        if n == 0:
            for custno in edit:
                sim.store.touch(custno, email=f"new{custno}@example.com")
    return seen


@pytest.mark.parametrize("step_seconds", [37, 0], ids=["distinct-stamps", "one-instant"])
def test_keyset_paging_loses_nothing_when_records_change_during_the_read(
        fcubs_sim: CorebankSoapSimulator, step_seconds: int) -> None:
    """Edited records move to the end of the change list. Under keyset paging nothing shifts under the reader (and
    a list whose records all share one instant is stepped through by page number within it)."""
    fcubs_sim.store.step = timedelta(seconds=step_seconds)
    fcubs_sim.store.reseed(35)
    everyone = {fcubs_sim.store.custno(i) for i in range(35)}
    edit = [fcubs_sim.store.custno(i) for i in (0, 3, 7, 22)]          # three already read, one not yet
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, page_size=10)) as adapter:
        seen = _read_while_editing(adapter, fcubs_sim, edit)
    assert set(seen) == everyone
    assert all(seen.count(c) == 2 for c in edit[:3])   # read before the edit, and again after it at the end
    assert len(seen) == 35 + 3 and seen[-4:] == edit   # the edited ones last, in the order they were edited


def test_page_number_paging_is_why_keyset_is_the_default(fcubs_sim: CorebankSoapSimulator) -> None:
    """The hazard keyset paging removes: an edit behind the reader shifts the list, and the record at the next
    page's edge is never read (the cursor would then pass it)."""
    fcubs_sim.store.reseed(35)
    everyone = {fcubs_sim.store.custno(i) for i in range(35)}
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, page_size=10, operations={
            "list": {"paging": {"page_size": 10, "mode": "page_number"}}})) as adapter:
        seen = _read_while_editing(adapter, fcubs_sim, [fcubs_sim.store.custno(0)])
    assert everyone - set(seen) == {fcubs_sim.store.custno(10)}


def test_keyset_paging_refuses_a_list_out_of_modification_order(fcubs_sim: CorebankSoapSimulator) -> None:
    fcubs_sim.store.reseed(20)
    real = fcubs_sim.store.page_by_number
    fcubs_sim.store.page_by_number = lambda *a: (list(reversed(real(*a)[0])), real(*a)[1])  # type: ignore[method-assign]
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, page_size=10)) as adapter, \
            pytest.raises(BadResponseError, match="not in modification order"):
        list(adapter.extract("Customer"))


@pytest.mark.parametrize("override", [
    {"header": {"values": {"UBSCOMP": "FCUBS", "USERID": "X", "SERVICE": "FCUBSCustomerService"}}},  # no SOURCE
    {"operations": {"get": {"id": "FCUBS_BODY/Customer-XX/CUSTNO"}}},
])
def test_requests_that_do_not_fit_the_wsdl_are_configuration_errors(fcubs_sim: CorebankSoapSimulator,
                                                                    override: dict) -> None:
    before = sum(v for k, v in fcubs_sim.requests_seen.items() if k.startswith("POST"))
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, **override)) as adapter:
        with pytest.raises(ConfigurationError):
            adapter.get("Customer", "000000001")
        assert adapter.stats.retries == 0
    assert sum(v for k, v in fcubs_sim.requests_seen.items() if k.startswith("POST")) == before


# --------------------------------------------------------------------------------------------- paths
def test_paths_are_the_one_path_language_and_the_legacy_slash_form_is_rewritten() -> None:
    """A SOAP system's paths are the mappings' own language; an earlier configuration's '/'-separated paths are
    rewritten when it is read (numeric segments become indexes, names with dots are quoted)."""
    from crmbridge.adapters.corebank_soap.client import get_path, soap_path

    assert soap_path("FCUBS_BODY/Customer-IO/CUSTNO") == "FCUBS_BODY.Customer-IO.CUSTNO"
    assert soap_path("Status/messages/0") == "Status.messages[0]"
    assert soap_path("Status/CURR.NO") == 'Status.["CURR.NO"]'
    assert soap_path("UDFDETAILS[FLDNAM=RISK].FLDVAL") == "UDFDETAILS[FLDNAM=RISK].FLDVAL"
    cfg = CorebankSoapConfig.model_validate({
        "adapter": "corebank_soap",
        "status": {"path": "FCUBS_HEADER/MSGSTAT"},
        "operations": {"list": {"static": {"FCUBS_BODY/Customer-Changes-IO/BRANCH": "000"}},
                       "modify": {"writable": ["Custpersonal/MOBNUM"]}},
    })
    assert cfg.status.path == "FCUBS_HEADER.MSGSTAT"
    assert cfg.operations.list.static == {"FCUBS_BODY.Customer-Changes-IO.BRANCH": "000"}
    assert cfg.operations.modify is not None and cfg.operations.modify.writable == ["Custpersonal.MOBNUM"]
    reply = {"g": [{"m": "first"}, {"m": "second"}], "u": [{"k": "A", "v": 1}, {"k": "B", "v": 2}]}
    assert get_path(reply, "g.m") == "first"            # a name through a list: its first entry (T24 groups)
    assert get_path(reply, "g[1].m") == "second" and get_path(reply, "u[k=B].v") == 2
    with pytest.raises(PydanticValidationError, match="records"):
        CorebankSoapConfig.model_validate({"adapter": "corebank_soap", "operations": {"list": {"records": "a..b"}}})
