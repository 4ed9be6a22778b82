"""The state store's repository API, on SQLite and PostgreSQL (real databases, migrated with Alembic)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crmbridge.sync.state.migrate import upgrade
from crmbridge.sync.state.store import (
    DeadLetterStatus,
    RunStatus,
    StateStore,
    conflicts,
    cursors,
    dead_letters,
    identity_index,
    job_leases,
    runs,
    snapshots,
    write_intents,
    xref,
)

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


class Clock:
    """A settable clock (lease expiry without sleeping)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


OWN_TABLES = [runs, cursors, xref, identity_index, snapshots, dead_letters, conflicts, job_leases, write_intents]


@pytest.fixture
def store(migrated_url: str, clock: Clock) -> Iterator[StateStore]:
    """A store over empty tables."""
    s = StateStore.from_url(migrated_url, clock=clock)
    with s.engine.begin() as conn:
        for table in reversed(OWN_TABLES):          # children (dead letters, conflicts, intents) before runs
            conn.execute(table.delete())
    yield s
    s.dispose()


def _count(store: StateStore, table) -> int:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return len(conn.execute(select(table)).all())


# -------------------------------------------------------------------------------------------------- runs
def test_runs_start_finish_list(store: StateStore, clock: Clock) -> None:
    with store.transaction() as tx:
        first = tx.start_run("job_a", actor="scheduler")
        second = tx.start_run("job_b", dry_run=True)
    clock.advance(30)
    with store.transaction() as tx:
        tx.finish_run(first, RunStatus.PARTIAL, counts={"created": 3, "failed": 1}, error_summary="1 dead letter")
        run = tx.get_run(first)
        assert run is not None
        assert run["status"] == "partial" and run["counts"] == {"created": 3, "failed": 1}
        assert run["started_at"] == T0 and run["finished_at"] == T0 + timedelta(seconds=30)
        assert run["started_at"].tzinfo is not None
        assert run["pid"] and run["host"]
        assert tx.get_run(second)["dry_run"] is True  # type: ignore[index]
        assert [r["id"] for r in tx.list_runs("job_a")] == [first]
        assert {r["id"] for r in tx.list_runs()} == {first, second}
        with pytest.raises(ValueError):
            tx.finish_run(second, RunStatus.RUNNING)
        with pytest.raises(ValueError):
            tx.finish_run(second, "bogus")
        with pytest.raises(KeyError):
            tx.finish_run(99999, RunStatus.FAILED)


# -------------------------------------------------------------------------------------------------- cursors
def test_cursor_get_put_move(store: StateStore, clock: Clock) -> None:
    with store.transaction() as tx:
        assert tx.get_cursor("j", "Customer") is None
        tx.put_cursor("j", "Customer", field="LAST_MOD", value="2024-05-01T08:00:00Z", overlap_seconds=60,
                      boundary={"C001": "ab12", "C002": "cd34"})
    clock.advance(5)
    with store.transaction() as tx:
        c = tx.get_cursor("j", "Customer")
        assert c is not None and c.value == "2024-05-01T08:00:00Z" and c.overlap_seconds == 60
        assert c.boundary == {"C001": "ab12", "C002": "cd34"} and c.updated_at == T0
        tx.put_cursor("j", "Customer", field="LAST_MOD", value="2024-05-01T09:00:00.123Z")
        tx.put_cursor("j", "Other", field="ts", value=None)
    with store.transaction() as tx:
        c = tx.get_cursor("j", "Customer")
        assert c is not None and c.value == "2024-05-01T09:00:00.123Z" and c.boundary == {}
        assert c.updated_at == T0 + timedelta(seconds=5)
        assert tx.get_cursor("j", "Other").value is None  # type: ignore[union-attr]
    assert _count(store, cursors) == 2


