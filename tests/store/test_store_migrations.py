"""The Alembic migrations create exactly the models' schema, on SQLite and PostgreSQL, idempotently."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from crmbridge.sync.state.db import import_models, make_engine
from crmbridge.sync.state.migrate import current, heads, upgrade

OWN_TABLES = {"runs", "cursors", "xref", "identity_index", "snapshots", "dead_letters", "conflicts",
              "job_leases", "write_intents"}


def test_first_revision_is_0001() -> None:
    from alembic.script import ScriptDirectory

    from crmbridge.sync.state.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_revision("0001").down_revision is None
    assert heads()


def test_upgrade_from_empty_then_again(db_url: str) -> None:
    assert current(db_url) == []
    assert upgrade(db_url) == heads()
    assert upgrade(db_url) == heads()          # idempotent
    engine = make_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert OWN_TABLES <= tables
    assert "alembic_version" in tables


def _diff(url: str) -> list:  # type: ignore[type-arg]
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return compare_metadata(ctx, import_models())
    finally:
        engine.dispose()


def _table_of(op: object) -> str | None:
    if isinstance(op, list):                       # modify_* ops come grouped per column
        return _table_of(op[0]) if op else None
    assert isinstance(op, tuple)
    obj = op[1]
    if hasattr(obj, "table") and obj.table is not None:                  # index, constraint
        return obj.table.name
    if hasattr(obj, "name") and op[0].endswith("_table"):              # table
        return obj.name
    return op[2] if len(op) > 2 and isinstance(op[2], str) else None   # add_column / modify_*: (op, schema, table, ...)


def test_migration_0001_matches_store_tables(db_url: str) -> None:
    """Revision 0001 creates exactly crmbridge.sync.state.store's tables: no column, index or type differs."""
    upgrade(db_url)
    mine = [op for op in _diff(db_url) if _table_of(op) in OWN_TABLES]
    assert mine == []


def test_migrations_match_all_models(db_url: str) -> None:
    """All revisions together create exactly every model module's schema (crmbridge.sync.state.db.MODEL_MODULES).

    Fails when a module defines tables that no migration creates yet.
    """
    upgrade(db_url)
    assert _diff(db_url) == []


def test_lease_and_xref_constraints_exist(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        insp = inspect(engine)
        uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("xref")}
        assert ("system", "object", "external_id") in uniques
        assert insp.get_pk_constraint("job_leases")["constrained_columns"] == ["job"]
        assert insp.get_pk_constraint("cursors")["constrained_columns"] == ["job", "object"]
        assert insp.get_pk_constraint("snapshots")["constrained_columns"] == ["party_id", "system", "object"]
        assert any(ix["column_names"] == ["party_id"] for ix in insp.get_indexes("xref"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("bad", ["9999", "nonsense"])
def test_unknown_revision_is_an_error(sqlite_url: str, bad: str) -> None:
    from alembic.util import CommandError

    with pytest.raises(CommandError):
        upgrade(sqlite_url, bad)


def test_concurrent_upgrades_from_empty(db_url: str) -> None:
    """Scheduler, workers and a CLI command starting together: every upgrade succeeds, the schema is made once."""
    import threading

    barrier = threading.Barrier(4)
    results: list[object] = []

    def go() -> None:
        barrier.wait()
        try:
            results.append(upgrade(db_url))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [heads()] * 4
    assert _diff(db_url) == []
