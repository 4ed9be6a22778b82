"""Fault tests of the core-banking REST adapter against the simulator: timeouts, resets, 5xx, garbage, truncated
bodies, refused credentials, a missing or unknown tenant, throttling with Retry-After, expiring bearer tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from corebank_rest_support import fineract_config, openbank_config, set_env

from crmbridge.adapters.corebank_rest import CorebankRestAdapter
from crmbridge.adapters.corebank_rest.simulator import CorebankRestSimulator
from crmbridge.adapters.simulator import Fault, Knobs
from crmbridge.core.errors import AuthenticationError, BadResponseError, TokenExpiredError, TransientServerError
from crmbridge.core.retry import RetryPolicy

LIST = "GET /fineract-provider/api/v1/clients"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch)


@pytest.fixture
def sim() -> Iterator[CorebankRestSimulator]:
    with CorebankRestSimulator(Knobs(seed=5, records=23)) as s:
        yield s


@pytest.fixture
def ob() -> Iterator[CorebankRestSimulator]:
    with CorebankRestSimulator(Knobs(seed=5, records=23, extra={"dialect": "openbank"})) as s:
        yield s


def drain(adapter: CorebankRestAdapter, obj: str = "Client") -> list[str]:
    return [r.external_id for p in adapter.extract(obj) for r in p.records]


def test_read_timeout_is_retried_then_raised(sim: CorebankRestSimulator) -> None:
    sim.knobs.latency_ms = 300
    adapter = CorebankRestAdapter(fineract_config(sim, timeout=0.05))
    with pytest.raises(TransientServerError, match="timed out"):
        drain(adapter)
    assert adapter.stats.by_status["timeout"] == 4 and adapter.stats.retries == 3


def test_slow_reply_once_is_retried(sim: CorebankRestSimulator) -> None:
    sim.knobs.timeout_delay = 0.5
    adapter = CorebankRestAdapter(fineract_config(sim, timeout=0.15))
    sim.inject(Fault.TIMEOUT_AFTER_APPLY, times=1)
    assert len(drain(adapter)) == 23
    assert adapter.stats.by_status["timeout"] == 1


def test_connection_resets_are_retried_and_bounded(sim: CorebankRestSimulator) -> None:
    adapter = CorebankRestAdapter(fineract_config(sim))
    sim.inject(Fault.DROP, times=3)
    assert len(set(drain(adapter))) == 23
    sim.inject(Fault.DROP, times=10)
    with pytest.raises(TransientServerError):
        drain(adapter)
    sim.clear_faults()


def test_server_error_in_fineract_shape(sim: CorebankRestSimulator) -> None:
    adapter = CorebankRestAdapter(fineract_config(sim))
    sim.inject(Fault.SERVER_ERROR, times=10)
    with pytest.raises(TransientServerError) as info:
        drain(adapter)
    sim.clear_faults()
    err = info.value
    assert err.status == 500 and err.vendor_code == "error.msg.platform.server.side.error"
    assert adapter.stats.by_status["500"] == 4


def test_garbage_and_wrong_shape_are_bad_responses(sim: CorebankRestSimulator) -> None:
    adapter = CorebankRestAdapter(fineract_config(sim))
    sim.inject(Fault.GARBAGE, times=1)
    with pytest.raises(BadResponseError, match="not JSON"):
        drain(adapter)
    cfg = fineract_config(sim)
    cfg.resources["Client"].paths.list = "items"  # a configuration pointing at the wrong key
    with pytest.raises(BadResponseError, match="no record list at 'items'"):
        drain(CorebankRestAdapter(cfg))


def test_truncated_body_is_retried(sim: CorebankRestSimulator) -> None:
    adapter = CorebankRestAdapter(fineract_config(sim))
    sim.inject(Fault.TRUNCATED, times=1)
    assert len(drain(adapter)) == 23 and adapter.stats.retries == 1


def test_bad_password_is_an_authentication_error_at_once(sim: CorebankRestSimulator) -> None:
    adapter = CorebankRestAdapter(fineract_config(sim, bad=True))
    with pytest.raises(AuthenticationError) as info:
        drain(adapter)
    assert info.value.status == 401 and adapter.stats.retries == 0 and sim.requests_seen[LIST] == 1
    assert "wrong-password" not in str(info.value)


@pytest.mark.parametrize("headers", [{}, {"Fineract-Platform-TenantId": "bank2"}], ids=["missing", "unknown"])
def test_tenant_header_missing_or_unknown(sim: CorebankRestSimulator, headers: dict[str, str]) -> None:
    adapter = CorebankRestAdapter(fineract_config(sim, headers=headers))
    with pytest.raises(AuthenticationError, match="Fineract-Platform-TenantId") as info:
        drain(adapter)
    assert info.value.status == 400 and adapter.stats.retries == 0


def test_throttle_honours_retry_after(sim: CorebankRestSimulator) -> None:
    sim.retry_after = 3
    waits: list[float] = []
    adapter = CorebankRestAdapter(
        fineract_config(sim, retry=RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=10, jitter=0)),
        sleep=waits.append)
    sim.inject(Fault.THROTTLE, times=2)
    assert len(drain(adapter)) == 23
    assert waits == [3, 3] and adapter.stats.throttled == 2


def test_bearer_token_expiry_is_refreshed_once(ob: CorebankRestSimulator) -> None:
    adapter = CorebankRestAdapter(openbank_config(ob))
    assert len(drain(adapter, "Customer")) == 23 and ob.tokens_issued == 1
    ob.expire_tokens()
    assert len(drain(adapter, "Customer")) == 23
    assert adapter.stats.token_refreshes == 1 and ob.tokens_issued == 2
    ob.inject(Fault.TOKEN_EXPIRED, times=3)  # refused again after the refresh: an error, not a loop
    with pytest.raises(TokenExpiredError):
        drain(adapter, "Customer")
    assert adapter.stats.token_refreshes == 2


def test_short_lived_tokens_are_renewed_before_they_expire(ob: CorebankRestSimulator) -> None:
    ob.knobs.token_lifetime = 1  # expires_in is whole seconds; the adapter renews at 90 %
    adapter = CorebankRestAdapter(openbank_config(ob))
    drain(adapter, "Customer")
    drain(adapter, "Customer")
    assert ob.tokens_issued == 1
    time.sleep(0.95)
    assert len(drain(adapter, "Customer")) == 23
    assert ob.tokens_issued == 2 and adapter.stats.token_refreshes == 0


def test_bad_client_secret_is_an_authentication_error(ob: CorebankRestSimulator) -> None:
    adapter = CorebankRestAdapter(openbank_config(ob, bad=True))
    with pytest.raises(AuthenticationError, match="token request refused") as info:
        drain(adapter, "Customer")
    assert info.value.vendor_code == "invalid_client" and adapter.stats.retries == 0
    assert "not-it" not in str(info.value)