# -------------------------------------------------------------------------------------------------- xref / identity
def test_xref_put_get_relink_lookup(store: StateStore) -> None:
    with store.transaction() as tx:
        assert tx.get_xref("zoho_cn", "Contacts", "ro-z1") is None
        tx.put_xref("zoho_cn", "Contacts", "ro-z1", "p-1")
        tx.put_xref("corebank", "Customer", "000123", "p-1")
        tx.put_xref("zoho_cn", "Contacts", "ro-z2", "p-2")
        tx.put_xref("zoho_cn", "Contacts", "ro-z1", "p-1")          # repeated: no duplicate
    assert _count(store, xref) == 3
    with store.transaction() as tx:
        assert tx.get_xref("zoho_cn", "Contacts", "ro-z1") == "p-1"
        assert tx.get_xref("zoho_cn", "Accounts", "z1") is None  # object is part of the key
        assert tx.xrefs_for_party("p-1") == [("zoho_cn", "Contacts", "ro-z1"), ("corebank", "Customer", "000123")]
        assert tx.xrefs_for_party("p-1", system="corebank") == [("corebank", "Customer", "000123")]
        tx.put_xref("zoho_cn", "Contacts", "ro-z1", "p-9")          # re-link (merge)
        assert tx.get_xref("zoho_cn", "Contacts", "ro-z1") == "p-9"
        assert tx.delete_xref("zoho_cn", "Contacts", "ro-z2") is True
        assert tx.delete_xref("zoho_cn", "Contacts", "ro-z2") is False


def _counting(store: StateStore) -> list[str]:
    """The SELECT statements run from now on (a prefetched lookup must not run one)."""
    from sqlalchemy import event

    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _cur, stmt, *_a: seen.append(stmt) if stmt.lstrip().upper().startswith("SELECT") else None)
    return seen


def test_prefetched_lookups_answer_without_queries_and_stay_true_after_writes(store: StateStore) -> None:
    with store.transaction() as tx:
        for i in range(5):
            tx.put_xref("corebank", "Customer", f"c{i}", f"p-{i}")
            tx.put_xref("zoho_cn", "Contacts", f"z{i}", f"p-{i}")
            tx.put_snapshot(f"p-{i}", "zoho_cn", "Contacts", content_hash=f"h{i}", blob=b"x")
    seen = _counting(store)
    with store.transaction() as tx:
        tx.prefetch_xrefs("corebank", "Customer", [f"c{i}" for i in range(7)])
        tx.prefetch_parties([f"p-{i}" for i in range(7)], snapshots_of=[("zoho_cn", "Contacts")],
                            xrefs_of=[("zoho_cn", "Contacts")])
        tx.assume_new_party("p-new", snapshots_of=[("zoho_cn", "Contacts")], xrefs_of=[("zoho_cn", "Contacts")])
        before = len(seen)
        assert [tx.get_xref("corebank", "Customer", f"c{i}") for i in range(7)] == \
            [f"p-{i}" for i in range(5)] + [None, None]
        assert [s.content_hash if s else None for s in (tx.get_snapshot(f"p-{i}", "zoho_cn", "Contacts")
                                                         for i in range(7))] == [f"h{i}" for i in range(5)] + [None] * 2
        assert tx.xrefs_for_party("p-3", "zoho_cn", "Contacts") == [("zoho_cn", "Contacts", "z3")]
        assert tx.xrefs_for_party("p-6", "zoho_cn", "Contacts") == []
        assert tx.get_snapshot("p-new", "zoho_cn", "Contacts") is None
        assert tx.xrefs_for_party("p-new", "zoho_cn", "Contacts") == []
        assert len(seen) == before, seen[before:]
        # writes through the same transaction keep every answer true
        tx.put_xref("corebank", "Customer", "c5", "p-5")
        tx.put_xref("zoho_cn", "Contacts", "z3", "p-4")          # re-link z3 from p-3 to p-4
        tx.put_xref("zoho_cn", "Contacts", "z-new", "p-new")
        tx.put_snapshot("p-1", "zoho_cn", "Contacts", content_hash="h1b", blob=b"y")
        tx.delete_xref("zoho_cn", "Contacts", "z0")
        assert tx.get_xref("corebank", "Customer", "c5") == "p-5"
        assert tx.xrefs_for_party("p-3", "zoho_cn", "Contacts") == []
        assert tx.xrefs_for_party("p-4", "zoho_cn", "Contacts") == [("zoho_cn", "Contacts", "z3"),
                                                                    ("zoho_cn", "Contacts", "z4")]
        assert tx.xrefs_for_party("p-new", "zoho_cn", "Contacts") == [("zoho_cn", "Contacts", "z-new")]
        assert tx.xrefs_for_party("p-0", "zoho_cn", "Contacts") == []
        assert tx.get_xref("zoho_cn", "Contacts", "z0") is None
        snap = tx.get_snapshot("p-1", "zoho_cn", "Contacts")
        assert snap is not None and snap.content_hash == "h1b"
    with store.transaction() as tx:   # what the database holds agrees
        assert sorted(tx.xrefs_for_party("p-4", "zoho_cn", "Contacts")) == [("zoho_cn", "Contacts", "z3"),
                                                                            ("zoho_cn", "Contacts", "z4")]
        assert tx.get_xref("corebank", "Customer", "c5") == "p-5"


