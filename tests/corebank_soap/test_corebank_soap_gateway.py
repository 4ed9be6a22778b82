"""Replies that are not the SOAP service's own: a gateway or proxy in front of it (issue 13, "Truthful runs").

An nginx 503 page in front of an independent FLEXCUBE-shaped service crashed a run with ``internal error:
AssertionError`` ("the fault table ends with a catch-all"), on the change list and on the single-customer get the
dead-letter retries use. Every reply must be classified: a 5xx without a SOAP body is a retried
TransientServerError honouring Retry-After, 429 is a ThrottledError, an empty or truncated 200 is a
BadResponseError that says so, and a records path that matches nothing while the reply reports records is a
BadResponseError naming the path.
"""

from __future__ import annotations

import pytest
from corebank_soap_support import fcubs_config

from crmbridge.adapters.corebank_soap import CorebankSoapAdapter
from crmbridge.adapters.corebank_soap.errors import classify_business, classify_fault
from crmbridge.adapters.corebank_soap.simulator import GATEWAY_REPLIES, CorebankSoapSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.core.errors import (
    BadResponseError,
    RecordRejectedError,
    ThrottledError,
    TransientServerError,
)
from crmbridge.core.retry import RetryPolicy

NO_RETRY = RetryPolicy(max_attempts=1, initial_wait=0.01, max_wait=0.05, jitter=0.0)


def _list(adapter: CorebankSoapAdapter) -> list:
    return [r for p in adapter.extract("Customer") for r in p.records]


def _get(adapter: CorebankSoapAdapter) -> object:
    return adapter.get("Customer", "000000002")


CALLS = [pytest.param(_list, id="list"), pytest.param(_get, id="get")]


def _warm(adapter: CorebankSoapAdapter) -> None:
    assert adapter.get("Customer", "000000001") is not None   # the WSDL is loaded: the next POST is the call


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("kind", ["xhtml503", "html503", "doctype503", "empty503", "text503", "empty502"])
def test_gateway_5xx_without_soap_is_transient_and_retried(fcubs_sim: CorebankSoapSimulator, call, kind: str
                                                            ) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim)) as adapter:
        _warm(adapter)
        fcubs_sim.queue_gateway(kind, times=2)
        assert call(adapter)                                     # retried past the two gateway replies
        assert adapter.stats.retries == 2 and adapter.stats.throttled == 0
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, retry=NO_RETRY)) as adapter:
        _warm(adapter)
        fcubs_sim.queue_gateway(kind)
        with pytest.raises(TransientServerError) as ei:
            call(adapter)
        status = GATEWAY_REPLIES[kind].status
        assert ei.value.status == status and f"HTTP {status}" in str(ei.value)
        if (GATEWAY_REPLIES[kind].headers or {}).get("Retry-After"):
            assert ei.value.retry_after == 1.0


@pytest.mark.parametrize("call", CALLS)
def test_gateway_429_is_throttled_with_retry_after(fcubs_sim: CorebankSoapSimulator, call) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, retry=NO_RETRY)) as adapter:
        _warm(adapter)
        fcubs_sim.queue_gateway("html429")
        with pytest.raises(ThrottledError) as ei:
            call(adapter)
        assert ei.value.status == 429 and ei.value.retry_after == 1.0
    with CorebankSoapAdapter(fcubs_config(fcubs_sim)) as adapter:
        _warm(adapter)
        fcubs_sim.queue_gateway("html429")
        assert call(adapter) and adapter.stats.throttled == 1


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(("kind", "says"), [("empty200", "empty"), ("truncated200", "truncated"),
                                             ("html200", "HTML")])
def test_broken_200_is_a_bad_response_that_says_what(fcubs_sim: CorebankSoapSimulator, call, kind: str,
                                                      says: str) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim)) as adapter:
        _warm(adapter)
        fcubs_sim.queue_gateway(kind)
        with pytest.raises(BadResponseError) as ei:
            call(adapter)
        assert says in str(ei.value) and adapter.stats.retries == 0


