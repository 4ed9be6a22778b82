"""The adapter base class: final template methods around small vendor hooks.

A vendor adapter subclasses :class:`Adapter`, declares its ``name``, its pydantic ``Config`` model and its
limits, and fills in the protected hooks (``_list_page``, ``_write_batch``, ...). The base class does the
cross-cutting work once for every vendor: batching to the vendor maximum, bounded concurrency and request
rate, the shared retry policy (with one token refresh on :class:`TokenExpiredError`), translation of
transport exceptions, and call statistics.

Nothing above ``crmbridge.adapters`` sees ``requests``, ``zeep`` or a vendor's error codes: hooks raise the
errors of :mod:`crmbridge.core.errors`.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, final
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict

from crmbridge.core.errors import (
    AdapterError,
    BadResponseError,
    RecordError,
    RetryableError,
    ThrottledError,
    TokenExpiredError,
    TransientServerError,
)
from crmbridge.core.ratelimit import CallGate
from crmbridge.core.retry import RetryPolicy, call_with_retry

if TYPE_CHECKING:
    import requests

__all__ = [
    "Adapter",
    "AdapterConfig",
    "AdapterStats",
    "FieldInfo",
    "Finding",
    "Page",
    "RawRecord",
    "UNCERTAIN_CODES",
    "WriteItem",
    "WriteResult",
    "WriteStatus",
]

T = TypeVar("T")

#: record error codes of a write whose outcome is unknown (the vendor may have applied it): retries ran out on a
#: transient failure, or the answer could not be read. Such a write is dead-lettered and its write intent stays
#: pending, so the record is looked up by its key before it is written again.
UNCERTAIN_CODES = frozenset({"unreachable", "bad_response"})


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One vendor record as the vendor returned it.

    Attributes:
        object: the vendor object (``Contacts``, ``AccountObj``, ``Customer``).
        external_id: the vendor's own id, as a string.
        data: the raw vendor fields.
        modified_at: last modification, timezone-aware UTC (``None`` if the vendor does not say).
        version: the vendor's record version (FLEXCUBE MODNO, T24 CURR.NO), for optimistic concurrency.
        deleted: a tombstone (deleted, invalidated or closed record).
        error: the record cannot be used as read (e.g. a version field that is not an integer): the engine
            dead-letters it with this error instead of syncing it (a record without its version would lose the
            stale-version check of later write-backs).
    """

    object: str
    external_id: str
    data: Mapping[str, Any]
    modified_at: datetime | None = None
    version: str | None = None
    deleted: bool = False
    error: RecordError | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """A page of records and the opaque state that fetches the next page (``None`` at the end).

    ``full_scan`` is set when the vendor could not filter by ``since`` and the page comes from a full
    scan: the engine's content-hash change detection then decides what changed.
    """

    records: list[RawRecord]
    next_state: Any = None
    full_scan: bool = False


class WriteStatus(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    CONFLICT = "conflict"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class WriteItem:
    """One record to write.

    Attributes:
        key: crmbridge's stable external key for the record (the canonical party id), the idempotency key.
        payload: the vendor payload built by the mapping.
        external_id: the target's id when the cross-reference knows it (then this is an update).
        key_field: the target field that holds ``key`` (Zoho's ``duplicate_check_fields``, Fxiaoke's lookup field).
        expected_version: the version the write is based on (stale → CONFLICT, never an overwrite).
        known_new: the caller knows the record is not at the target (no cross-reference and no unfinished write
            intent for its key), so an adapter without upsert may create it without looking it up first. Honoured
            on the first attempt only: a retry (after a timeout that may have applied the create) looks it up.
        duplicate_search: whether the vendor's own duplicate rules should judge a create (the job's
            ``duplicate_search``); ``None``: the system's configured default. Vendors without such rules ignore it.
    """

    key: str
    payload: Mapping[str, Any]
    external_id: str | None = None
    key_field: str | None = None
    expected_version: str | None = None
    known_new: bool = False
    duplicate_search: bool | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of one :class:`WriteItem`, in request order."""

    key: str
    status: WriteStatus
    external_id: str | None = None
    version: str | None = None
    modified_at: datetime | None = None
    error: RecordError | None = None
    #: the vendor's id of the request that carried the write (a trace id), when its answer names one: the ledger's
    #: correlation id, which the vendor's support can look up
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """A vendor field's metadata, for ``crmbridge mapping validate --against SYSTEM``."""

    name: str
    type: str
    length: int | None = None
    required: bool = False
    read_only: bool = False
    picklist: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Finding:
    """One thing ``crmbridge doctor SYSTEM`` found by probing a configured system (read-only calls only).

    Attributes:
        check: what was probed: ``reachable``, ``authenticated``, ``operation``, ``fields``, ``page_size``,
            ``since_boundary``, ``paging``, ``clock_skew``, ``rate_limit``, ``duplicate_rule``...
        status: ``ok``; ``warn`` (works, but the configuration should change); ``fail`` (a job will not work);
            ``info`` (a fact worth knowing).
        detail: what was found, in one or two sentences; masked, never a secret or personal data in clear.
        obj: the vendor object the finding is about, when it is about one.
        config: configuration to set for this system, as dotted keys under ``systems.<name>`` and their values
            (e.g. ``{"operations.list.since_boundary": "exclusive"}``); empty when nothing needs to change.
    """

    check: str
    status: str
    detail: str
    obj: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdapterStats:
    """Counters one adapter keeps for the run's statistics."""

    api_calls: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    throttled: int = 0
    token_refreshes: int = 0
    credits_remaining: int | None = None
    #: write calls in a row that failed after every retry (reset by any call that got an answer): the engine's
    #: circuit breaker reads it to tell a system that is down from one record's trouble
    consecutive_failed_calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_call(self, status: int | str) -> None:
        with self._lock:
            self.api_calls += 1
            self.by_status[str(status)] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"api_calls": self.api_calls, "by_status": dict(self.by_status), "retries": self.retries,
                "throttled": self.throttled, "token_refreshes": self.token_refreshes,
                "credits_remaining": self.credits_remaining}


