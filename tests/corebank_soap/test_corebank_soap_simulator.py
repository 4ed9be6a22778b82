"""The FLEXCUBE-style simulator itself: WSDL serving, SOAP Faults for malformed and unsafe requests, required
WS-Security, deterministic synthetic records (valid identifiers, configurable defects), lazy 100k+ stores, CLI."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import phonenumbers
import pytest
import requests
import zeep
from lxml import etree

from crmbridge.adapters.corebank_soap.simulator import (
    FCUBS_NS,
    SAFE_PARSER,
    SOAP_NS,
    WSSE_NS,
    WSU_NS,
    CorebankSoapSimulator,
    CustomerStore,
    fcubs_record,
)
from crmbridge.adapters.simulator import Knobs
from crmbridge.canonical.identifiers import is_valid_identifier

REPO = Path(__file__).resolve().parents[2]


def _envelope(op: str, inner: str, security: str | None) -> bytes:
    header = f"<s:Header>{security}</s:Header>" if security is not None else ""
    return (f'<s:Envelope xmlns:s="{SOAP_NS}" xmlns:f="{FCUBS_NS}">{header}<s:Body><f:{op}>'
            f"<f:FCUBS_HEADER><f:SOURCE>T</f:SOURCE><f:UBSCOMP>FCUBS</f:UBSCOMP><f:USERID>U</f:USERID>"
            f"<f:SERVICE>FCUBSCustomerService</f:SERVICE><f:OPERATION>QueryCustomer</f:OPERATION></f:FCUBS_HEADER>"
            f"<f:FCUBS_BODY>{inner}</f:FCUBS_BODY></f:{op}></s:Body></s:Envelope>").encode()


def _text_token(user: str = "CRMBRIDGE", password: str = "sim-password") -> str:
    return (f'<wsse:Security xmlns:wsse="{WSSE_NS}"><wsse:UsernameToken><wsse:Username>{user}</wsse:Username>'
            f"<wsse:Password>{password}</wsse:Password></wsse:UsernameToken></wsse:Security>")


def _digest_token(password: str, created: str | None = None) -> str:
    nonce = os.urandom(16)
    created = created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()
    return (f'<wsse:Security xmlns:wsse="{WSSE_NS}" xmlns:wsu="{WSU_NS}"><wsse:UsernameToken>'
            f"<wsse:Username>CRMBRIDGE</wsse:Username><wsse:Password Type=\"http://docs.oasis-open.org/wss/2004/01/"
            f'oasis-200401-wss-username-token-profile-1.0#PasswordDigest">{digest}</wsse:Password>'
            f"<wsse:Nonce>{base64.b64encode(nonce).decode()}</wsse:Nonce><wsu:Created>{created}</wsu:Created>"
            f"</wsse:UsernameToken></wsse:Security>")


def _post(sim: CorebankSoapSimulator, body: bytes) -> tuple[int, etree._Element]:
    r = requests.post(sim.endpoint, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=5)
    return r.status_code, etree.fromstring(r.content, SAFE_PARSER)


def _fault_code(doc: etree._Element) -> str | None:
    return doc.findtext(f"{{{SOAP_NS}}}Body/{{{SOAP_NS}}}Fault/faultcode")


_QUERY = "<f:Customer-IO><f:CUSTNO>000000001</f:CUSTNO></f:Customer-IO>"


def test_wsdl_is_served_with_the_simulators_own_address(fcubs_sim: CorebankSoapSimulator) -> None:
    r = requests.get(fcubs_sim.wsdl_url, timeout=5)
    assert r.status_code == 200 and f'location="{fcubs_sim.endpoint}"' in r.text
    client = zeep.Client(fcubs_sim.wsdl_url)
    assert client.service._binding_options["address"] == fcubs_sim.endpoint
    assert any(fcubs_sim.wsdl_url in line for line in fcubs_sim.banner())


def test_plain_and_digest_tokens_are_accepted(fcubs_sim: CorebankSoapSimulator) -> None:
    for token in (_text_token(), _digest_token("sim-password")):
        status, doc = _post(fcubs_sim, _envelope("QUERYCUSTOMER_IOFS_REQ", _QUERY, token))
        assert status == 200, etree.tostring(doc)
        assert doc.findtext(f".//{{{FCUBS_NS}}}MSGSTAT") == "SUCCESS"
        assert doc.findtext(f".//{{{FCUBS_NS}}}CUSTNO") == "000000001"


@pytest.mark.parametrize(("token", "code"), [
    (None, "wsse:InvalidSecurity"),
    (_text_token(password="wrong"), "wsse:FailedAuthentication"),
    (_text_token(user="SOMEONE"), "wsse:FailedAuthentication"),
    (_digest_token("wrong"), "wsse:FailedAuthentication"),
    (_digest_token("sim-password", created="2020-01-01T00:00:00Z"), "wsse:MessageExpired"),
])
def test_security_failures_are_soap_faults(fcubs_sim: CorebankSoapSimulator, token: str | None, code: str) -> None:
    status, doc = _post(fcubs_sim, _envelope("QUERYCUSTOMER_IOFS_REQ", _QUERY, token))
    assert status == 500 and _fault_code(doc) == code


@pytest.mark.parametrize("body", [
    b"this is not xml",
    b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Body/></s:Envelope>",
    b"<Envelope><Body/></Envelope>",
    _envelope("NO_SUCH_OPERATION_REQ", _QUERY, _text_token()),
    _envelope("QUERYCUSTOMER_IOFS_REQ", "", _text_token()),
])
def test_malformed_requests_get_real_soap_faults(fcubs_sim: CorebankSoapSimulator, body: bytes) -> None:
    status, doc = _post(fcubs_sim, body)
    assert status == 500
    assert (_fault_code(doc) or "").split(":")[-1] in ("Client", "VersionMismatch")
    assert doc.findtext(f"{{{SOAP_NS}}}Body/{{{SOAP_NS}}}Fault/faultstring")


def test_xxe_request_gets_a_fault_and_no_file_content(tmp_path: Path, fcubs_sim: CorebankSoapSimulator) -> None:
    secret = tmp_path / "passwd"
    secret.write_text("ROOT-SECRET-MARKER", encoding="utf-8")
    body = (f'<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "file://{secret}">]>'.encode()
            + _envelope("QUERYCUSTOMER_IOFS_REQ",
                        "<f:Customer-IO><f:CUSTNO>&xxe;</f:CUSTNO></f:Customer-IO>", _text_token()))
    r = requests.post(fcubs_sim.endpoint, data=body, timeout=5)
    assert r.status_code == 500 and b"ROOT-SECRET-MARKER" not in r.content
    assert _fault_code(etree.fromstring(r.content, SAFE_PARSER)) == "soapenv:Client"


def test_business_failures_are_http_200_msgstat_failure(fcubs_sim: CorebankSoapSimulator) -> None:
    status, doc = _post(fcubs_sim, _envelope(
        "QUERYCUSTOMER_IOFS_REQ", "<f:Customer-IO><f:CUSTNO>000009999</f:CUSTNO></f:Customer-IO>", _text_token()))
    assert status == 200
    assert doc.findtext(f".//{{{FCUBS_NS}}}MSGSTAT") == "FAILURE"
    assert doc.findtext(f".//{{{FCUBS_NS}}}ECODE") == "ST-CUS-001"


# --------------------------------------------------------------------------------------------- records
def test_records_are_deterministic_and_seed_dependent() -> None:
    a, b, c = CustomerStore(20, seed=5), CustomerStore(20, seed=5), CustomerStore(20, seed=6)
    assert [a.record(i) for i in range(20)] == [b.record(i) for i in range(20)]
    assert [a.record(i)["name"] for i in range(20)] != [c.record(i)["name"] for i in range(20)]


def test_clean_records_carry_valid_identifiers_and_mobiles() -> None:
    store = CustomerStore(200, seed=11)
    kinds = set()
    for i in range(200):
        r = store.record(i)
        kinds.add(r["ctype"])
        assert r["bad"] is None
        scheme = {"RIC": "CN_RIC", "USCC": "CN_USCC"}[r["id_type"]]
        assert is_valid_identifier(scheme, r["id_number"]), r["custno"]
        assert phonenumbers.is_valid_number(phonenumbers.parse(r["mobile"], "CN")), r["custno"]
        assert r["name"] and r["province"] and r["segment"] and r["kyc_risk"]
        full = fcubs_record(r)
        assert full["MODNO"] == 1 and full["RECORD_STAT"] == "O"
        assert ("Custpersonal" in full) == (r["ctype"] == "I")
    assert kinds == {"I", "C"}


def test_bad_fraction_produces_realistic_defects() -> None:
    store = CustomerStore(300, seed=2, bad_fraction=0.2)
    bad = [store.record(i) for i in range(300) if store.record(i)["bad"]]
    assert 40 <= len(bad) <= 80
    assert {r["bad"] for r in bad} >= {"bad_ric_checksum", "malformed_mobile", "missing_name", "legacy15_ric",
                                       "fullwidth_ric"}
    legacy = next(r for r in bad if r["bad"] == "legacy15_ric")
    assert len(legacy["id_number"]) == 15
    assert any(ord(ch) > 0xFF00 for r in bad if r["bad"] == "fullwidth_ric" for ch in r["id_number"])


def test_large_stores_are_lazy() -> None:
    started = time.monotonic()
    store = CustomerStore(150_000, seed=1)
    page, total = store.page_by_number(None, 1200, 100)
    assert total == 150_000 and len(page) == 100 and page[0]["custno"] == f"{119_901:09d}"
    since = page[0]["stamp"]
    later, remaining = store.page_by_number(since, 1, 50)
    assert remaining == 150_000 - 119_900 and later[0]["custno"] == page[0]["custno"]
    assert time.monotonic() - started < 5


def test_modification_bumps_modno_and_moves_the_record_to_the_end() -> None:
    store = CustomerStore(10, seed=1)
    first = store.record(0)
    rec = store.modify(first["custno"], 1, {"email": "new@example.com"}, "U")
    assert rec["modno"] == 2 and rec["stamp"] > store.record(9)["stamp"]
    page, _ = store.page_by_number(None, 1, 20)
    assert page[-1]["custno"] == first["custno"] and len(page) == 10


# --------------------------------------------------------------------------------------------- CLI
def test_cli_prints_the_wsdl_url() -> None:
    # the simulate command itself (crmbridge.cli.simulate_cmd), in its own process, stopped with SIGTERM
    code = ("from crmbridge.cli.simulate_cmd import simulate; "
            "simulate('corebank-soap', port=0, host='127.0.0.1', seed=3, records=5)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line:
                break
            lines.append(line)
            if "?wsdl" in line:
                break
        wsdl = next((ln.split()[-1] for ln in lines if "?wsdl" in ln), None)
        assert wsdl, "".join(lines) + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        r = requests.get(wsdl, timeout=5)
        assert r.status_code == 200 and "FCUBSCustomerService" in r.text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_simulator_knobs_reach_the_store() -> None:
    with CorebankSoapSimulator(Knobs(seed=9, records=42, bad_fraction=0.5, extra={"password": "p2"})) as sim:
        assert sim.store.n == 42 and sim.store.seed == 9 and sim.password == "p2"
        assert sum(1 for i in range(42) if sim.store.record(i)["bad"]) == 21


# --------------------------------------------------------------------------------------------- modes
def test_modes_come_from_extra_knobs_and_change_the_change_list() -> None:
    """``crmbridge simulate corebank-soap --extra since_boundary=exclusive --extra same_second=5 ...``"""
    sim = CorebankSoapSimulator(Knobs(records=20, extra={"since_boundary": "exclusive", "same_second": 5,
                                                         "max_page_size": 50, "edits_during_read": 2,
                                                         "gateway": "xhtml503", "gateway_every": 4}))
    store = sim.store
    stamps = [store.record(i)["stamp"] for i in range(20)]
    shared = max(set(stamps), key=stamps.count)
    assert stamps.count(shared) == 5 and stamps == sorted(stamps)
    after, total = store.page_by_number(shared, 1, 100)
    assert total == 20 - stamps.index(shared) - 5 and all(r["stamp"] > shared for r in after)   # exclusive
    store.since_boundary = "inclusive"
    _, total = store.page_by_number(shared, 1, 100)
    assert total == 20 - stamps.index(shared)
    _, pinned = store.page_by_number(None, 1, 100, until=shared)
    assert pinned == stamps.index(shared) + 5
    assert (sim.max_page_size, sim.edits_during_read, sim.gateway, sim.gateway_every) == (50, 2, "xhtml503", 4)
    store.since_boundary = "exclusive"
    with sim:
        assert "since_boundary=exclusive" in sim.banner()[0] and "gateway=xhtml503" in sim.banner()[0]
    with pytest.raises(ValueError, match="gateway must be one of"):
        CorebankSoapSimulator(Knobs(records=1), gateway="teapot")