def test_identity_index(store: StateStore) -> None:
    with store.transaction() as tx:
        assert tx.lookup_identity("CN_RIC", "bidx-1") == []
        tx.add_identity("CN_RIC", "bidx-1", "p-1")
        tx.add_identity("CN_RIC", "bidx-1", "p-1")               # idempotent
        tx.add_identity("mobile+name", "bidx-2", "p-1")
        tx.add_identity("CN_RIC", "bidx-1", "p-2", key_version=2)
        assert tx.lookup_identity("CN_RIC", "bidx-1") == ["p-1", "p-2"]   # ambiguous: both returned
        assert tx.lookup_identity("CN_USCC", "bidx-1") == []
        assert tx.remove_identities("p-1", scheme="CN_RIC") == 1
        assert tx.lookup_identity("CN_RIC", "bidx-1") == ["p-2"]
        assert tx.lookup_identity("mobile+name", "bidx-2") == ["p-1"]


# -------------------------------------------------------------------------------------------------- snapshots
def test_snapshot_put_get_update(store: StateStore, clock: Clock) -> None:
    blob = bytes(range(256))
    with store.transaction() as tx:
        assert tx.get_snapshot("p-1", "zoho_cn", "Contacts") is None
        tx.put_snapshot("p-1", "zoho_cn", "Contacts", content_hash="h1", blob=blob, written_hash="w1", version="3")
    clock.advance(60)
    with store.transaction() as tx:
        s = tx.get_snapshot("p-1", "zoho_cn", "Contacts")
        assert s is not None and s.blob == blob and s.content_hash == "h1" and s.written_hash == "w1"
        assert s.version == "3" and s.synced_at == T0
        tx.put_snapshot("p-1", "zoho_cn", "Contacts", content_hash="h2", blob=b"\x00new")
        assert tx.get_snapshot("p-1", "fxiaoke", "Contacts") is None
    with store.transaction() as tx:
        s = tx.get_snapshot("p-1", "zoho_cn", "Contacts")
        assert s is not None and (s.content_hash, s.blob, s.written_hash) == ("h2", b"\x00new", None)
        assert s.synced_at == T0 + timedelta(seconds=60)


