"""The adapter base class's own mechanics, exercised through the memory adapter against MemorySimulator.

Batching, bounded concurrency, Retry-After, one token refresh, result order, statistics, transport
failures, configuration checks and the adapter registry.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError as PydanticValidationError

from crmbridge.adapters import registry
from crmbridge.adapters.base import WriteItem, WriteStatus
from crmbridge.adapters.simulator import Fault, Knobs
from crmbridge.core.errors import (
    AuthenticationError,
    RecordRejectedError,
    TokenExpiredError,
    TransientServerError,
    UnknownAdapterError,
)
from crmbridge.core.retry import RetryPolicy
from crmbridge.testing.memory import MemoryAdapter, MemoryConfig
from crmbridge.testing.memory.simulator import DEFAULT_CLIENT_SECRET, MemorySimulator

OBJ = "Contact"
UPSERT = f"POST /records/{OBJ}/upsert"
FAST = RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.01, jitter=0.0)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEM_SECRET", DEFAULT_CLIENT_SECRET)
    monkeypatch.setenv("MEM_BAD_SECRET", "wrong")


@pytest.fixture
def sim() -> Iterator[MemorySimulator]:
    with MemorySimulator(Knobs(records=0, extra={"required": ["email"]})) as s:
        yield s


def make(sim: MemorySimulator, **kw: object) -> MemoryAdapter:
    opts: dict[str, object] = {"base_url": sim.url, "client_id": "crm-client", "client_secret": "env:MEM_SECRET",
                               "page_size": 10, "retry": FAST, **kw}
    sleep = opts.pop("sleep", None)
    cfg = MemoryConfig(**opts)  # type: ignore[arg-type]
    return MemoryAdapter(cfg, sleep=sleep) if sleep else MemoryAdapter(cfg)  # type: ignore[arg-type]


def items(n: int, start: int = 0, variant: str = "a") -> list[WriteItem]:
    return [WriteItem(key=f"k{i:05d}", key_field="external_key",
                      payload={"name": f"N{i}", "email": f"e{i}@example.com", "v": variant})
            for i in range(start, start + n)]


# ---------------------------------------------------------------------- batching and order
def test_write_batches_at_max_batch_size(sim: MemorySimulator) -> None:
    adapter = make(sim, max_concurrency=1)
    res = adapter.write(OBJ, items(2 * MemoryAdapter.max_batch_size + 7))
    assert sim.requests_seen[UPSERT] == 3
    assert len(res) == 107 and sim.count(OBJ) == 107
    assert adapter.write(OBJ, []) == []
    assert sim.requests_seen[UPSERT] == 3, "an empty write made a call"


def test_results_come_back_in_request_order(sim: MemorySimulator) -> None:
    sim.knobs.latency_ms = 5
    adapter = make(sim, max_concurrency=4)
    batch = items(230)
    batch.reverse()  # keys in descending order: an accidental sort would show
    res = adapter.write(OBJ, batch)
    assert [r.key for r in res] == [it.key for it in batch]
    by_id = {r["id"]: r["external_key"] for r in sim.records(OBJ)}
    assert all(by_id[r.external_id] == r.key for r in res), "a result carries another record's id"


def test_rejected_record_is_a_result_not_an_exception(sim: MemorySimulator) -> None:
    adapter = make(sim)
    batch = items(3)
    batch[1] = WriteItem(key="bad", key_field="external_key", payload={"name": "no email"})
    res = adapter.write(OBJ, batch)
    assert [r.status for r in res] == [WriteStatus.CREATED, WriteStatus.FAILED, WriteStatus.CREATED]
    err = res[1].error
    assert isinstance(err, RecordRejectedError) and err.field == "email" and err.code == "required_field_missing"
    assert sim.count(OBJ) == 2


# ---------------------------------------------------------------------- concurrency
def test_concurrency_never_exceeds_max_concurrency(sim: MemorySimulator) -> None:
    sim.knobs.latency_ms = 30
    sim.knobs.concurrency_limit = 2
    adapter = make(sim, max_concurrency=2)
    adapter.write(OBJ, items(8 * MemoryAdapter.max_batch_size))
    assert sim.requests_seen[UPSERT] == 8
    assert sim.throttled == 0 and adapter.stats.throttled == 0
    assert sim.peak_inflight == 2, "two workers were allowed but calls never overlapped"


def test_concurrent_calls_keep_their_connections_alive(sim: MemorySimulator) -> None:
    """As many pooled connections as calls in flight: requests keeps 10 per host by default, so 20 concurrent calls
    opened 10 new connections (a TLS handshake each, against a real vendor) in every wave and threw them away."""
    sim.knobs.latency_ms = 200   # long enough for all 20 calls of a wave to be in flight on a loaded machine
    adapter = make(sim, max_concurrency=20)
    for _ in range(3):
        adapter.write(OBJ, items(20 * MemoryAdapter.max_batch_size))
    assert sim.requests_seen[UPSERT] == 60 and sim.peak_inflight == 20
    assert sim.connections <= 20 + 1, f"{sim.connections} connections for 60 calls, 20 at a time"


def test_exceeding_the_vendor_concurrency_limit_is_seen_and_retried(sim: MemorySimulator) -> None:
    # the control for the test above: the simulator's limit does bite when the adapter allows more
    sim.knobs.latency_ms = 30
    sim.knobs.concurrency_limit = 2
    adapter = make(sim, max_concurrency=6,
                   retry=RetryPolicy(max_attempts=20, initial_wait=0.01, max_wait=0.02, jitter=0.5))
    res = adapter.write(OBJ, items(6 * MemoryAdapter.max_batch_size))
    assert sim.throttled > 0 and adapter.stats.throttled == sim.throttled
    assert len(res) == 300 and sim.count(OBJ) == 300


def test_rate_limit_spaces_calls(sim: MemorySimulator) -> None:
    sim.seed(OBJ, 0)
    adapter = make(sim, rate_per_second=20)
    import time

    t0 = time.monotonic()
    for _ in range(30):
        adapter.get(OBJ, "con-0000001")
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.4, f"31 calls at 20/s (burst 20) took {elapsed:.2f}s"


# ---------------------------------------------------------------------- retries
def test_retry_after_is_honoured(sim: MemorySimulator) -> None:
    sim.retry_after = 2
    waits: list[float] = []
    adapter = make(sim, sleep=waits.append,
                   retry=RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=10, jitter=0.0))
    sim.seed(OBJ, 3)
    list(adapter.extract(OBJ))
    sim.inject(Fault.THROTTLE, times=1)
    records = [r for p in adapter.extract(OBJ) for r in p.records]
    assert len(records) == 3
    assert waits == [pytest.approx(2.0)], waits
    assert adapter.stats.throttled == 1


def test_retry_after_is_capped_by_max_wait(sim: MemorySimulator) -> None:
    sim.retry_after = 120
    waits: list[float] = []
    adapter = make(sim, sleep=waits.append,
                   retry=RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=5, jitter=0.0))
    list(adapter.extract(OBJ))
    sim.inject(Fault.THROTTLE, times=2)
    list(adapter.extract(OBJ))
    assert waits == [5, 5]


def test_token_refreshed_once_on_repeated_expiry(sim: MemorySimulator) -> None:
    adapter = make(sim)
    list(adapter.extract(OBJ))
    assert sim.tokens_issued == 1
    sim.inject(Fault.TOKEN_EXPIRED, times=3)
    with pytest.raises(TokenExpiredError):
        list(adapter.extract(OBJ))
    assert adapter.stats.token_refreshes == 1
    assert sim.tokens_issued == 2, "the token was fetched more than once more"


def test_real_token_expiry_is_refreshed(sim: MemorySimulator) -> None:
    sim.seed(OBJ, 4)
    adapter = make(sim)
    list(adapter.extract(OBJ))
    sim.expire_tokens()
    assert sum(len(p.records) for p in adapter.extract(OBJ)) == 4
    assert adapter.stats.token_refreshes == 1 and sim.tokens_issued == 2
    # a second expiry in a later call is refreshed again: "once" is per call, not per adapter
    sim.expire_tokens()
    assert adapter.get(OBJ, sim.records(OBJ)[0]["id"]) is not None
    assert adapter.stats.token_refreshes == 2


def test_bad_secret_is_not_retried_and_not_shown(sim: MemorySimulator) -> None:
    adapter = make(sim, client_secret="env:MEM_BAD_SECRET")
    with pytest.raises(AuthenticationError) as info:
        list(adapter.extract(OBJ))
    assert adapter.stats.retries == 0 and sim.requests_seen["POST /token"] == 1
    assert "wrong" not in str(info.value) and DEFAULT_CLIENT_SECRET not in repr(adapter.config)


def test_connection_refused_is_transient_and_bounded(sim: MemorySimulator) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = make(sim, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientServerError):
        adapter.get(OBJ, "x")
    assert adapter.stats.by_status["connection"] == FAST.max_attempts
    assert adapter.stats.retries == FAST.max_attempts - 1


def test_read_timeout_is_transient(sim: MemorySimulator) -> None:
    sim.knobs.latency_ms = 400
    adapter = make(sim, timeout=0.1, retry=RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.01))
    with pytest.raises(TransientServerError, match="timed out"):
        adapter.get(OBJ, "x")
    assert adapter.stats.by_status["timeout"] == 2


# ---------------------------------------------------------------------- streaming and stats
def test_extract_streams_one_page_at_a_time(sim: MemorySimulator) -> None:
    sim.seed(OBJ, 35)
    adapter = make(sim)
    pages = adapter.extract(OBJ)
    first = next(pages)
    assert len(first.records) == 10 and sim.requests_seen[f"GET /records/{OBJ}"] == 1
    rest = list(pages)
    assert [len(p.records) for p in rest] == [10, 10, 5]
    assert sim.requests_seen[f"GET /records/{OBJ}"] == 4


def test_stats_count_calls_statuses_and_retries(sim: MemorySimulator) -> None:
    sim.seed(OBJ, 25)
    adapter = make(sim)
    list(adapter.extract(OBJ))
    assert adapter.stats.api_calls == 4 and dict(adapter.stats.by_status) == {"200": 4}
    sim.inject(Fault.SERVER_ERROR, times=2)
    sim.inject(Fault.THROTTLE, times=1)
    list(adapter.extract(OBJ))
    s = adapter.stats.as_dict()
    assert s["by_status"] == {"200": 7, "503": 2, "429": 1}
    assert s["retries"] == 3 and s["throttled"] == 1 and s["token_refreshes"] == 0


def test_tombstones_after_delete(sim: MemorySimulator) -> None:
    sim.seed(OBJ, 3)
    adapter = make(sim)
    ids = sorted(sim.ids(OBJ))
    assert [r.status for r in adapter.delete(OBJ, ids[:2])] == [WriteStatus.DELETED] * 2
    assert [r.status for r in adapter.delete(OBJ, ids[:1])] == [WriteStatus.DELETED], "delete is idempotent"
    dead = [r for p in adapter.extract_deleted(OBJ) for r in p.records]
    assert sorted(r.external_id for r in dead) == ids[:2] and all(r.deleted for r in dead)


# ---------------------------------------------------------------------- configuration
def test_config_refuses_literal_secrets_and_unknown_keys() -> None:
    with pytest.raises(PydanticValidationError, match="secret reference"):
        MemoryConfig(base_url="http://x", client_id="c", client_secret="hunter2")
    with pytest.raises(PydanticValidationError, match="page_sise"):
        MemoryConfig(base_url="http://x", client_id="c", client_secret="env:X", page_sise=5)  # type: ignore[call-arg]


# ---------------------------------------------------------------------- registry
def test_registry_finds_builtin_and_registered_adapters() -> None:
    # "memory" is registered by tests/conftest.py for this test session (crmbridge.testing.memory.register)
    assert registry.adapter_class("memory") is MemoryAdapter
    assert registry.adapter_class(" Memory ") is MemoryAdapter
    assert registry.simulator_class("memory") is MemorySimulator
    assert {"corebank_rest", "corebank_soap", "fxiaoke", "memory", "zoho"} <= set(registry.adapter_names())
    assert registry.adapter_class("corebank-soap").__name__ == "CorebankSoapAdapter"


def test_unknown_adapter_lists_known_names() -> None:
    with pytest.raises(UnknownAdapterError) as info:
        registry.adapter_class("salesfarce")
    msg = str(info.value)
    assert "salesfarce" in msg and "memory" in msg and "zoho" in msg
    assert "memory" in info.value.known
    with pytest.raises(UnknownAdapterError, match="memory"):
        registry.simulator_class("salesfarce")


@pytest.fixture
def without_memory() -> Iterator[None]:
    """The registry as a production process sees it: the test adapter not registered."""
    with registry.unregistered("memory"):
        yield


def test_the_memory_adapter_is_known_only_when_a_test_registers_it(without_memory: None) -> None:
    assert "memory" not in registry.adapter_names() and "memory" not in registry.simulator_names()
    with pytest.raises(UnknownAdapterError):
        registry.adapter_class("memory")
    with registry.registered("memory", MemoryAdapter, simulator=MemorySimulator):
        assert registry.adapter_class("memory") is MemoryAdapter and "memory" in registry.simulator_names()
    assert "memory" not in registry.adapter_names()


def test_register_refuses_a_builtin_name_or_a_second_class(without_memory: None) -> None:
    class Other(MemoryAdapter):
        name = "other"

    with pytest.raises(ValueError, match="built-in"):
        registry.register("zoho", MemoryAdapter)
    with registry.registered("memory", MemoryAdapter):
        registry.register("memory", MemoryAdapter)   # the same class again: a no-op
        with pytest.raises(ValueError, match="registered already"):
            registry.register("Memory", Other)
    assert registry.adapter_class("zoho").__name__ == "ZohoAdapter"


def test_the_plugin_fixture_registers_for_one_test(crmbridge_register, without_memory) -> None:  # type: ignore[no-untyped-def]
    crmbridge_register("acme-crm", MemoryAdapter, MemorySimulator)
    assert registry.adapter_class("acme_crm") is MemoryAdapter
    assert registry.simulator_class("acme-crm") is MemorySimulator


def test_the_acme_registration_did_not_outlive_its_test() -> None:
    assert "acme_crm" not in registry.adapter_names()


def test_package_declares_its_adapters_as_entry_points() -> None:
    """pyproject.toml: the five packages are the production adapters (no test adapter among them), and the testing
    package is a pytest plugin."""
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text("utf-8"))["project"]
    eps = project["entry-points"]
    assert eps["crmbridge.adapters"] == {
        "zoho": "crmbridge.adapters.zoho:ZohoAdapter", "fxiaoke": "crmbridge.adapters.fxiaoke:FxiaokeAdapter",
        "corebank_soap": "crmbridge.adapters.corebank_soap:CorebankSoapAdapter",
        "corebank_rest": "crmbridge.adapters.corebank_rest:CorebankRestAdapter",
        "complaints": "crmbridge.adapters.complaints:ComplaintsAdapter"}
    assert eps["pytest11"] == {"crmbridge.testing.plugin": "crmbridge.testing.plugin"}


def test_entry_point_group_is_consulted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a real (tiny) installed distribution on sys.path declaring a third-party adapter
    dist = tmp_path / "acme_crm_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-crm-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[crmbridge.adapters]\nacme_crm = crmbridge.testing.memory:MemoryAdapter\n")
    with pytest.raises(UnknownAdapterError):
        registry.adapter_class("acme-crm")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "acme_crm" in registry.adapter_names()
    assert registry.adapter_class("acme-crm") is MemoryAdapter


# ---------------------------------------------------------------------- one call's failure is its records'
def test_a_token_refresh_is_not_charged_to_the_call_s_retries(sim: MemorySimulator) -> None:
    """Two tries allowed: the token refresh in the middle is the client's own housekeeping, so the call still has
    its second try for the server error (before, the refresh used it up and the record was lost to the run)."""
    adapter = make(sim, retry=RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.01, jitter=0.0))
    adapter.write(OBJ, items(1))                       # a token in hand
    sim.inject(Fault.TOKEN_EXPIRED, path=f"/records/{OBJ}/upsert")
    sim.inject(Fault.SERVER_ERROR, path=f"/records/{OBJ}/upsert")
    (result,) = adapter.write(OBJ, items(1, start=1))
    assert result.status is WriteStatus.CREATED
    assert adapter.stats.token_refreshes == 1 and sim.requests_seen[UPSERT] == 4


def test_a_call_failing_after_every_retry_fails_its_records_and_the_others_stand(sim: MemorySimulator) -> None:
    adapter = make(sim, max_concurrency=1, retry=RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.01))
    sim.inject(Fault.SERVER_ERROR, times=2, path=f"/records/{OBJ}/upsert")   # the first call, both tries
    results = adapter.write(OBJ, items(MemoryAdapter.max_batch_size + 50))
    failed = [r for r in results if r.status is WriteStatus.FAILED]
    assert len(failed) == MemoryAdapter.max_batch_size and all(r.error and r.error.code == "unreachable"
                                                               for r in failed)
    assert [r.status for r in results[MemoryAdapter.max_batch_size:]] == [WriteStatus.CREATED] * 50
    assert sim.count(OBJ) == 50 and adapter.stats.consecutive_failed_calls == 0   # reset by the call that worked
    sim.inject(Fault.SERVER_ERROR, times=2, path=f"/records/{OBJ}/upsert")
    adapter.write(OBJ, items(1, start=500))
    assert adapter.stats.consecutive_failed_calls == 1   # what the engine's circuit breaker reads