def test_gateway_mode_of_the_simulator_interleaves_gateway_replies() -> None:
    """``--extra gateway=xhtml503 --extra gateway_every=2``: every second POST is the gateway page; a run retries
    through them and reads everything (it crashed with AssertionError on the first one)."""
    with CorebankSoapSimulator(Knobs(seed=3, records=40, extra={"gateway": "xhtml503", "gateway_every": 2})) as sim:
        with CorebankSoapAdapter(fcubs_config(sim)) as adapter:
            assert len(_list(adapter)) == 40
            assert adapter.stats.by_status["503"] >= 2 and adapter.stats.retries >= 2


def test_unknown_business_code_names_the_code() -> None:
    c = classify_business("XX-NEW-042", "something new")
    assert "XX-NEW-042" in c.message
    c = classify_business("", "")
    assert c.kind.value == "bad_response" and c.message   # classified, never an assertion


def test_fault_without_a_code_is_classified_by_status() -> None:
    assert classify_fault(None, None, "Unknown fault occured", status=503).kind.value == "transient"
    assert classify_fault("", None, None, status=None).kind.value == "bad_response"


def test_unknown_business_code_on_get_is_a_clear_refusal(fcubs_sim: CorebankSoapSimulator) -> None:
    from test_corebank_soap_faults import _fcubs_failure

    with CorebankSoapAdapter(fcubs_config(fcubs_sim)) as adapter:
        _warm(adapter)
        fcubs_sim.queue_raw(_fcubs_failure("XX-NEW-042", "new rule"))
        with pytest.raises(RecordRejectedError) as ei:
            _get(adapter)
        assert "XX-NEW-042" in str(ei.value)


# --------------------------------------------------------------------------------------------- records path
def test_wrong_records_path_with_more_pages_is_a_bad_response(fcubs_sim: CorebankSoapSimulator) -> None:
    """The reply says more pages and a total; a misconfigured records path parsed 0 records and the run
    'succeeded' with nothing synced."""
    cfg = fcubs_config(fcubs_sim, operations={"list": {"records": "FCUBS_BODY.Customer",
                                                       "paging": {"page_size": 10}}})
    with CorebankSoapAdapter(cfg) as adapter, pytest.raises(BadResponseError) as ei:
        _list(adapter)
    msg = str(ei.value)
    assert "FCUBS_BODY.Customer" in msg and "QueryCustomersModifiedSinceIO" in msg and "more pages" in msg


def test_wrong_records_path_with_only_a_total_is_a_bad_response(fcubs_sim: CorebankSoapSimulator) -> None:
    cfg = fcubs_config(fcubs_sim, operations={"list": {"records": "FCUBS_BODY.Customer",
                                                       "paging": {"page_size": 10, "has_more": None}}})
    with CorebankSoapAdapter(cfg) as adapter, pytest.raises(BadResponseError) as ei:
        _list(adapter)
    assert "FCUBS_BODY.Customer" in str(ei.value) and "a total of 30" in str(ei.value)


def test_wrong_records_path_on_the_last_page_is_found_by_the_records_elsewhere(
        fcubs_sim: CorebankSoapSimulator) -> None:
    """No more-pages flag nor total configured: the records found at another path give the mistake away."""
    cfg = fcubs_config(fcubs_sim, operations={"list": {"records": "FCUBS_BODY.Customers",
                                                       "paging": {"page_size": 100, "has_more": None,
                                                                  "total": None}}})
    with CorebankSoapAdapter(cfg) as adapter, pytest.raises(BadResponseError) as ei:
        _list(adapter)
    assert "FCUBS_BODY.Customers" in str(ei.value) and "FCUBS_BODY.Customer-Full" in str(ei.value)


def test_an_empty_change_list_is_not_an_error(fcubs_sim: CorebankSoapSimulator) -> None:
    fcubs_sim.store.reseed(0)
    with CorebankSoapAdapter(fcubs_config(fcubs_sim)) as adapter:
        assert _list(adapter) == []


def test_wrong_get_record_path_is_a_bad_response_not_a_missing_customer(fcubs_sim: CorebankSoapSimulator) -> None:
    cfg = fcubs_config(fcubs_sim, operations={"get": {"record": "FCUBS_BODY.Customer"},
                                              "list": {"paging": {"page_size": 10}}})
    with CorebankSoapAdapter(cfg) as adapter, pytest.raises(BadResponseError) as ei:
        _get(adapter)
    assert "FCUBS_BODY.Customer" in str(ei.value)
