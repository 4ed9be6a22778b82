"""Migration 0002 creates the key and ledger tables (0006 adds the ledger's lineage columns) exactly as the models
define them; on PostgreSQL its triggers make the ledger append-only."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from crmbridge.sync.state.db import import_models, make_engine
from crmbridge.sync.state.ledger import Action, Ledger, LedgerEntryIn
from crmbridge.sync.state.migrate import upgrade

MY_TABLES = {"crypto_data_keys", "crypto_reencrypt_progress", "ledger_entries", "ledger_checkpoints", "ledger_head"}


def _diff_for_my_tables(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(ctx, import_models())
    finally:
        engine.dispose()
    return [d for d in diffs if any(t in repr(d) for t in MY_TABLES)]


def test_0002_matches_the_models(db_url: str) -> None:
    assert upgrade(db_url, "0002") == ["0002"]
    upgrade(db_url)   # 0006: the ledger's lineage columns
    assert _diff_for_my_tables(db_url) == []


@pytest.mark.postgres
def test_0002_postgres_triggers_refuse_update_and_delete(pg_url: str) -> None:
    upgrade(pg_url, "0002")
    upgrade(pg_url)   # the models' later columns (0006), which Ledger writes; the triggers are 0002's
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn:
            Ledger(conn).append([LedgerEntryIn(action=Action.CREATED, party_id="p")])
            conn.execute(text("INSERT INTO ledger_checkpoints (tree_size, root_hash, chain_head, hash_alg, body, "
                              "signature, key_id, created_at) VALUES (1, 'r', 'h', 'sha256', 'b', 's', 'k', 't')"))
        for sql in ("UPDATE ledger_entries SET action = 'deleted'", "DELETE FROM ledger_entries",
                    "TRUNCATE ledger_entries", "UPDATE ledger_checkpoints SET signature = 'x'",
                    "DELETE FROM ledger_checkpoints"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(sql))
        with engine.begin() as conn:  # the head row is the appenders' lock: it stays updatable
            Ledger(conn).append([LedgerEntryIn(action=Action.UPDATED, party_id="p")])
            assert Ledger(conn).head()[0] == 2
        with engine.connect() as conn:  # the made-up checkpoint above is caught; the entries themselves hold
            res = Ledger(conn).verify()
        assert [(p.seq, p.kind) for p in res.problems] == [(1, "checkpoint-mismatch")]
    finally:
        engine.dispose()