# -------------------------------------------------------------------------------------------------- dead letters
def test_dead_letters_add_dedupe_list_mark(store: StateStore, clock: Clock) -> None:
    with store.transaction() as tx:
        run_id = tx.start_run("j")
        a = tx.add_dead_letter("j", run_id=run_id, stage="map_in", reason_code="invalid_checksum",
                               message="identifiers[0]: bad check digit 1*************002X",
                               source_system="corebank", source_object="Customer", external_id="C1",
                               payload=b"cipher", next_attempt_at=T0 + timedelta(minutes=5))
        b = tx.add_dead_letter("j", run_id=run_id, stage="load", reason_code="MANDATORY_NOT_FOUND",
                               message="Last_Name missing", source_system="corebank", source_object="Customer",
                               external_id="C2")
        again = tx.add_dead_letter("j", run_id=run_id, stage="map_in", reason_code="invalid_checksum",
                                   message="still bad", source_system="corebank", source_object="Customer",
                                   external_id="C1")
        anon1 = tx.add_dead_letter("j", stage="extract", reason_code="garbage", message="no id")
        anon2 = tx.add_dead_letter("j", stage="extract", reason_code="garbage", message="no id")
    assert again == a and a != b and anon1 != anon2
    with store.transaction() as tx:
        dl = tx.get_dead_letter(a)
        assert dl is not None and dl["attempts"] == 2 and dl["message"] == "still bad"
        assert dl["payload"] == b"cipher" and dl["status"] == "open"
        assert [d["id"] for d in tx.list_dead_letters("j")] == [a, b, anon1, anon2]
        assert [d["id"] for d in tx.list_dead_letters("j", due_before=T0)] == [a, b, anon1, anon2]
        tx.mark_dead_letter(b, DeadLetterStatus.RETRYING, next_attempt_at=T0 + timedelta(hours=1),
                            bump_attempts=True)
        assert [d["id"] for d in tx.list_dead_letters("j", due_before=T0)] == [a, anon1, anon2]
        assert [d["id"] for d in tx.list_dead_letters(status="retrying")] == [b]
        tx.mark_dead_letter(a, "resolved")
        assert tx.get_dead_letter(b)["attempts"] == 2  # type: ignore[index]
        assert [d["id"] for d in tx.list_dead_letters("j", status=["open", "retrying"])] == [b, anon1, anon2]
        assert tx.list_dead_letters("other") == []
        with pytest.raises(KeyError):
            tx.mark_dead_letter(424242, "resolved")
        with pytest.raises(ValueError):
            tx.mark_dead_letter(a, "lost")
    with store.transaction() as tx:    # a resolved letter is history: the same record failing again opens a new one
        c = tx.add_dead_letter("j", stage="map_in", reason_code="x", message="m", source_system="corebank",
                               source_object="Customer", external_id="C1")
        assert c not in (a, b)


# -------------------------------------------------------------------------------------------------- conflicts
def test_conflicts_add_list_resolve(store: StateStore, clock: Clock) -> None:
    with store.transaction() as tx:
        c1 = tx.add_conflict("two_way", "p-1", ["name.legal_zh", "contact_points[0].value"], base_value=b"b",
                             source_value=b"s", target_value=b"t")
        c2 = tx.add_conflict("two_way", "p-2", ["segment.code"])
    clock.advance(10)
    with store.transaction() as tx:
        assert [c["id"] for c in tx.list_conflicts("two_way")] == [c1, c2]
        assert [c["id"] for c in tx.list_conflicts(party_id="p-2")] == [c2]
        got = tx.get_conflict(c1)
        assert got is not None and got["field_paths"] == ["contact_points[0].value", "name.legal_zh"]
        assert (got["base_value"], got["source_value"], got["target_value"]) == (b"b", b"s", b"t")
        assert tx.resolve_conflict(c1, "source", actor="ops.li") is True
        assert tx.resolve_conflict(c1, "target", actor="ops.wang") is False     # already resolved
        done = tx.get_conflict(c1)
        assert done is not None and (done["status"], done["resolution"], done["actor"]) == (
            "resolved", "source", "ops.li")
        assert done["resolved_at"] == T0 + timedelta(seconds=10)
        assert [c["id"] for c in tx.list_conflicts("two_way")] == [c2]
        assert [c["id"] for c in tx.list_conflicts("two_way", status=None)] == [c1, c2]


