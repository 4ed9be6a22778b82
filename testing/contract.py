"""The adapter contract suite: one set of tests every adapter passes against its simulator.

An adapter's test file provides a :class:`ContractHarness` and inherits the tests::

    from crmbridge.testing.contract import AdapterContract, ContractHarness

    class ZohoHarness(ContractHarness):
        ...

    class TestZohoContract(AdapterContract):
        @pytest.fixture
        def harness(self):
            with ZohoSimulator(Knobs(records=0)) as sim:
                yield ZohoHarness(sim)

The suite is vendor-neutral: it talks to the adapter only through the final methods of
:class:`~crmbridge.adapters.base.Adapter`, to the simulator only through ``inject``/``clear_faults`` and
the harness. Faults are injected with ``harness.simulator.inject(Fault.X, times=n)`` after a warm-up call,
so a token request never swallows a fault meant for a data request. Each test skips cleanly when the
harness says the system cannot do what it checks (``supports_write``, ``supports_delete``, ...).

What is checked (each check can fail):

- pagination reaches every seeded record exactly once (more than two pages), ids equal the seeded set;
- an empty object yields one empty page and stops;
- incremental extract with ``since`` loses nothing changed at or after ``since`` and, unless the adapter
  marks a full scan, returns nothing much older;
- ``get`` and ``find`` return the record asked for, and ``None`` for one that does not exist;
- repeated writes by key are idempotent (``count()`` unchanged, second write UPDATED/UNCHANGED, ids stable),
  results come back in request order across batches, a per-record rejection does not fail its batch;
- a write applied but answered too late is retried without creating a duplicate;
- a stale ``expected_version`` gives CONFLICT, never an overwrite;
- delete removes the record;
- bad credentials raise :class:`AuthenticationError` at once (no retry);
- throttling, 5xx, dropped and truncated connections are retried (``stats`` say so) and the call succeeds;
  a persistent 5xx raises :class:`TransientServerError` after ``max_attempts``; a garbage HTTP 200 raises
  :class:`BadResponseError`;
- an expired token is refreshed exactly once; a token refused again after the refresh is an error.

This module imports pytest: import it from tests only.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from crmbridge.adapters.base import Adapter, FieldInfo, Page, RawRecord, WriteItem, WriteStatus
from crmbridge.adapters.simulator import Fault, Simulator
from crmbridge.core.errors import (
    AuthenticationError,
    BadResponseError,
    RecordError,
    TokenExpiredError,
    TransientServerError,
)

__all__ = ["AdapterContract", "ContractHarness"]

_KEY_NAMESPACE = uuid.UUID("6f1c2b7e-3d4a-5b6c-8d9e-0a1b2c3d4e5f")


class ContractHarness(abc.ABC):
    """What the contract suite needs to know about one adapter and its simulator.

    Required: ``simulator``, ``object_name``, ``key_field``, ``page_size`` and the four abstract methods.
    The optional members have defaults that make the matching tests skip or check less.

    Attributes:
        simulator: the started simulator.
        object_name: the object the suite reads and writes (``Contacts``, ``AccountObj``, ``Customer``).
        key_field: the target field holding crmbridge's external key (``None`` if the system has none).
        page_size: records per read page the adapter uses (the suite seeds more than two pages).
        supports_write: the adapter writes (``False`` for read-only systems).
        supports_create: writes without an ``external_id`` create records (``False`` for update-only
            systems such as a core bank's contact write-back: the write tests then update seeded records).
        supports_delete: the adapter deletes.
        supports_versions: writes honour ``WriteItem.expected_version`` (stale → CONFLICT).
        token_auth: the adapter uses expiring access tokens (``False`` for HTTP Basic and the like: then an
            injected TOKEN_EXPIRED fault must surface as :class:`AuthenticationError`).
        modified_granularity: the precision of the system's modification times; records older than
            ``since - modified_granularity`` must not come back from an incremental extract.
    """

    simulator: Simulator
    object_name: str
    key_field: str | None
    page_size: int
    supports_write: bool = True
    supports_create: bool = True
    supports_delete: bool = True
    supports_versions: bool = False
    token_auth: bool = True
    modified_granularity: ClassVar[timedelta] = timedelta(seconds=1)

    @abc.abstractmethod
    def make_adapter(self, *, bad_credentials: bool = False) -> Adapter:
        """A new adapter for the simulator, with a fast RetryPolicy (``bad_credentials``: wrong secret)."""

    @abc.abstractmethod
    def seed(self, n: int) -> None:
        """Make the simulator hold exactly ``n`` records of ``object_name`` (and nothing else of it)."""

    @abc.abstractmethod
    def payload(self, i: int, variant: int = 0) -> dict:
        """A valid vendor payload for record ``i``; a different ``variant`` changes at least one field."""

    @abc.abstractmethod
    def count(self) -> int:
        """Number of live records of ``object_name`` in the simulator (direct access, not through HTTP)."""

    def ids(self) -> set[str] | None:
        """The external ids of the live records (direct access), or ``None`` if the harness cannot tell.

        When given, pagination is checked against the exact set; otherwise each extracted id is
        confirmed with ``get``.
        """
        return None

    def key(self, i: int) -> str:
        """crmbridge's external key for record ``i`` (a canonical party id)."""
        return str(uuid.uuid5(_KEY_NAMESPACE, f"contract-{i}"))

    def invalid_payload(self, i: int) -> dict | None:
        """A payload the system rejects for this one record (a missing mandatory field...), or ``None``."""
        return None


def _drain(adapter: Adapter, obj: str, **kw: Any) -> tuple[list[RawRecord], list[Page]]:
    pages = list(adapter.extract(obj, **kw))
    return [r for p in pages for r in p.records], pages


def _warm_up(adapter: Adapter, harness: ContractHarness) -> None:
    """One successful call, so the token (if any) is fetched before a fault is injected."""
    gen = adapter.extract(harness.object_name)
    try:
        next(gen)
    finally:
        gen.close()


class AdapterContract:
    """The contract tests. Subclass it in a ``Test...`` class and define a ``harness`` fixture."""

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture
    def adapter(self, harness: ContractHarness) -> Iterator[Adapter]:
        adapter = harness.make_adapter()
        try:
            yield adapter
        finally:
            adapter.close()

    @pytest.fixture(autouse=True)
    def _no_leftover_faults(self, harness: ContractHarness) -> Iterator[None]:
        harness.simulator.clear_faults()
        yield
        harness.simulator.clear_faults()

    @staticmethod
    def _need_write(harness: ContractHarness) -> None:
        if not harness.supports_write:
            pytest.skip("system is read-only")

    def _items(self, harness: ContractHarness, idx: range | list[int], variant: int = 0,
               ids: dict[int, str] | None = None, version: dict[int, str | None] | None = None) -> list[WriteItem]:
        return [WriteItem(key=harness.key(i), payload=harness.payload(i, variant), key_field=harness.key_field,
                          external_id=(ids or {}).get(i), expected_version=(version or {}).get(i))
                for i in idx]

    # ------------------------------------------------------------------ reading
    def test_pagination_reaches_every_record_once(self, harness: ContractHarness, adapter: Adapter) -> None:
        n = harness.page_size * 2 + 3
        harness.seed(n)
        records, pages = _drain(adapter, harness.object_name)
        got = [r.external_id for r in records]
        assert len(pages) >= 3, f"{n} records with page size {harness.page_size} came in {len(pages)} page(s)"
        assert len(got) == len(set(got)), "a record came back twice"
        assert len(got) == n == harness.count()
        assert all(r.object == harness.object_name and r.external_id for r in records)
        assert all(p.next_state is None for p in pages[-1:]), "the last page promised another"
        expected = harness.ids()
        if expected is not None:
            assert set(got) == expected
        else:
            for rid in got:
                rec = adapter.get(harness.object_name, rid)
                assert rec is not None and rec.external_id == rid, f"extracted id {rid} does not exist"

    def test_extract_empty_object(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(0)
        records, pages = _drain(adapter, harness.object_name)
        assert records == []
        assert len(pages) == 1 and pages[0].next_state is None

    def test_incremental_extract_since(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(harness.page_size * 2 + 3)
        everything, _ = _drain(adapter, harness.object_name)
        stamped = sorted((r for r in everything if r.modified_at is not None), key=lambda r: r.modified_at)
        if not stamped:
            records, pages = _drain(adapter, harness.object_name, since=datetime(2000, 1, 1, tzinfo=UTC))
            assert all(p.full_scan for p in pages), "no modification times, yet no full scan was marked"
            assert {r.external_id for r in records} == {r.external_id for r in everything}
            return
        assert all(r.modified_at.tzinfo is not None for r in stamped), "modified_at must be timezone-aware"
        cutoff = stamped[len(stamped) // 2].modified_at
        records, pages = _drain(adapter, harness.object_name, since=cutoff)
        got = {r.external_id for r in records}
        newer = {r.external_id for r in stamped if r.modified_at >= cutoff}
        assert newer <= got, f"{len(newer - got)} records changed at or after since were not returned"
        if any(p.full_scan for p in pages):
            assert got == {r.external_id for r in everything}
        else:
            too_old = {r.external_id for r in stamped if r.modified_at < cutoff - harness.modified_granularity}
            assert not (got & too_old), f"{len(got & too_old)} records older than since came back"

    def test_incremental_extract_sees_a_write(self, harness: ContractHarness, adapter: Adapter) -> None:
        self._need_write(harness)
        ids, _ = self._targets(harness, adapter, [900], seed=5)
        everything, _ = _drain(adapter, harness.object_name)
        stamps = [r.modified_at for r in everything if r.modified_at is not None]
        res = adapter.write(harness.object_name, self._items(harness, [900], variant=1, ids=ids))
        assert res[0].status in (WriteStatus.CREATED, WriteStatus.UPDATED), res[0]
        if not stamps:
            pytest.skip("system has no modification times (full scans only)")
        records, _ = _drain(adapter, harness.object_name, since=max(stamps))
        assert res[0].external_id in {r.external_id for r in records}

    def test_get_and_missing(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(3)
        records, _ = _drain(adapter, harness.object_name)
        for rec in records:
            one = adapter.get(harness.object_name, rec.external_id)
            assert one is not None and one.external_id == rec.external_id and one.object == harness.object_name
        assert adapter.get(harness.object_name, _missing_id(records)) is None

    def test_find_by_key(self, harness: ContractHarness, adapter: Adapter) -> None:
        self._need_write(harness)
        if harness.key_field is None or not harness.supports_create:
            pytest.skip("system has no key field, or cannot create records to carry keys")
        harness.seed(2)
        res = adapter.write(harness.object_name, self._items(harness, [0, 1]))
        assert [r.status for r in res] == [WriteStatus.CREATED] * 2, res
        for i, r in enumerate(res):
            found = adapter.find(harness.object_name, harness.key_field, harness.key(i))
            assert found is not None and found.external_id == r.external_id
        assert adapter.find(harness.object_name, harness.key_field, harness.key(424242)) is None

    def test_describe(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(1)
        fields = adapter.describe(harness.object_name)
        assert isinstance(fields, list) and all(isinstance(f, FieldInfo) and f.name for f in fields)

    # ------------------------------------------------------------------ writing
    def _targets(self, harness: ContractHarness, adapter: Adapter, idx: list[int], *,
                 seed: int = 3) -> tuple[dict[int, str], int]:
        """Where writes of records ``idx`` go: new records (``{}``) when the system creates, else existing
        records (seeded here) by id. Also returns ``count()`` before the writes."""
        if harness.supports_create:
            harness.seed(seed)
            return {}, harness.count()
        harness.seed(max(seed, len(idx)))
        existing = sorted(r.external_id for r in _drain(adapter, harness.object_name)[0])
        return {i: existing[n] for n, i in enumerate(idx)}, harness.count()

    @staticmethod
    def _first_write_ok(harness: ContractHarness) -> tuple[WriteStatus, ...]:
        if harness.supports_create:
            return (WriteStatus.CREATED,)
        return (WriteStatus.UPDATED, WriteStatus.UNCHANGED)

    def test_repeated_writes_are_idempotent(self, harness: ContractHarness, adapter: Adapter) -> None:
        self._need_write(harness)
        n = adapter.max_batch_size + 2 if adapter.max_batch_size <= 100 else 5
        ids, before = self._targets(harness, adapter, list(range(n)))
        grows = n if harness.supports_create else 0
        items = self._items(harness, range(n), ids=ids)
        first = adapter.write(harness.object_name, items)
        assert [r.key for r in first] == [it.key for it in items], "results not in request order"
        assert all(r.status in self._first_write_ok(harness) for r in first), first
        assert all(r.external_id for r in first)
        if ids:
            assert [r.external_id for r in first] == [ids[i] for i in range(n)]
        assert harness.count() == before + grows
        second = adapter.write(harness.object_name, self._items(harness, range(n), ids=ids))
        assert harness.count() == before + grows, "a repeated write created duplicates"
        assert [r.key for r in second] == [it.key for it in items]
        assert all(r.status in (WriteStatus.UPDATED, WriteStatus.UNCHANGED) for r in second), second
        assert [r.external_id for r in second] == [r.external_id for r in first]
        third = adapter.write(harness.object_name, self._items(harness, range(2), variant=1, ids=ids))
        assert [r.status for r in third] == [WriteStatus.UPDATED] * 2, third
        assert harness.count() == before + grows

    def test_write_by_external_id_updates(self, harness: ContractHarness, adapter: Adapter) -> None:
        self._need_write(harness)
        ids, before = self._targets(harness, adapter, [7], seed=0)
        first = adapter.write(harness.object_name, self._items(harness, [7], ids=ids))
        assert first[0].status in self._first_write_ok(harness) and first[0].external_id, first
        again = adapter.write(harness.object_name, self._items(harness, [7], variant=1, ids={7: first[0].external_id}))
        assert again[0].status is WriteStatus.UPDATED and again[0].external_id == first[0].external_id, again
        assert harness.count() == before + (1 if harness.supports_create else 0)

    def test_one_rejected_record_does_not_fail_its_batch(self, harness: ContractHarness,
                                                         adapter: Adapter) -> None:
        self._need_write(harness)
        bad = harness.invalid_payload(1)
        if bad is None:
            pytest.skip("harness has no invalid payload")
        ids, before = self._targets(harness, adapter, [0, 1, 2], seed=0)
        items = self._items(harness, [0, 1, 2], ids=ids)
        items[1] = WriteItem(key=harness.key(1), payload=bad, key_field=harness.key_field, external_id=ids.get(1))
        res = adapter.write(harness.object_name, items)
        assert [r.key for r in res] == [it.key for it in items]
        ok = self._first_write_ok(harness)
        assert res[0].status in ok and res[1].status is WriteStatus.FAILED and res[2].status in ok, res
        assert isinstance(res[1].error, RecordError) and str(res[1].error)
        assert harness.count() == before + (2 if harness.supports_create else 0)

    def test_timeout_after_apply_creates_no_duplicate(self, harness: ContractHarness, adapter: Adapter) -> None:
        self._need_write(harness)
        if harness.supports_create and harness.key_field is None:
            pytest.skip("system has no key field to make a retried create idempotent")
        ids, before = self._targets(harness, adapter, [3], seed=0)
        _warm_up(adapter, harness)
        adapter.config.timeout = 0.3
        knobs = harness.simulator.knobs
        saved, knobs.timeout_delay = knobs.timeout_delay, 0.8
        try:
            harness.simulator.inject(Fault.TIMEOUT_AFTER_APPLY, times=1)
            res = adapter.write(harness.object_name, self._items(harness, [3], variant=1, ids=ids))
        finally:
            knobs.timeout_delay = saved
        assert res[0].status in (WriteStatus.CREATED, WriteStatus.UPDATED, WriteStatus.UNCHANGED), res
        assert harness.count() == before + (1 if harness.supports_create else 0), \
            "the retried write created a duplicate"
        assert adapter.stats.retries >= 1

    def test_stale_version_is_a_conflict(self, harness: ContractHarness, adapter: Adapter) -> None:
        self._need_write(harness)
        if not harness.supports_versions:
            pytest.skip("system has no record versions")
        ids, before = self._targets(harness, adapter, [5], seed=0)
        created = adapter.write(harness.object_name, self._items(harness, [5], ids=ids))[0]
        rid = created.external_id
        assert rid, created
        current = adapter.get(harness.object_name, rid)
        assert current is not None and current.version is not None
        v1 = current.version
        upd = adapter.write(harness.object_name, self._items(harness, [5], 1, ids={5: rid}, version={5: v1}))[0]
        assert upd.status is WriteStatus.UPDATED, upd
        after = adapter.get(harness.object_name, rid)
        assert after is not None and after.version != v1
        stale = adapter.write(harness.object_name, self._items(harness, [5], 2, ids={5: rid}, version={5: v1}))[0]
        assert stale.status is WriteStatus.CONFLICT, stale
        final = adapter.get(harness.object_name, rid)
        assert final is not None and final.version == after.version, "a stale write overwrote the record"
        assert final.data == after.data, "a stale write changed the record"
        assert harness.count() == before + (1 if harness.supports_create else 0)

    def test_delete(self, harness: ContractHarness, adapter: Adapter) -> None:
        if not harness.supports_delete:
            pytest.skip("system does not delete")
        harness.seed(3)
        records, _ = _drain(adapter, harness.object_name)
        victim = records[1].external_id
        res = adapter.delete(harness.object_name, [victim])
        assert [r.status for r in res] == [WriteStatus.DELETED]
        assert harness.count() == 2
        gone = adapter.get(harness.object_name, victim)
        assert gone is None or gone.deleted

    # ------------------------------------------------------------------ failures
    def test_bad_credentials_raise_authentication_error_without_retry(self, harness: ContractHarness) -> None:
        harness.seed(1)
        adapter = harness.make_adapter(bad_credentials=True)
        try:
            with pytest.raises(AuthenticationError):
                _drain(adapter, harness.object_name)
            assert adapter.stats.retries == 0
            assert adapter.stats.api_calls <= 2
        finally:
            adapter.close()

    def test_throttling_is_retried(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(harness.page_size + 1)
        _warm_up(adapter, harness)
        harness.simulator.inject(Fault.THROTTLE, times=2)
        records, _ = _drain(adapter, harness.object_name)
        assert len({r.external_id for r in records}) == harness.page_size + 1
        assert adapter.stats.throttled >= 2 and adapter.stats.retries >= 2

    def test_server_errors_are_retried(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(harness.page_size + 1)
        _warm_up(adapter, harness)
        harness.simulator.inject(Fault.SERVER_ERROR, times=2)
        records, _ = _drain(adapter, harness.object_name)
        assert len({r.external_id for r in records}) == harness.page_size + 1
        assert adapter.stats.retries >= 2 and adapter.stats.throttled == 0

    def test_persistent_server_error_raises(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(1)
        _warm_up(adapter, harness)
        attempts = adapter.config.retry.max_attempts
        harness.simulator.inject(Fault.SERVER_ERROR, times=attempts + 2)
        with pytest.raises(TransientServerError):
            _drain(adapter, harness.object_name)
        assert adapter.stats.retries == attempts - 1

    def test_garbage_response_raises_bad_response(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(1)
        _warm_up(adapter, harness)
        harness.simulator.inject(Fault.GARBAGE, times=1)
        with pytest.raises(BadResponseError):
            _drain(adapter, harness.object_name)

    def test_dropped_connection_is_retried(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(3)
        _warm_up(adapter, harness)
        harness.simulator.inject(Fault.DROP, times=2)
        records, _ = _drain(adapter, harness.object_name)
        assert len(records) == 3 and adapter.stats.retries >= 2

    def test_truncated_response_is_retried(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(3)
        _warm_up(adapter, harness)
        harness.simulator.inject(Fault.TRUNCATED, times=1)
        records, _ = _drain(adapter, harness.object_name)
        assert len(records) == 3 and adapter.stats.retries >= 1

    def test_expired_token_is_refreshed_once(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(3)
        _warm_up(adapter, harness)
        harness.simulator.inject(Fault.TOKEN_EXPIRED, times=1)
        if not harness.token_auth:
            with pytest.raises(AuthenticationError):
                _drain(adapter, harness.object_name)
            assert adapter.stats.retries == 0
            return
        records, _ = _drain(adapter, harness.object_name)
        assert len(records) == 3
        assert adapter.stats.token_refreshes == 1

    def test_token_refused_after_refresh_is_an_error(self, harness: ContractHarness, adapter: Adapter) -> None:
        if not harness.token_auth:
            pytest.skip("system does not use access tokens")
        harness.seed(3)
        _warm_up(adapter, harness)
        harness.simulator.inject(Fault.TOKEN_EXPIRED, times=adapter.config.retry.max_attempts + 3)
        with pytest.raises((TokenExpiredError, AuthenticationError)):
            _drain(adapter, harness.object_name)
        assert adapter.stats.token_refreshes == 1

    def test_stats_count_calls(self, harness: ContractHarness, adapter: Adapter) -> None:
        harness.seed(harness.page_size * 2 + 1)
        _drain(adapter, harness.object_name)
        assert adapter.stats.api_calls >= 3
        assert sum(v for k, v in adapter.stats.by_status.items() if k.startswith("2")) >= 3


def _missing_id(records: list[RawRecord]) -> str:
    """An id shaped like the system's own ids but not among them (numeric ids stay numeric)."""
    known = {r.external_id for r in records}
    sample = records[0].external_id if records else "1"
    if sample.isdigit():
        candidate = 987654321
        while str(candidate) in known:
            candidate += 1
        return str(candidate)
    prefix = sample.rstrip("0123456789")
    candidate_s = f"{prefix}9999999"
    return candidate_s if candidate_s not in known else f"{prefix}9999998"
