"""A gateway in front of the core-banking REST service answering instead of it (issue 13): 502/503/504 with an
HTML, empty or plain-text body are transient (retried, honouring Retry-After); an HTTP 200 whose body is cut-off
JSON, empty or an HTML page is a BadResponseError saying what came back; on a list, a get and a write alike. No
gateway reply may crash a run or read as success."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fault_helpers import call_error

from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.adapters.corebank_rest import CorebankRestAdapter, CorebankRestConfig
from crmbridge.adapters.corebank_rest.simulator import FINERACT_PREFIX, CorebankRestSimulator
from crmbridge.adapters.simulator import Knobs
from crmbridge.core.errors import BadResponseError, TransientServerError

RECORDS = 23
TRANSIENT = ["502_html", "503_empty", "504_text"]
BAD_200 = {"200_truncated": "JSON cut off or malformed", "200_empty": "empty body",
           "200_html": "an HTML page"}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_REST_PASSWORD", "password")


@pytest.fixture
def sim() -> Iterator[CorebankRestSimulator]:
    with CorebankRestSimulator(Knobs(seed=9, records=RECORDS)) as s:
        yield s


def adapter(sim: CorebankRestSimulator, waits: list[float] | None = None, attempts: int = 4) -> CorebankRestAdapter:
    cfg = CorebankRestConfig.model_validate({
        "adapter": "corebank_rest", "base_url": f"{sim.url}/fineract-provider/api",
        "auth": {"type": "basic", "username": "mifos", "password": "env:CB_REST_PASSWORD"},
        "retry": {"max_attempts": attempts, "initial_wait": 0.001, "max_wait": 10, "jitter": 0.0},
        "resources": {"Client": {
            "list_path": "/v1/clients", "item_path": "/v1/clients/{id}", "write_path": "/v1/clients/{id}",
            "pagination": {"style": "offset", "page_size": 10, "total_path": "totalFilteredRecords"},
            "paths": {"list": "pageItems", "version": "version", "changes": "changes"},
            "version_in": "body", "writable": ["mobileNo", "emailAddress"]}}})
    return CorebankRestAdapter(cfg, sleep=(waits.append if waits is not None else lambda _s: None))


def do(op: str, a: CorebankRestAdapter, sim: CorebankRestSimulator) -> Any:
    if op == "list":
        return [r.external_id for p in a.extract("Client") for r in p.records]
    if op == "get":
        return a.get("Client", "7")
    # a write whose call failed comes back as failed records: call_error raises the call's error they carry
    return call_error(a.write("Client", [WriteItem("P-7", {"mobileNo": "13900000007"}, external_id="7",
                                                   expected_version=str(sim.record("7")["version"]))]))


def check_ok(op: str, out: Any, sim: CorebankRestSimulator) -> None:
    if op == "list":
        assert sorted(out, key=int) == sorted(sim.ids(), key=int)
    elif op == "get":
        assert out is not None and out.external_id == "7"
    else:
        assert out[0].status is WriteStatus.UPDATED and sim.record("7")["mobileNo"] == "13900000007"  # type: ignore[index]


@pytest.mark.parametrize("op", ["list", "get", "write"])
@pytest.mark.parametrize("kind", TRANSIENT)
def test_gateway_errors_are_retried(sim: CorebankRestSimulator, op: str, kind: str) -> None:
    waits: list[float] = []
    a = adapter(sim, waits)
    sim.inject_gateway(kind, times=2)
    check_ok(op, do(op, a, sim), sim)
    assert a.stats.retries == 2 and a.stats.by_status[kind[:3]] == 2
    if kind == "503_empty":
        assert waits == [2.0, 2.0], "Retry-After honoured"


@pytest.mark.parametrize("op", ["list", "get", "write"])
@pytest.mark.parametrize("kind", TRANSIENT)
def test_a_gateway_that_stays_down_is_a_transient_error_describing_it(sim: CorebankRestSimulator, op: str,
                                                                      kind: str) -> None:
    a = adapter(sim, attempts=3)
    sim.inject_gateway(kind, times=3)
    with pytest.raises(TransientServerError) as info:
        do(op, a, sim)
    msg = str(info.value)
    assert f"HTTP {kind[:3]} with" in msg and "gateway or proxy" in msg and "<html" not in msg.lower()
    assert info.value.status == int(kind[:3])


@pytest.mark.parametrize("op", ["list", "get", "write"])
@pytest.mark.parametrize("kind", list(BAD_200))
def test_a_200_that_is_not_the_service_is_a_bad_response(sim: CorebankRestSimulator, op: str, kind: str) -> None:
    a = adapter(sim)
    before = sim.record("7")
    sim.inject_gateway(kind)
    with pytest.raises(BadResponseError) as info:
        do(op, a, sim)
    msg = str(info.value)
    assert BAD_200[kind] in msg or (op == "write" and "does not hold what was written" in msg)
    assert "/fineract-provider/api/v1/clients" in msg and a.stats.retries == 0
    assert sim.record("7") == before, "the gateway passed nothing on"


def test_an_empty_200_to_a_write_the_core_applied_is_a_success(sim: CorebankRestSimulator) -> None:
    """Some services answer a PUT with an empty 200: then the core holding what was written decides."""
    a = adapter(sim)
    a.write("Client", [WriteItem("P-7", {"mobileNo": "13900000007"}, external_id="7")])
    sim.inject_gateway("200_empty")  # the same values again: the core holds them
    out = a.write("Client", [WriteItem("P-7", {"mobileNo": "13900000007"}, external_id="7")])
    assert out[0].status in (WriteStatus.UPDATED, WriteStatus.UNCHANGED)


def test_cli_simulator_serves_gateway_replies() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "crmbridge", "simulate", "corebank-rest", "--records", "3",
                             "--extra", "gateway=502_html", "--extra", "gateway_times=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        url = line.split("serving ")[1].strip()
        hdr = {"Fineract-Platform-TenantId": "default"}
        first = requests.get(url, auth=("mifos", "password"), headers=hdr, timeout=5)
        second = requests.get(url, auth=("mifos", "password"), headers=hdr, timeout=5)
        assert first.status_code == 502 and b"nginx" in first.content
        assert second.status_code == 200 and len(second.json()["pageItems"]) == 3
        assert url.endswith(f"{FINERACT_PREFIX}/clients")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