# -------------------------------------------------------------------------------------------------- write intents
def test_write_intents(store: StateStore) -> None:
    with store.transaction() as tx:
        i1 = tx.add_write_intent("j", target_system="zoho_cn", target_object="Contacts", key="p-1",
                                 operation="create", payload_hash="ph1")
        i2 = tx.add_write_intent("j", target_system="fxiaoke", target_object="AccountObj", key="p-2",
                                 operation="update", payload_hash="ph2")
        with pytest.raises(ValueError):
            tx.add_write_intent("j", target_system="x", target_object="y", key="k", operation="upsert",
                                payload_hash="h")
    with store.transaction() as tx:
        assert [i["id"] for i in tx.pending_write_intents("j")] == [i1, i2]
        assert [i["id"] for i in tx.pending_write_intents("j", target_system="fxiaoke")] == [i2]
        tx.complete_write_intent(i1, external_id="4876876000000123")
        tx.complete_write_intent(i2, failed=True)
        assert tx.pending_write_intents("j") == []
        with pytest.raises(KeyError):
            tx.complete_write_intent(777)


# -------------------------------------------------------------------------------------------------- transactions
def test_exception_inside_transaction_leaves_nothing(store: StateStore) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction() as tx:
            tx.start_run("j")
            tx.put_cursor("j", "Customer", field="ts", value="2024-01-01T00:00:00Z")
            tx.put_xref("zoho_cn", "Contacts", "ro-z1", "p-1")
            tx.put_snapshot("p-1", "zoho_cn", "Contacts", content_hash="h", blob=b"x")
            raise RuntimeError("boom")
    assert store.table_counts() == {t: 0 for t in store.table_counts()}
    with store.transaction() as tx:
        tx.put_xref("zoho_cn", "Contacts", "ro-z1", "p-1")
    assert _count(store, xref) == 1


def test_naive_datetime_refused(store: StateStore) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        with store.transaction() as tx:
            tx.add_dead_letter("j", stage="s", reason_code="r", message="m",
                               next_attempt_at=datetime(2026, 1, 1))  # noqa: DTZ001
    assert _count(store, runs) == 0


# -------------------------------------------------------------------------------------------------- leases
def test_lease_exclusive_renew_heartbeat_release(store: StateStore, clock: Clock) -> None:
    assert store.acquire_lease("j", "host-a:1", ttl_seconds=60) is True
    assert store.acquire_lease("j", "host-b:2", ttl_seconds=60) is False
    assert store.acquire_lease("other", "host-b:2", ttl_seconds=60) is True   # leases are per job
    clock.advance(30)
    assert store.acquire_lease("j", "host-a:1", ttl_seconds=60) is True       # renewal by the holder
    assert store.heartbeat_lease("j", "host-a:1", ttl_seconds=60) is True
    assert store.heartbeat_lease("j", "host-b:2", ttl_seconds=60) is False
    held = store.lease_holder("j")
    assert held is not None and held["holder"] == "host-a:1"
    assert held["expires_at"] == T0 + timedelta(seconds=90)
    assert store.release_lease("j", "host-b:2") is False
    assert store.release_lease("j", "host-a:1") is True
    assert store.lease_holder("j") is None
    assert store.acquire_lease("j", "host-b:2", ttl_seconds=60) is True


def test_expired_lease_is_taken_over(store: StateStore, clock: Clock) -> None:
    assert store.acquire_lease("j", "crashed", ttl_seconds=60) is True
    clock.advance(59)
    assert store.acquire_lease("j", "new", ttl_seconds=60) is False
    clock.advance(2)
    assert store.lease_holder("j") is None
    assert store.heartbeat_lease("j", "crashed", ttl_seconds=60) is False    # too late: it lost the lease
    assert store.acquire_lease("j", "new", ttl_seconds=60) is True
    assert store.lease_holder("j")["holder"] == "new"  # type: ignore[index]
    assert store.acquire_lease("j", "crashed", ttl_seconds=60) is False


