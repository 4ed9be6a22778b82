"""The one retry policy (tenacity), built from configuration in one place.

Only :class:`~crmbridge.core.errors.RetryableError` is retried: exponential backoff with jitter,
bounded attempts, and a vendor's ``Retry-After`` honoured when it is longer than the backoff.
Adapters never write their own retry loops; the adapter base class wraps every call with this policy.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import tenacity
from pydantic import BaseModel, ConfigDict, Field

from crmbridge.core.errors import RetryableError

__all__ = ["RetryPolicy", "call_with_retry", "retry_after_seconds"]

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """How transient failures are retried.

    Example (YAML)::

        retry: {max_attempts: 6, initial_wait: 0.5, max_wait: 30, multiplier: 2, jitter: 0.5}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(6, ge=1, le=50, description="total tries, the first included")
    initial_wait: float = Field(0.5, ge=0, description="seconds before the first retry")
    max_wait: float = Field(30.0, ge=0, description="cap on any single wait, Retry-After included")
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.5, ge=0, le=1, description="fraction of each wait randomised")

    def wait_for(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 1)."""
        base = min(self.max_wait, self.initial_wait * self.multiplier ** (attempt - 1))
        base *= 1 - self.jitter * random.random()
        if retry_after is not None:
            base = max(base, min(retry_after, self.max_wait))
        return base


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP-date (RFC 9110 §10.2.3); ``None`` when absent
    or unreadable (the policy's own backoff applies). Vendors and the gateways in front of them send either."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def call_with_retry(
    policy: RetryPolicy,
    fn: Callable[[], T],
    *,
    before_retry: Callable[[RetryableError, int], Any] | None = None,
    sleep: Callable[[float], None] | None = None,
    free: Callable[[BaseException], bool] | None = None,
) -> T:
    """Call ``fn`` under ``policy``.

    Args:
        policy: the retry policy.
        fn: the call; it raises :class:`RetryableError` for what may be retried.
        before_retry: called with the error and the attempt number before each retry (token refresh, counters).
        sleep: injected sleep (tests).
        free: whether a failure does not count against ``max_attempts`` (a token refresh is the client's own
            housekeeping, not the call failing: charging it to the call left a record one try short).

    Raises:
        RetryableError: the last transient error once attempts run out.
        Any other exception from ``fn`` at once.
    """

    def _wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return policy.wait_for(state.attempt_number, retry_after)

    def _before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if before_retry is not None and isinstance(exc, RetryableError):
            before_retry(exc, state.attempt_number)

    free_tries = 0

    def _stop(state: tenacity.RetryCallState) -> bool:
        nonlocal free_tries
        exc = state.outcome.exception() if state.outcome else None
        if free is not None and exc is not None and free(exc):
            free_tries += 1
        return state.attempt_number - free_tries >= policy.max_attempts

    kwargs: dict[str, Any] = {}
    if sleep is not None:
        kwargs["sleep"] = sleep
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RetryableError),
        stop=_stop,
        wait=_wait,
        before_sleep=_before_sleep,
        reraise=True,
        **kwargs,
    )
    return retrying(fn)
