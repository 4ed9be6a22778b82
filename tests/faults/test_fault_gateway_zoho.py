"""Gateway replies in front of Zoho: a load balancer's HTTP 502/503/504 with an HTML, plain-text or empty body (not
Zoho's JSON) on list, get, upsert, deleted and the accounts server's token endpoint must be transient (retried,
honouring Retry-After); an empty or truncated HTTP 200 is a bad response with a message that says so. Real HTTP
against the Zoho simulator's gateway mode (``ZohoSimulator.inject_gateway``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fault_helpers import call_error

from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.adapters.simulator import Knobs
from crmbridge.adapters.zoho import ZohoAdapter, ZohoConfig
from crmbridge.adapters.zoho.auth import forget_shared_tokens
from crmbridge.adapters.zoho.simulator import ZohoSimulator
from crmbridge.core.errors import (
    AuthenticationError,
    BadResponseError,
    TransientServerError,
)
from crmbridge.core.retry import RetryPolicy

SECRET_ENV = "CRMBRIDGE_TEST_ZOHO_GW_SECRET"
REFRESH_ENV = "CRMBRIDGE_TEST_ZOHO_GW_REFRESH"
POLICY = RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=30.0, jitter=0.0)
GATEWAY = [(502, "html"), (503, "empty"), (504, "text")]


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZohoSimulator]:
    forget_shared_tokens()
    monkeypatch.setenv(SECRET_ENV, ZohoSimulator.client_secret)
    monkeypatch.setenv(REFRESH_ENV, ZohoSimulator.refresh_token)
    with ZohoSimulator(Knobs(records=12, seed=3)) as s:
        yield s  # type: ignore[misc]
    forget_shared_tokens()


class Sleeps(list[float]):
    """Records the retry policy's waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _adapter(sim: ZohoSimulator, sleeps: Sleeps, **cfg: Any) -> ZohoAdapter:
    config = ZohoConfig(adapter="zoho", accounts_url=sim.url, api_domain=sim.url, client_id=sim.client_id,
                        client_secret=f"env:{SECRET_ENV}", refresh_token=f"env:{REFRESH_ENV}", retry=POLICY,
                        timeout=5.0, **cfg)
    return ZohoAdapter(config, system="zoho_gw", sleep=sleeps)


def _warm(adapter: ZohoAdapter) -> None:
    """Token and field metadata fetched before the fault, so the fault lands on the operation itself."""
    list(adapter.extract("Contacts", fields=["Last_Name"]))


def _items(n: int) -> list[WriteItem]:
    return [WriteItem(key=f"gw-{i:03d}", payload={"Last_Name": "钱"}, key_field="Party_ID") for i in range(n)]


OPS: dict[str, tuple[str, Callable[[ZohoAdapter, ZohoSimulator], Any]]] = {
    "list": ("/crm/v8/Contacts", lambda a, s: [r for p in a.extract("Contacts", fields=["Last_Name"])
                                                  for r in p.records]),
    "get": ("/crm/v8/Contacts/", lambda a, s: a.get("Contacts", sorted(s.stores["Contacts"].records)[0])),
    # a write whose call failed comes back as failed records: call_error raises the call's error they carry
    "upsert": ("/crm/v8/Contacts/upsert", lambda a, s: call_error(a.write("Contacts", _items(3)))),
    "deleted": ("/crm/v8/Contacts/deleted", lambda a, s: [r for p in a.extract_deleted("Contacts")
                                                          for r in p.records]),
}


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize(("status", "body"), GATEWAY)
def test_gateway_reply_is_transient_and_retried(sim: ZohoSimulator, op: str, status: int, body: str) -> None:
    sleeps = Sleeps()
    adapter = _adapter(sim, sleeps)
    _warm(adapter)
    path, call = OPS[op]
    sim.inject_gateway(status, body, times=2, path=path)
    result = call(adapter, sim)
    assert adapter.stats.retries == 2 and adapter.stats.by_status[str(status)] == 2
    if op == "list":
        assert len(result) == 12
    elif op == "get":
        assert result is not None
    elif op == "upsert":
        assert [r.status for r in result] == [WriteStatus.CREATED] * 3
        assert sim.count("Contacts") == 15, "the gateway answered before Zoho: nothing applied twice"


