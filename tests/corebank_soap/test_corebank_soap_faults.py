"""Fault handling of the core-banking SOAP adapter against the simulators: SOAP Faults, business errors,
timeouts, resets, malformed and unsafe XML, encodings, credentials. Every failure must arrive as a crmbridge error
(nothing from zeep, lxml or requests), classified by the one table, without personal data or file contents."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import zeep.exceptions
from corebank_soap_support import fcubs_config

from crmbridge.adapters.corebank_soap import CorebankSoapAdapter
from crmbridge.adapters.corebank_soap.errors import ERROR_TABLE, ErrorKind, scrub
from crmbridge.adapters.corebank_soap.simulator import FCUBS_NS, CorebankSoapSimulator
from crmbridge.adapters.simulator import Fault, Knobs
from crmbridge.core.errors import (
    AuthenticationError,
    BadResponseError,
    CrmBridgeError,
    PermissionDeniedError,
    RequestError,
    ThrottledError,
    TransientServerError,
)
from crmbridge.core.retry import RetryPolicy

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def _fcubs_failure(code: str, text: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP}"><s:Body>'
            f'<f:QUERYCUSTOMER_IOFS_RES xmlns:f="{FCUBS_NS}"><f:FCUBS_HEADER><f:SOURCE>CRMBRIDGE</f:SOURCE>'
            f"<f:UBSCOMP>FCUBS</f:UBSCOMP><f:USERID>CRMBRIDGE</f:USERID><f:SERVICE>FCUBSCustomerService</f:SERVICE>"
            f"<f:OPERATION>QueryCustomer</f:OPERATION><f:MSGSTAT>FAILURE</f:MSGSTAT></f:FCUBS_HEADER>"
            f"<f:FCUBS_BODY><f:FCUBS_ERROR_RESP><f:ERROR><f:ECODE>{code}</f:ECODE><f:EDESC>{text}</f:EDESC>"
            f"</f:ERROR></f:FCUBS_ERROR_RESP></f:FCUBS_BODY></f:QUERYCUSTOMER_IOFS_RES></s:Body></s:Envelope>")


def _fault(code: str, text: str) -> str:
    return (f'<s:Envelope xmlns:s="{SOAP}"><s:Body><s:Fault><faultcode>s:{code}</faultcode>'
            f"<faultstring>{text}</faultstring></s:Fault></s:Body></s:Envelope>")


def _chain(exc: BaseException) -> str:
    """Every message in the exception chain, as an operator or a log would see them."""
    out = []
    e: BaseException | None = exc
    while e is not None:
        out.append(f"{type(e).__name__}: {e}")
        e = e.__cause__ or e.__context__
    return "\n".join(out)


def _warm(adapter: CorebankSoapAdapter) -> None:
    assert adapter.get("Customer", "000000001") is not None


# --------------------------------------------------------------------------------------------- SOAP faults
def test_client_fault_is_a_request_error_and_not_retried(fcubs_sim: CorebankSoapSimulator,
                                                         fcubs: CorebankSoapAdapter) -> None:
    _warm(fcubs)
    fcubs_sim.queue_raw(_fault("Client", "Unmarshalling error"), status=500)
    with pytest.raises(RequestError) as ei:
        fcubs.get("Customer", "000000002")
    assert fcubs.stats.retries == 0
    assert ei.value.status == 500 and ei.value.vendor_code == "Client"


def test_server_fault_is_retried_then_succeeds(fcubs_sim: CorebankSoapSimulator,
                                               fcubs: CorebankSoapAdapter) -> None:
    _warm(fcubs)
    fcubs_sim.inject(Fault.SERVER_ERROR, times=2)
    assert fcubs.get("Customer", "000000002") is not None
    assert fcubs.stats.retries == 2 and fcubs.stats.by_status["500"] == 2


def test_busy_gateway_is_throttled_with_retry_after(fcubs_sim: CorebankSoapSimulator,
                                                    fcubs: CorebankSoapAdapter) -> None:
    _warm(fcubs)
    fcubs_sim.inject(Fault.THROTTLE, times=10)
    with pytest.raises(ThrottledError) as ei:
        fcubs.get("Customer", "000000002")
    assert ei.value.retry_after == 1.0 and ei.value.status == 503
    assert fcubs.stats.throttled == fcubs.config.retry.max_attempts - 1


# --------------------------------------------------------------------------------------------- business errors
@pytest.mark.parametrize(("code", "error"), [
    ("GW-AUTH-01", AuthenticationError),
    ("GW-SEC-02", PermissionDeniedError),
    ("ST-REQ-001", RequestError),
])
def test_msgstat_failure_is_classified_by_code(fcubs_sim: CorebankSoapSimulator, fcubs: CorebankSoapAdapter,
                                               code: str, error: type[Exception]) -> None:
    _warm(fcubs)
    fcubs_sim.queue_raw(_fcubs_failure(code, "refused"))
    with pytest.raises(error) as ei:
        fcubs.get("Customer", "000000002")
    assert getattr(ei.value, "vendor_code", code) == code
    assert fcubs.stats.retries == 0


def test_msgstat_failure_not_found_is_none(fcubs: CorebankSoapAdapter) -> None:
    assert fcubs.get("Customer", "000000031") is None
    assert fcubs.get("Customer", "not-a-cif") is None


def test_busy_business_code_is_retried(fcubs_sim: CorebankSoapSimulator, fcubs: CorebankSoapAdapter) -> None:
    _warm(fcubs)
    fcubs_sim.queue_raw(_fcubs_failure("GW-BUSY-01", "too many sessions"), times=2)
    assert fcubs.get("Customer", "000000002") is not None
    assert fcubs.stats.throttled == 2


def test_configured_business_codes_come_first(fcubs_sim: CorebankSoapSimulator) -> None:
    """A bank's own code table (configuration) overrides the defaults, e.g. a code the bank uses for 'busy'."""
    cfg = fcubs_config(fcubs_sim, business_errors=[{"code": "ST-REQ-001", "kind": "transient"}])
    with CorebankSoapAdapter(cfg) as adapter:
        _warm(adapter)  # type: ignore[arg-type]
        fcubs_sim.queue_raw(_fcubs_failure("ST-REQ-001", "try later"))
        assert adapter.get("Customer", "000000002") is not None
        assert adapter.stats.retries == 1


