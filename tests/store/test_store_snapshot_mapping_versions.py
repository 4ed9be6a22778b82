"""Migration 0011: snapshots record the version of each mapping that produced them (as ledger entries do); rows
written before keep NULL, and the column goes away on downgrade; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import inspect, text

from crmbridge.sync.state.db import make_engine
from crmbridge.sync.state.migrate import alembic_config, current, upgrade
from crmbridge.sync.state.store import StateStore

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
VERSIONS = {"corebank_soap_customer.yaml": "a" * 64, "zoho_contacts.yaml": "b" * 64}


def _columns(engine) -> set[str]:  # type: ignore[no-untyped-def]
    return {c["name"] for c in inspect(engine).get_columns("snapshots")}


def test_0011_adds_snapshot_mapping_versions_and_takes_them_back(db_url: str) -> None:
    assert upgrade(db_url, "0010") == ["0010"]
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:   # a snapshot written before 0011
            conn.execute(text("INSERT INTO snapshots (party_id, system, object, content_hash, blob, synced_at) "
                              "VALUES ('p-old', 'zoho_cn', 'Contacts', 'h', :b, :t)"), {"b": b"sealed", "t": T0})
        assert upgrade(db_url, "0011") == ["0011"]
        assert "mapping_versions" in _columns(engine)
        store = StateStore(engine)
        with store.transaction() as tx:
            old = tx.get_snapshot("p-old", "zoho_cn", "Contacts")
            assert old is not None and old.mapping_versions is None and old.blob == b"sealed"
        upgrade(db_url)   # today's code stores the versions' set once (0018, mapping_version_sets)
        with store.transaction() as tx:
            tx.put_snapshot("p-new", "zoho_cn", "Contacts", content_hash="h2", blob=b"x", mapping_versions=VERSIONS)
            tx.put_snapshot("p-old", "zoho_cn", "Contacts", content_hash="h3", blob=b"y", mapping_versions=VERSIONS)
        with store.transaction(read_only=True) as tx:
            for pid in ("p-new", "p-old"):
                snap = tx.get_snapshot(pid, "zoho_cn", "Contacts")
                assert snap is not None and snap.mapping_versions == VERSIONS
            tx.prefetch_parties(["p-new"], snapshots_of=[("zoho_cn", "Contacts")])
            snap = tx.get_snapshot("p-new", "zoho_cn", "Contacts")
            assert snap is not None and snap.mapping_versions == VERSIONS

        engine.dispose()
        command.downgrade(alembic_config(db_url), "0010")
        assert current(db_url) == ["0010"]
        assert "mapping_versions" not in _columns(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM snapshots")).scalar() == 2
    finally:
        engine.dispose()
