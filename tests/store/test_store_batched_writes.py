"""The sync hot path's writes as one ``executemany`` per statement kind (issue 19), on SQLite and PostgreSQL:
nothing read in the same transaction misses a held-back write, order within a table is kept, a missing write
intent still fails the transaction, and an exception leaves nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event, func, select

from crmbridge.sync.state.engine_tables import read_hashes
from crmbridge.sync.state.store import StateStore, snapshots, write_intents, xref


@pytest.fixture
def store(migrated_url: str) -> Iterator[StateStore]:
    s = StateStore.from_url(migrated_url)
    with s.transaction() as tx:
        for t in (snapshots, xref, read_hashes, write_intents):
            tx.connection.execute(t.delete())
    yield s
    s.dispose()


def _statements(store: StateStore) -> list[tuple[str, bool]]:
    """(statement, executemany) of every statement sent from now on."""
    seen: list[tuple[str, bool]] = []

    def note(_c, _cur, stmt, _p, _ctx, many) -> None:  # type: ignore[no-untyped-def]
        words = stmt.split()
        seen.append((" ".join(words[:3]), many))

    event.listen(store.engine, "before_cursor_execute", note)
    return seen


def _count(store: StateStore, table) -> int:  # type: ignore[no-untyped-def]
    with store.transaction(refuse_writes=True) as tx:
        return int(tx.connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_batch_sends_one_executemany_per_statement_kind(store: StateStore) -> None:
    with store.transaction() as tx:
        intents = [tx.add_write_intent("j", target_system="fx", target_object="A", key=f"p-{i}", operation="create",
                                       payload_hash="h") for i in range(40)]
    seen = _statements(store)
    with store.transaction() as tx, tx.batched_writes():
        for i in range(40):
            tx.put_read_hash("j", "corebank", "Customer", f"c{i}", record_hash=f"r{i}")
            tx.put_xref("fx", "A", f"z{i}", f"p-{i}")
            tx.put_snapshot(f"p-{i}", "fx", "A", content_hash=f"h{i}", blob=b"\xcb\x01sealed")
            tx.complete_write_intent(intents[i], external_id=f"z{i}")
        assert [s for s in seen if not s[0].startswith("BEGIN")] == []   # nothing sent yet
    writes = [s for s in seen if s[0].startswith(("INSERT", "UPDATE", "DELETE"))]
    assert len(writes) == 4 and all(many for _, many in writes), writes
    assert _count(store, snapshots) == _count(store, xref) == _count(store, read_hashes) == 40
    assert _count(store, write_intents) == 0     # a done intent leaves the table: only writes in flight stay
    with store.transaction(refuse_writes=True) as tx:
        assert tx.pending_write_intents("j") == []
        assert tx.get_snapshot("p-7", "fx", "A").content_hash == "h7"  # type: ignore[union-attr]


def test_whatever_runs_in_the_transaction_sees_the_held_back_writes_in_order(store: StateStore) -> None:
    with store.transaction() as tx, tx.batched_writes():
        tx.put_xref("fx", "A", "z1", "p-1")
        tx.put_snapshot("p-1", "fx", "A", content_hash="h1", blob=b"x")
        tx.put_snapshot("p-1", "fx", "A", content_hash="h2", blob=b"y")   # the same row twice: the last wins
        # a read of any kind sends them first: through the store's methods or the connection itself
        assert tx.get_snapshot("p-1", "fx", "A").content_hash == "h2"  # type: ignore[union-attr]
        assert tx.connection.execute(select(xref.c.party_id).where(xref.c.external_id == "z1")).scalar() == "p-1"
        tx.put_xref("fx", "A", "z1", "p-2")      # held back
        assert tx.delete_xref("fx", "A", "z1")    # runs now, after the held-back re-link
        tx.put_xref("fx", "A", "z1", "p-3")      # held back again, after the delete
    with store.transaction(refuse_writes=True) as tx:
        assert tx.get_xref("fx", "A", "z1") == "p-3"
        assert tx.get_snapshot("p-1", "fx", "A").content_hash == "h2"  # type: ignore[union-attr]


def test_a_missing_write_intent_in_a_batch_fails_the_transaction(store: StateStore) -> None:
    with store.transaction() as tx:
        real = tx.add_write_intent("j", target_system="fx", target_object="A", key="p-1", operation="create",
                                   payload_hash="h")
    with pytest.raises(KeyError, match="write_intents: 1 of 2 rows"):
        with store.transaction() as tx, tx.batched_writes():
            tx.put_snapshot("p-1", "fx", "A", content_hash="h", blob=b"x")
            tx.complete_write_intent(real)
            tx.complete_write_intent(real + 1000)
    assert _count(store, snapshots) == 0
    with store.transaction(refuse_writes=True) as tx:
        assert [i["id"] for i in tx.pending_write_intents("j")] == [real]


def test_an_exception_in_a_batch_leaves_nothing(store: StateStore) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction() as tx, tx.batched_writes():
            tx.put_xref("fx", "A", "z1", "p-1")
            tx.put_snapshot("p-1", "fx", "A", content_hash="h", blob=b"x")
            raise RuntimeError("boom")
    assert _count(store, snapshots) == _count(store, xref) == 0