def test_business_error_text_is_scrubbed_of_personal_data(fcubs_sim: CorebankSoapSimulator,
                                                         fcubs: CorebankSoapAdapter) -> None:
    _warm(fcubs)
    fcubs_sim.queue_raw(_fcubs_failure("ST-REQ-001", "ID 11010519491231002X mobile 13812345678 a.b@x.cn bad"))
    with pytest.raises(RequestError) as ei:
        fcubs.get("Customer", "000000002")
    text = str(ei.value)
    assert "11010519491231002X" not in text and "13812345678" not in text and "a.b@x.cn" not in text
    assert "bad" in text


# --------------------------------------------------------------------------------------------- transport
def test_timeout_is_retried_then_persistent_timeout_raises(fcubs_sim: CorebankSoapSimulator) -> None:
    cfg = fcubs_config(fcubs_sim, timeout=0.3)
    with CorebankSoapAdapter(cfg) as adapter:
        _warm(adapter)  # type: ignore[arg-type]
        fcubs_sim.knobs.timeout_delay = 0.8
        fcubs_sim.inject(Fault.TIMEOUT_AFTER_APPLY, times=1)
        assert adapter.get("Customer", "000000002") is not None
        assert adapter.stats.by_status["timeout"] == 1 and adapter.stats.retries == 1
        fcubs_sim.knobs.timeout_delay = 0.5
        fcubs_sim.inject(Fault.TIMEOUT_AFTER_APPLY, times=cfg.retry.max_attempts)
        with pytest.raises(TransientServerError) as ei:
            adapter.get("Customer", "000000002")
        assert "did not answer in time" in str(ei.value)


def test_connection_resets_are_retried_then_raise(fcubs_sim: CorebankSoapSimulator,
                                                  fcubs: CorebankSoapAdapter) -> None:
    _warm(fcubs)
    fcubs_sim.inject(Fault.DROP, times=fcubs.config.retry.max_attempts)
    with pytest.raises(TransientServerError) as ei:
        fcubs.get("Customer", "000000002")
    assert isinstance(ei.value.__cause__, requests.ConnectionError)
    assert fcubs.stats.by_status["connection"] == fcubs.config.retry.max_attempts


@pytest.mark.parametrize(("status", "error"), [(401, AuthenticationError), (403, PermissionDeniedError),
                                               (404, RequestError)])
def test_gateway_status_without_envelope(fcubs_sim: CorebankSoapSimulator, fcubs: CorebankSoapAdapter,
                                         status: int, error: type[Exception]) -> None:
    _warm(fcubs)
    fcubs_sim.queue_raw(b"", status=status, content_type="text/plain")
    with pytest.raises(error):
        fcubs.get("Customer", "000000002")
    assert fcubs.stats.retries == 0


# --------------------------------------------------------------------------------------------- malformed XML
@pytest.mark.parametrize("body", [
    b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Body><unclosed>",
    b"<html><body>Service Unavailable</body></html>",
    b'{"error": "not xml"}',
    # well-formed, but not what the WSDL says the reply is
    (f'<s:Envelope xmlns:s="{SOAP}"><s:Body><f:QUERYCUSTOMER_IOFS_RES xmlns:f="{FCUBS_NS}">'
     f"<f:SURPRISE>1</f:SURPRISE></f:QUERYCUSTOMER_IOFS_RES></s:Body></s:Envelope>").encode(),
])
def test_malformed_replies_are_bad_responses(fcubs_sim: CorebankSoapSimulator, fcubs: CorebankSoapAdapter,
                                             body: bytes) -> None:
    _warm(fcubs)
    fcubs_sim.queue_raw(body)
    with pytest.raises(BadResponseError):
        fcubs.get("Customer", "000000002")
    assert fcubs.stats.retries == 0