@pytest.mark.parametrize("op", list(OPS))
def test_gateway_that_stays_down_ends_in_a_transient_error_naming_the_gateway(sim: ZohoSimulator, op: str) -> None:
    sleeps = Sleeps()
    adapter = _adapter(sim, sleeps)
    _warm(adapter)
    path, call = OPS[op]
    sim.inject_gateway(503, "html", times=POLICY.max_attempts, path=path)
    with pytest.raises(TransientServerError) as info:
        call(adapter, sim)
    err = info.value
    assert err.status == 503 and err.vendor == "zoho" and err.vendor_code is None
    assert "HTML page" in str(err) and "gateway or load balancer" in str(err)
    assert adapter.stats.retries == POLICY.max_attempts - 1


def test_retry_after_from_the_gateway_is_honoured(sim: ZohoSimulator) -> None:
    sleeps = Sleeps()
    adapter = _adapter(sim, sleeps)
    _warm(adapter)
    sim.inject_gateway(503, "html", times=1, retry_after=7, path="/crm/v8/Contacts")
    assert len([r for p in adapter.extract("Contacts", fields=["Last_Name"]) for r in p.records]) == 12
    assert sleeps == [7.0], "the policy's own backoff (1 ms) would have hammered the gateway"


def test_gateway_429_with_a_text_body_is_throttling(sim: ZohoSimulator) -> None:
    sleeps = Sleeps()
    adapter = _adapter(sim, sleeps)
    _warm(adapter)
    sim.inject_gateway(429, "text", times=1, retry_after=2, path="/crm/v8/Contacts")
    _warm(adapter)
    assert adapter.stats.throttled == 1 and sleeps == [2.0]


# ---------------------------------------------------------------------- the accounts server's token endpoint
@pytest.mark.parametrize(("status", "body"), GATEWAY)
def test_token_refresh_through_a_gateway_error_is_retried(sim: ZohoSimulator, status: int, body: str) -> None:
    sleeps = Sleeps()
    adapter = _adapter(sim, sleeps)
    sim.inject_gateway(status, body, times=2, path="/oauth/v2/token")
    assert len([r for p in adapter.extract("Contacts", fields=["Last_Name"]) for r in p.records]) == 12
    assert adapter.stats.retries == 2
    assert sim.requests_seen["POST /oauth/v2/token"] == 3


def test_token_endpoint_html_503_is_transient_not_credentials_refused(sim: ZohoSimulator) -> None:
    sleeps = Sleeps()
    adapter = _adapter(sim, sleeps)
    sim.inject_gateway(503, "html", times=POLICY.max_attempts, path="/oauth/v2/token", retry_after=3)
    with pytest.raises(TransientServerError) as info:
        list(adapter.extract("Contacts", fields=["Last_Name"]))
    assert not isinstance(info.value, AuthenticationError)
    assert info.value.status == 503 and "accounts server" in str(info.value)
    assert sleeps == [3.0] * (POLICY.max_attempts - 1)


def test_token_endpoint_empty_200_is_a_bad_response_not_credentials_refused(sim: ZohoSimulator) -> None:
    adapter = _adapter(sim, Sleeps())
    sim.inject_gateway(200, "empty", times=1, path="/oauth/v2/token")
    with pytest.raises(BadResponseError) as info:
        list(adapter.extract("Contacts", fields=["Last_Name"]))
    assert "HTTP 200 with an empty body" in str(info.value)


# ---------------------------------------------------------------------- empty or truncated HTTP 200
def test_empty_200_is_a_bad_response_with_a_clear_message(sim: ZohoSimulator) -> None:
    adapter = _adapter(sim, Sleeps())
    _warm(adapter)
    sim.inject_gateway(200, "empty", times=1, path="/crm/v8/Contacts")
    with pytest.raises(BadResponseError) as info:
        list(adapter.extract("Contacts", fields=["Last_Name"]))
    assert "HTTP 200 with an empty body" in str(info.value) and "GET /crm/v8/Contacts" in str(info.value)
    assert adapter.stats.retries == 0


@pytest.mark.parametrize("op", ["list", "upsert", "deleted"])
def test_truncated_200_is_a_bad_response_with_a_clear_message(sim: ZohoSimulator, op: str) -> None:
    adapter = _adapter(sim, Sleeps())
    _warm(adapter)
    if op == "deleted":
        adapter.delete("Contacts", sorted(sim.stores["Contacts"].records)[:2])
    path, call = OPS[op]
    sim.inject_gateway(200, "truncated", times=1, path=path)
    with pytest.raises(BadResponseError) as info:
        call(adapter, sim)
    assert "truncated or malformed JSON" in str(info.value)
    assert not isinstance(info.value, KeyError | IndexError)
