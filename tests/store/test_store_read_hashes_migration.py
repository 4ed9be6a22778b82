"""Migration 0008: per-job read hashes leave the snapshots table's made-up keys for their own table, data
included, and come back on downgrade; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text

from crmbridge.sync.state.db import make_engine
from crmbridge.sync.state.migrate import alembic_config, current, upgrade

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
T1 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def _rows(engine, sql: str) -> list[tuple]:  # type: ignore[no-untyped-def, type-arg]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def _seed_0005(engine) -> None:  # type: ignore[no-untyped-def]
    """The state as the engine left it before 0008: read hashes under ``<object>@read:<job>`` per party."""
    with engine.begin() as conn:
        for ext, pid, system, obj in (("C1", "p1", "core", "Customer"), ("Z1", "p1", "zoho", "Contacts"),
                                      ("C2", "p2", "core", "Customer")):
            conn.execute(text("INSERT INTO xref (system, object, external_id, party_id, created_at, updated_at) "
                              "VALUES (:s, :o, :e, :p, :t, :t)"), {"s": system, "o": obj, "e": ext, "p": pid, "t": T0})
        snap = ("INSERT INTO snapshots (party_id, system, object, content_hash, blob, written_hash, version, "
                "synced_at) VALUES (:p, :s, :o, :h, :b, :w, :v, :t)")
        for pid, system, obj, h, blob, written, version, at in (
                ("p1", "core", "Customer@read:core_to_zoho", "h-c1", b"", None, "7", T0),
                ("p1", "zoho", "Contacts@read:core_to_zoho", "h-z1", b"", None, None, T1),
                ("p2", "core", "Customer@read:core_to_zoho", "h-c2", b"", None, "3", T1),
                ("p2", "core", "Customer@read:core_to_fx", "h-c2-fx", b"", None, "3", T0),
                ("p9", "core", "Customer@read:core_to_zoho", "h-orphan", b"", None, None, T0),  # no xref any more
                ("p1", "zoho", "Contacts", "content", b"sealed", "written", None, T0)):         # a real snapshot
            conn.execute(text(snap), {"p": pid, "s": system, "o": obj, "h": h, "b": blob, "w": written,
                                      "v": version, "t": at})


def test_0008_carries_read_hashes_over_and_back(db_url: str) -> None:
    assert upgrade(db_url, "0007") == ["0007"]
    engine = make_engine(db_url)
    try:
        _seed_0005(engine)
        assert upgrade(db_url, "0008") == ["0008"]
        assert sorted(_rows(engine, "SELECT job, system, object, external_id, record_hash, version "
                                    "FROM read_hashes")) == [
            ("core_to_fx", "core", "Customer", "C2", "h-c2-fx", "3"),
            ("core_to_zoho", "core", "Customer", "C1", "h-c1", "7"),
            ("core_to_zoho", "core", "Customer", "C2", "h-c2", "3"),
            ("core_to_zoho", "zoho", "Contacts", "Z1", "h-z1", None),
        ]
        # the made-up rows are gone; the real snapshot stays as it was
        assert _rows(engine, "SELECT party_id, system, object, content_hash, written_hash FROM snapshots") == [
            ("p1", "zoho", "Contacts", "content", "written")]

        command.downgrade(alembic_config(db_url), "0007")
        assert current(db_url) == ["0007"]
        assert sorted(_rows(engine, "SELECT party_id, system, object, content_hash, version FROM snapshots")) == [
            ("p1", "core", "Customer@read:core_to_zoho", "h-c1", "7"),
            ("p1", "zoho", "Contacts", "content", None),
            ("p1", "zoho", "Contacts@read:core_to_zoho", "h-z1", None),
            ("p2", "core", "Customer@read:core_to_fx", "h-c2-fx", "3"),
            ("p2", "core", "Customer@read:core_to_zoho", "h-c2", "3"),
        ]
        assert _table_gone(engine)

        assert upgrade(db_url, "0008") == ["0008"]   # and forward again: the same rows
        assert len(_rows(engine, "SELECT * FROM read_hashes")) == 4
    finally:
        engine.dispose()


def _table_gone(engine) -> bool:  # type: ignore[no-untyped-def]
    from sqlalchemy import inspect

    return "read_hashes" not in inspect(engine).get_table_names()