def _race(url: str, clock: Clock, n: int, job: str) -> list[str]:
    """``n`` threads, each with its own engine (own connections), try to take ``job`` at the same moment."""
    stores = [StateStore.from_url(url, clock=clock) for _ in range(n)]
    for s in stores:                                   # open a connection each before the start line
        with s.engine.connect():
            pass
    barrier = threading.Barrier(n)
    winners: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def contender(i: int) -> None:
        try:
            barrier.wait()
            if stores[i].acquire_lease(job, f"worker-{i}", ttl_seconds=60):
                with lock:
                    winners.append(f"worker-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in stores:
        s.dispose()
    assert errors == []
    return winners


@pytest.mark.parametrize("rounds", [3])
def test_lease_race_exactly_one_wins(store: StateStore, migrated_url: str, clock: Clock, rounds: int) -> None:
    db_url = migrated_url
    for r in range(rounds):
        winners = _race(db_url, clock, 8, f"fresh-{r}")       # nobody holds it: INSERT race
        assert len(winners) == 1
    for r in range(rounds):
        job = f"expired-{r}"
        assert store.acquire_lease(job, "crashed", ttl_seconds=1)
        clock.advance(5)                                       # expired: conditional UPDATE race
        winners = _race(db_url, clock, 8, job)
        assert len(winners) == 1
        assert store.lease_holder(job)["holder"] == winners[0]  # type: ignore[index]


def test_concurrent_read_then_write_transactions(store: StateStore, migrated_url: str) -> None:
    """Read-modify-write batches from several processes' worth of connections neither fail nor lose updates."""
    stores = [StateStore.from_url(migrated_url) for _ in range(4)]
    errors: list[BaseException] = []

    def worker(s: StateStore, i: int) -> None:
        try:
            for k in range(10):
                with s.transaction() as tx:
                    tx.get_cursor("shared", "Customer")
                    tx.put_xref("sys", "Obj", f"{i}-{k}", f"p-{i}")
                    tx.put_cursor("shared", "Customer", field="ts", value=f"{i}-{k}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert errors == []
        assert stores[0].table_counts()["xref"] == 40
    finally:
        for s in stores:
            s.dispose()


def test_a_read_only_unit_of_work_never_commits(migrated_url: str) -> None:
    """What a dry run's unit of work writes is gone when it ends; an ordinary unit of work commits."""
    store = StateStore.from_url(migrated_url)
    with store.transaction(read_only=True) as tx:
        tx.put_xref("zoho", "Contacts", "ro-z1", "ro-p1")
        assert tx.get_xref("zoho", "Contacts", "ro-z1") == "ro-p1"     # visible inside the unit of work
    with store.transaction() as tx:
        assert tx.get_xref("zoho", "Contacts", "ro-z1") is None     # never committed
        tx.put_xref("zoho", "Contacts", "ro-z2", "p2")
    with store.transaction() as tx:
        assert tx.get_xref("zoho", "Contacts", "ro-z2") == "p2"     # an ordinary one does
    store.dispose()


# ------------------------------------------------------------------------------ units of work that cannot write
def test_a_unit_of_work_that_refuses_writes_is_refused_by_the_database(migrated_url: str) -> None:
    """``refuse_writes=True``: the database itself refuses a write (SQLite ``query_only``, PostgreSQL ``READ
    ONLY``), nothing is written, and the pooled connection writes again for the next unit of work."""
    from crmbridge.sync.state.store import ReadOnlyTransactionError

    store = StateStore.from_url(migrated_url)
    try:
        with store.transaction() as tx:
            tx.put_xref("zoho", "Contacts", "rw-z0", "rw-p0")
        with pytest.raises(ReadOnlyTransactionError, match="read-only unit of work"), \
                store.transaction(refuse_writes=True) as tx:
            assert tx.read_only
            assert tx.get_xref("zoho", "Contacts", "rw-z0") == "rw-p0"     # reading is allowed
            tx.put_xref("zoho", "Contacts", "rw-z1", "rw-p1")
        for _ in range(3):   # every pooled connection is back to normal
            with store.transaction() as tx:
                assert tx.get_xref("zoho", "Contacts", "rw-z1") is None    # the refused write left nothing
                assert not tx.read_only
                tx.put_xref("zoho", "Contacts", f"rw-z2-{_}", "rw-p2")
        with store.transaction(refuse_writes=True) as tx:
            assert tx.get_xref("zoho", "Contacts", "rw-z2-2") == "rw-p2"
    finally:
        store.dispose()


def test_a_reading_unit_of_work_does_not_wait_for_a_writer_on_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A report (``refuse_writes``) reads while a sync holds SQLite's write lock (no BEGIN IMMEDIATE for it)."""
    url = f"sqlite:///{tmp_path / 'state.db'}?timeout=1"
    upgrade(url)
    writer, reader = StateStore.from_url(url), StateStore.from_url(url)
    try:
        with writer.transaction() as w:
            w.put_xref("zoho", "Contacts", "lock-z1", "lock-p1")      # the write lock is held ...
            with reader.transaction(refuse_writes=True) as r:          # ... and a report still reads (WAL)
                assert r.get_xref("zoho", "Contacts", "lock-z1") is None
        with reader.transaction(refuse_writes=True) as r:
            assert r.get_xref("zoho", "Contacts", "lock-z1") == "lock-p1"
    finally:
        writer.dispose()
        reader.dispose()


# ------------------------------------------------------------------------------ repository methods
def test_run_queries_by_time_and_status(migrated_url: str, clock: Clock) -> None:
    store = StateStore.from_url(migrated_url, clock=clock)
    job = f"q-{uuid.uuid4().hex[:6]}"
    try:
        with store.transaction() as tx:
            first = tx.start_run(job)
            tx.finish_run(first, RunStatus.SUCCEEDED)
            clock.advance(60)
            second = tx.start_run(job)
            tx.finish_run(second, RunStatus.REFUSED)
        with store.transaction(refuse_writes=True) as tx:
            assert [r["id"] for r in tx.list_runs(job)] == [second, first]
            assert [r["id"] for r in tx.list_runs(job, since=clock.now - timedelta(seconds=1))] == [second]
            assert [r["id"] for r in tx.list_runs(job, exclude_status=[RunStatus.REFUSED.value])] == [first]
    finally:
        store.dispose()


def test_erasure_support_methods(migrated_url: str) -> None:
    """What erasure needs from the store: a party's identities, snapshots and dead letters, and deleting them."""
    store = StateStore.from_url(migrated_url)
    pid, other = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        with store.transaction() as tx:
            tx.put_xref("core", "Customer", f"c-{pid}", pid)
            tx.put_xref("zoho", "Contacts", f"z-{pid}", pid)
            tx.add_identity("CN_RIC", f"b1:{pid[:8]}", pid)
            tx.put_snapshot(pid, "zoho", "Contacts", content_hash="h", blob=b"x")
            tx.add_dead_letter("job", stage="map", reason_code="r", message="m", source_system="core",
                               source_object="Customer", external_id=f"c-{pid}", payload=None)
            assert {"xref", "snapshots", "erasures"} <= tx.table_names()
            assert tx.identities_of(pid) == [("CN_RIC", f"b1:{pid[:8]}")]
            assert [s["system"] for s in tx.snapshots_of_party(pid)] == ["zoho"]
            assert tx.open_counts("job")[0] >= 1
            assert tx.delete_dead_letters_for([("core", "Customer", f"c-{pid}")]) == 1
            assert tx.delete_party_rows("snapshots", "party_id", pid) == 1
            assert not tx.delete_xref("core", "Customer", f"c-{pid}", party_id=other)   # links another party
            assert tx.get_xref("core", "Customer", f"c-{pid}") == pid
            assert tx.delete_xref("core", "Customer", f"c-{pid}", party_id=pid)
            assert tx.parties_in("zoho", limit=1000).count(pid) == 1
            assert tx.delete_xrefs_of_party(pid) == 1
            assert tx.xrefs_for_party(pid) == []
            eid = tx.add_erasure(pid, reason="test", actor="t", identities=[("CN_RIC", f"b1:{pid[:8]}")])
            assert tx.erased_parties_by_identity("CN_RIC", f"b1:{pid[:8]}") == [pid]
            assert eid
    finally:
        store.dispose()


def test_keyset_scan_update_and_reencrypt_progress(migrated_url: str) -> None:
    store = StateStore.from_url(migrated_url)
    sys_ = f"scan-{uuid.uuid4().hex[:6]}"
    try:
        with store.transaction() as tx:
            for i in range(5):
                tx.put_xref(sys_, "O", f"e{i}", f"p{i}")
            assert tx.primary_key_of("xref") == ["id"]
            mine = [r for r in tx.scan("xref", ["system", "external_id"], limit=10_000) if r["system"] == sys_]
            assert [r["external_id"] for r in mine] == [f"e{i}" for i in range(5)]
            after = tx.scan("xref", ["external_id"], after=[mine[2]["id"]], limit=2)
            assert [r["external_id"] for r in after] == ["e3", "e4"]
            assert tx.update_row("xref", {"id": mine[0]["id"]}, {"party_id": "moved"}) == 1
            assert tx.get_xref(sys_, "O", "e0") == "moved"
            assert tx.reencrypt_progress("xref", sys_) is None
            tx.save_reencrypt_progress("xref", sys_, target_version=2, last_key=None, rows_done=0, finished=False)
            tx.save_reencrypt_progress("xref", sys_, target_version=2, last_key="[7]", rows_done=3, finished=True)
            got = tx.reencrypt_progress("xref", sys_)
            assert got is not None and (got["last_key"], got["rows_done"], got["finished"]) == ("[7]", 3, True)
            with pytest.raises(KeyError, match="no table"):
                tx.scan("no_such_table", [])
    finally:
        store.dispose()


def test_the_key_repository_is_what_the_cipher_works_through(migrated_url: str) -> None:
    """The cipher takes a unit of work (or its ``keys``); it holds no connection and runs no SQL itself."""
    from crmbridge.sync.security.crypto import FieldCipher, LocalKeyProvider
    from crmbridge.sync.state.keys import KeyRepository

    cipher = FieldCipher(LocalKeyProvider(os.urandom(32)))
    store = StateStore.from_url(migrated_url)
    party = str(uuid.uuid4())
    try:
        with store.transaction() as tx:
            assert KeyRepository.of(tx) is tx.keys and KeyRepository.of(tx.keys) is tx.keys
            version = cipher.init(tx)
            token = tx.seal(cipher, "snapshots", "blob", row={"party_id": party, "system": "s", "object": "o"},
                            value={"a": 1})
            assert tx.prepare_party_keys(cipher, [party, str(uuid.uuid4())]) == 1   # the first had its key
            assert tx.keys.current_version() == version
            assert tx.keys.latest(f"party:{party}") is not None
        with store.transaction(refuse_writes=True) as tx:   # decrypting only reads
            assert tx.unseal(cipher, "snapshots", "blob", row={"party_id": party, "system": "s", "object": "o"},
                             token=token) == {"a": 1}
            assert cipher.status(tx).party_keys >= 2
        with pytest.raises(TypeError, match="unit of work"):
            KeyRepository.of(object())
    finally:
        store.dispose()