def test_xxe_in_a_reply_is_refused_and_leaks_nothing(tmp_path: Path, fcubs_sim: CorebankSoapSimulator,
                                                     fcubs: CorebankSoapAdapter) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER-4711", encoding="utf-8")
    body = _fcubs_failure("ST-REQ-001", "&xxe;").replace(
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "file://{secret}">]>')
    _warm(fcubs)
    fcubs_sim.queue_raw(body)
    with pytest.raises(BadResponseError) as ei:
        fcubs.get("Customer", "000000002")
    assert "refused unsafe XML" in str(ei.value)
    assert "TOP-SECRET-MARKER" not in _chain(ei.value)


def test_entity_expansion_bomb_is_refused(fcubs_sim: CorebankSoapSimulator, fcubs: CorebankSoapAdapter) -> None:
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            f'<s:Envelope xmlns:s="{SOAP}"><s:Body>&lol2;</s:Body></s:Envelope>')
    _warm(fcubs)
    fcubs_sim.queue_raw(bomb)
    with pytest.raises(BadResponseError, match="refused unsafe XML"):
        fcubs.get("Customer", "000000002")


# --------------------------------------------------------------------------------------------- encodings
def test_gbk_reply_declared_as_gbk_parses(fcubs_sim: CorebankSoapSimulator, fcubs: CorebankSoapAdapter) -> None:
    expected = fcubs_sim.store.get("000000004")
    assert expected is not None
    fcubs_sim.response_encoding = "GBK"
    rec = fcubs.get("Customer", "000000004")
    assert rec is not None and rec.data["NAME"] == expected["name"] and rec.data["ADDRLN1"] == expected["province"]
    pages = list(fcubs.extract("Customer"))
    assert sum(len(p.records) for p in pages) == 30


def test_gbk_reply_declared_as_utf8_is_a_bad_response(fcubs_sim: CorebankSoapSimulator,
                                                      fcubs: CorebankSoapAdapter) -> None:
    _warm(fcubs)
    fcubs_sim.response_encoding = "GBK"
    fcubs_sim.declared_encoding = "UTF-8"
    with pytest.raises(BadResponseError):
        fcubs.get("Customer", "000000004")


# --------------------------------------------------------------------------------------------- credentials
@pytest.mark.parametrize("digest", [True, False])
def test_wrong_password_is_an_authentication_error(fcubs_sim: CorebankSoapSimulator, digest: bool) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, bad_credentials=True, wsse_digest=digest)) as adapter:
        with pytest.raises(AuthenticationError) as ei:
            adapter.get("Customer", "000000001")
        assert adapter.stats.retries == 0
        assert "not-the-password" not in _chain(ei.value)


@pytest.mark.parametrize("digest", [True, False])
def test_right_password_both_token_forms(fcubs_sim: CorebankSoapSimulator, digest: bool) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, wsse_digest=digest)) as adapter:
        assert adapter.get("Customer", "000000001") is not None


def test_missing_token_is_an_authentication_error(fcubs_sim: CorebankSoapSimulator) -> None:
    with CorebankSoapAdapter(fcubs_config(fcubs_sim, wsse=False)) as adapter:
        with pytest.raises(AuthenticationError, match="WS-Security"):
            adapter.get("Customer", "000000001")


def test_literal_password_is_refused_by_config(fcubs_sim: CorebankSoapSimulator) -> None:
    with pytest.raises(Exception, match="secret reference"):
        fcubs_config(fcubs_sim, password="sim-password")


# --------------------------------------------------------------------------------------------- boundary
def test_nothing_foreign_escapes(fcubs_sim: CorebankSoapSimulator, fcubs: CorebankSoapAdapter) -> None:
    """Every injected failure surfaces as a crmbridge error, never a zeep/lxml/requests one."""
    _warm(fcubs)
    for fault in (Fault.GARBAGE, Fault.SERVER_ERROR, Fault.DROP, Fault.TRUNCATED):
        fcubs_sim.inject(fault, times=fcubs.config.retry.max_attempts)
        with pytest.raises(CrmBridgeError) as ei:
            fcubs.get("Customer", "000000002")
        assert not isinstance(ei.value, zeep.exceptions.Error | requests.RequestException)
        fcubs_sim.clear_faults()


def test_the_table_covers_every_kind_and_ends_with_catch_alls() -> None:
    kinds = {r.kind for r in ERROR_TABLE}
    assert kinds == set(ErrorKind) - {ErrorKind.QUOTA}   # a core has no daily quota
    assert [r.code for r in ERROR_TABLE if r.channel == "fault"][-1] == r".*"
    assert [r.code for r in ERROR_TABLE if r.channel == "business"][-1] == r".*"
    assert scrub("call 13812345678") == "call 13*******78"


def test_random_errors_and_drops_are_absorbed_by_retries() -> None:
    with CorebankSoapSimulator(Knobs(seed=5, records=60, error_rate=0.25, drop_rate=0.1)) as sim:
        cfg = fcubs_config(sim, retry=RetryPolicy(max_attempts=10, initial_wait=0.001, max_wait=0.01, jitter=0))
        with CorebankSoapAdapter(cfg) as adapter:
            records = [r for p in adapter.extract("Customer") for r in p.records]
            assert len({r.external_id for r in records}) == len(records) == 60
            assert adapter.stats.retries > 0
