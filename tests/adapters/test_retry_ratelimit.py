"""Unit tests of the one retry policy (crmbridge.core.retry) and the client-side limits (crmbridge.core.ratelimit)."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError as PydanticValidationError

from crmbridge.core.errors import (
    AuthenticationError,
    BadResponseError,
    RetryableError,
    ThrottledError,
    TransientServerError,
)
from crmbridge.core.ratelimit import CallGate, TokenBucket
from crmbridge.core.retry import RetryPolicy, call_with_retry


class Flaky:
    """Fails with the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


# ---------------------------------------------------------------------- RetryPolicy.wait_for
def test_backoff_is_exponential_and_capped() -> None:
    p = RetryPolicy(initial_wait=0.5, multiplier=2, max_wait=3, jitter=0)
    assert [p.wait_for(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_within_its_fraction() -> None:
    p = RetryPolicy(initial_wait=1, multiplier=1, max_wait=10, jitter=0.5)
    waits = [p.wait_for(1) for _ in range(300)]
    assert all(0.5 <= w <= 1.0 for w in waits)
    assert max(waits) - min(waits) > 0.2, "no jitter at all"


def test_retry_after_wins_when_longer_and_is_capped() -> None:
    p = RetryPolicy(initial_wait=0.5, max_wait=30, jitter=0)
    assert p.wait_for(1, retry_after=7) == 7
    assert p.wait_for(1, retry_after=0.1) == 0.5
    assert p.wait_for(1, retry_after=600) == 30


def test_policy_is_validated() -> None:
    with pytest.raises(PydanticValidationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(PydanticValidationError):
        RetryPolicy(max_tries=3)  # type: ignore[call-arg]
    with pytest.raises(PydanticValidationError):
        RetryPolicy(jitter=2)


# ---------------------------------------------------------------------- call_with_retry
def test_retryable_errors_are_retried_until_success() -> None:
    fn = Flaky(TransientServerError("503"), ThrottledError("429", retry_after=4))
    seen: list[tuple[str, int]] = []
    waits: list[float] = []
    policy = RetryPolicy(max_attempts=5, initial_wait=0.25, max_wait=10, jitter=0)
    out = call_with_retry(policy, fn, before_retry=lambda e, n: seen.append((type(e).__name__, n)),
                          sleep=waits.append)
    assert out == "ok" and fn.calls == 3
    assert seen == [("TransientServerError", 1), ("ThrottledError", 2)]
    assert waits == [0.25, 4.0]


@pytest.mark.parametrize("exc", [AuthenticationError("no"), BadResponseError("junk"), ValueError("bug")])
def test_other_errors_are_raised_at_once(exc: Exception) -> None:
    fn = Flaky(exc)
    waits: list[float] = []
    with pytest.raises(type(exc)):
        call_with_retry(RetryPolicy(max_attempts=5), fn, sleep=waits.append)
    assert fn.calls == 1 and waits == []


def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    errors = [TransientServerError(f"fail {i}") for i in range(10)]
    fn = Flaky(*errors)
    waits: list[float] = []
    with pytest.raises(TransientServerError, match="fail 2"):
        call_with_retry(RetryPolicy(max_attempts=3, initial_wait=0, jitter=0), fn, sleep=waits.append)
    assert fn.calls == 3 and len(waits) == 2


def test_before_retry_may_stop_the_retries() -> None:
    fn = Flaky(RetryableError("a"), RetryableError("b"), RetryableError("c"))

    def refuse_second(exc: RetryableError, attempt: int) -> None:
        if attempt == 2:
            raise exc

    with pytest.raises(RetryableError, match="b"):
        call_with_retry(RetryPolicy(max_attempts=6, initial_wait=0), fn, before_retry=refuse_second,
                        sleep=lambda s: None)
    assert fn.calls == 2


# ---------------------------------------------------------------------- TokenBucket
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_token_bucket_allows_a_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=3, clock=clock, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(3)] == [0, 0, 0]
    assert bucket.acquire() == pytest.approx(0.1)
    assert bucket.acquire() == pytest.approx(0.1)
    clock.now += 10  # idle: the bucket refills, but only up to its burst
    assert [bucket.acquire() for _ in range(3)] == [0, 0, 0]
    assert bucket.acquire() == pytest.approx(0.1)


def test_token_bucket_rate_over_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5, burst=1, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(51):
        bucket.acquire()
    assert clock.now - start == pytest.approx(10.0)


def test_token_bucket_refuses_a_non_positive_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)


# ---------------------------------------------------------------------- CallGate
def test_call_gate_caps_concurrency() -> None:
    gate = CallGate(concurrency=3)
    inflight, peak = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inflight, peak
        with gate.slot():
            with lock:
                inflight += 1
                peak = max(peak, inflight)
            time.sleep(0.02)
            with lock:
                inflight -= 1

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 3


def test_call_gate_minimum_concurrency_is_one() -> None:
    assert CallGate(concurrency=0).concurrency == 1


def test_call_gate_applies_its_rate() -> None:
    gate = CallGate(concurrency=4, rate=50)
    t0 = time.monotonic()
    for _ in range(60):  # burst 50, then 10 more at 50/s
        with gate.slot():
            pass
    assert time.monotonic() - t0 >= 0.18