class AdapterConfig(BaseModel):
    """Fields every adapter's configuration has. Vendors subclass it (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")

    adapter: str
    timeout: float = 30.0
    connect_timeout: float = 10.0
    retry: RetryPolicy = RetryPolicy()
    max_concurrency: int | None = None
    rate_per_second: float | None = None


class Adapter(ABC):
    """Base class of every vendor adapter.

    Subclasses set ``name``, ``Config`` and ``max_batch_size`` and implement the hooks. They never retry,
    batch or throttle themselves: the final methods here do.
    """

    name: ClassVar[str]
    Config: ClassVar[type[AdapterConfig]] = AdapterConfig
    #: the vendor's maximum records per write call
    max_batch_size: ClassVar[int] = 100
    #: default concurrent calls when the config does not say
    default_concurrency: ClassVar[int] = 1
    #: writes are idempotent upserts by the key field; False: the engine journals write intents and looks a record
    #: up by key before repeating a create an interrupted run may have applied (Fxiaoke)
    supports_upsert: ClassVar[bool] = True
    #: extract yields records oldest first, so a cursor may move after each batch
    ordered_extract: ClassVar[bool] = True
    #: vendor-required fields the adapter fills itself when a mapping does not (Fxiaoke's owner on create):
    #: ``mapping validate --against`` and ``doctor`` do not ask the mapping for them
    fills_fields: ClassVar[frozenset[str]] = frozenset()
    #: what the system is to the bank: ``"system_of_record"`` (the core, which holds personal data in full) or
    #: ``"crm"``. Anything not declared a system of record receives the minimised projection (masking fails closed)
    role: ClassVar[str] = "crm"
    #: vendor fields a create must carry, per object (``mapping validate`` checks the out direction maps them)
    mandatory_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: the canonical ``SourceRef.system`` of records read from this adapter (None: the configured system name)
    source_system: ClassVar[str | None] = None

    def __init__(self, config: AdapterConfig, *, system: str | None = None,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
                 base_dir: Path | None = None) -> None:
        self.config = config
        #: the folder relative file references in the configuration start from (the config file's folder)
        self.base_dir = base_dir
        self.system = system or self.name
        self.stats = AdapterStats()
        self._sleep = sleep
        self._gate = CallGate(config.max_concurrency or self.default_concurrency, config.rate_per_second)
        if session is None:
            # as many kept-alive connections as calls in flight: requests keeps 10 per host, so at Zoho's
            # concurrency of 20 half the calls opened a new connection (a TLS handshake each, over the internet)
            # and threw it away after one call. requests is imported here, not with the module: reading a
            # configuration (AdapterConfig) does not need it (issue 19)
            import requests
            from requests.adapters import HTTPAdapter

            session = requests.Session()
            pooled = HTTPAdapter(pool_connections=4, pool_maxsize=max(10, self._gate.concurrency))
            session.mount("https://", pooled)
            session.mount("http://", pooled)
        self.session = session

    @property
    def concurrency(self) -> int:
        """Calls this adapter keeps in flight at most (``max_concurrency`` of the system, else the vendor's)."""
        return self._gate.concurrency

    # ------------------------------------------------------------------ final template methods
    @final
    def extract(self, obj: str, *, since: datetime | None = None,
                fields: Sequence[str] | None = None) -> Iterator[Page]:
        """Yield pages of records of ``obj`` modified at or after ``since`` (all if ``None``), oldest first
        where the vendor can sort, streaming: one page in memory at a time."""
        state: Any = None
        while True:
            page = self._retrying(lambda s=state: self._list_page(obj, since=since, fields=fields, state=s))
            yield page
            if page.next_state is None:
                return
            state = page.next_state

    @final
    def extract_deleted(self, obj: str, *, since: datetime | None = None) -> Iterator[Page]:
        """Yield pages of tombstones (records deleted or invalidated since ``since``)."""
        state: Any = None
        while True:
            page = self._retrying(lambda s=state: self._list_deleted_page(obj, since=since, state=s))
            yield page
            if page.next_state is None:
                return
            state = page.next_state

    @final
    def write(self, obj: str, items: Sequence[WriteItem]) -> list[WriteResult]:
        """Write ``items`` in batches of the vendor's maximum, up to the concurrency limit, each batch
        retried under the policy. Results come back in the order of ``items``; per-record failures are
        results, not exceptions."""
        if not items:
            return []
        batches = [list(items[i:i + self.max_batch_size]) for i in range(0, len(items), self.max_batch_size)]

        def run(batch: list[WriteItem]) -> list[WriteResult]:
            tries = 0

            def attempt() -> list[WriteResult]:
                nonlocal tries
                tries += 1
                # a retry may follow a create the vendor applied before the connection failed: look it up again
                items_now = batch if tries == 1 else [dataclasses.replace(i, known_new=False) for i in batch]
                return self._write_batch(obj, items_now)

            try:
                results = self._retrying(attempt)
                if len(results) != len(batch):
                    raise BadResponseError(f"{len(results)} results for {len(batch)} records", vendor=self.name)
            except (RetryableError, BadResponseError) as exc:
                # no usable answer after every retry: this call's records failed, not the run. Each becomes a record
                # failure (a dead letter, its write intent kept pending: the write may have been applied) and the
                # other batches' results stand; whether the system as a whole is down is the engine's call. A
                # refusal of the request itself (credentials, permissions, a module or key field that does not
                # exist) is configuration: it is raised and stops the run.
                with self.stats._lock:
                    self.stats.consecutive_failed_calls += 1
                return [WriteResult(key=i.key, status=WriteStatus.FAILED, external_id=i.external_id,
                                    error=_call_failure(exc, obj, len(batch))) for i in batch]
            with self.stats._lock:
                self.stats.consecutive_failed_calls = 0
            return results

        workers = min(len(batches), self.concurrency)
        if workers <= 1:
            out = [run(b) for b in batches]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{self.name}-write") as pool:
                out = list(pool.map(run, batches))
        return [r for chunk in out for r in chunk]

    @final
    def get(self, obj: str, external_id: str) -> RawRecord | None:
        """One record by the vendor's id, or ``None`` if it does not exist."""
        return self._retrying(lambda: self._get(obj, external_id))

    @final
    def find(self, obj: str, key_field: str, key: str) -> RawRecord | None:
        """The record whose ``key_field`` equals ``key`` (the write-intent check after a timeout)."""
        return self._retrying(lambda: self._find(obj, key_field, key))

    @final
    def delete(self, obj: str, external_ids: Sequence[str]) -> list[WriteResult]:
        """Delete (or deactivate, as the vendor does) records by id, in batches."""
        out: list[WriteResult] = []
        for i in range(0, len(external_ids), self.max_batch_size):
            chunk = list(external_ids[i:i + self.max_batch_size])
            out.extend(self._retrying(lambda c=chunk: self._delete_batch(obj, c)))
        return out

    @final
    def describe(self, obj: str) -> list[FieldInfo]:
        """The vendor's field metadata for ``obj``."""
        return self._retrying(lambda: self._describe(obj))

    @final
    def doctor(self, objects: Mapping[str, Sequence[str]]) -> list[Finding]:
        """Probe the system read-only for ``crmbridge doctor``: for each object (with the vendor field paths the
        configured jobs' mappings use), whether it answers and whether the mapped fields exist, then the vendor's
        own probes (:meth:`_probe`). A probe that fails becomes a ``fail`` finding naming the error; no probe
        writes anything."""
        out: list[Finding] = []
        for obj, paths in objects.items():
            try:
                known = {f.name for f in self.describe(obj)}
            except Exception as exc:  # noqa: BLE001 - every failure is a finding, never a crash
                out.append(Finding("fields", "fail", f"field metadata unavailable: {type(exc).__name__}: {exc}",
                                   obj=obj))
                known = set()
            if known and paths:
                missing = sorted({p for p in paths if p.split(".", 1)[0].split("[", 1)[0] not in known})
                out.append(Finding("fields", "fail" if missing else "ok",
                                   f"mapped fields missing from the live metadata: {', '.join(missing)}" if missing
                                   else f"all {len(set(paths))} mapped fields exist", obj=obj))
            try:
                out.extend(self._probe(obj))
            except Exception as exc:  # noqa: BLE001
                out.append(Finding("reachable", "fail", f"probe failed: {type(exc).__name__}: {exc}", obj=obj))
        return out

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Adapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ hooks a vendor fills in
    @abstractmethod
    def _list_page(self, obj: str, *, since: datetime | None, fields: Sequence[str] | None,
                   state: Any) -> Page:
        """Fetch one page. ``state`` is ``None`` for the first page, else the previous ``Page.next_state``."""

    def _list_deleted_page(self, obj: str, *, since: datetime | None, state: Any) -> Page:
        return Page([], None)

    @abstractmethod
    def _write_batch(self, obj: str, batch: list[WriteItem]) -> list[WriteResult]:
        """Write at most ``max_batch_size`` items in one call (or as few as the vendor allows)."""

    @abstractmethod
    def _get(self, obj: str, external_id: str) -> RawRecord | None: ...

    @abstractmethod
    def _find(self, obj: str, key_field: str, key: str) -> RawRecord | None: ...

    def _delete_batch(self, obj: str, external_ids: list[str]) -> list[WriteResult]:
        raise NotImplementedError(f"{self.name} does not delete records")

    def _describe(self, obj: str) -> list[FieldInfo]:
        return []

    def _probe(self, obj: str) -> list[Finding]:
        """Vendor probes of ``obj`` for ``crmbridge doctor`` (read-only calls): reachable and authenticated, the
        operations the configuration names, the largest page accepted, the change filter's boundary semantics
        found by reading, clock skew against the service, rate-limit headers. Default: none."""
        return []

    def _invalidate_token(self) -> None:  # noqa: B027 - optional hook
        """Drop the cached access token; the next call fetches a fresh one."""

    # ------------------------------------------------------------------ shared plumbing
    @final
    def _retrying(self, fn: Callable[[], T]) -> T:
        refreshed = False

        def before_retry(exc: RetryableError, attempt: int) -> None:
            nonlocal refreshed
            with self.stats._lock:
                self.stats.retries += 1
                if isinstance(exc, ThrottledError):
                    self.stats.throttled += 1
            if isinstance(exc, TokenExpiredError):
                if refreshed:
                    raise exc  # refreshed once already: a second rejection is not transient
                refreshed = True
                self.stats.token_refreshes += 1
                self._invalidate_token()

        def free(exc: BaseException) -> bool:   # the one token refresh is not one of the call's tries
            return isinstance(exc, TokenExpiredError) and not refreshed

        return call_with_retry(self.config.retry, fn, before_retry=before_retry, sleep=self._sleep, free=free)

    @final
    def _http(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One HTTP call through the gate (concurrency, rate), with timeouts, counted, and with transport
        failures translated. Status and body are for the vendor's classifier to judge."""
        import requests  # loaded already (the session is one): a dictionary look-up

        kwargs.setdefault("timeout", (self.config.connect_timeout, self.config.timeout))
        with self._gate.slot():
            try:
                resp = self.session.request(method, url, **kwargs)
            except requests.Timeout as exc:
                self.stats.count_call("timeout")
                raise TransientServerError(f"{method} timed out", vendor=self.name, where=_path(url)) from exc
            except requests.ConnectionError as exc:
                self.stats.count_call("connection")
                raise TransientServerError(f"{method} connection failed: {type(exc).__name__}",
                                           vendor=self.name, where=_path(url)) from exc
            except requests.RequestException as exc:
                self.stats.count_call("error")
                raise TransientServerError(f"{method} failed: {type(exc).__name__}", vendor=self.name,
                                           where=_path(url)) from exc
        self.stats.count_call(resp.status_code)
        return resp


def _call_failure(exc: AdapterError, obj: str, size: int) -> RecordError:
    """A record error for each record of a write call that got no usable answer (UNCERTAIN_CODES)."""
    if isinstance(exc, RetryableError):
        code, what = "unreachable", "no answer after every retry"
    else:
        code, what = "bad_response", "the answer could not be read (the write may have been applied)"
    err = RecordError(f"write of {size} {obj} record(s): {what}: {exc}", code=code)
    err.__cause__ = exc   # the call's own error, with its status, vendor code and request id
    return err


def _path(url: str) -> str:
    return urlparse(url).path or url
