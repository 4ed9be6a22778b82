"""Schema migrations of the state store, run programmatically (no alembic.ini needed).

The Alembic scripts ship inside the package (``crmbridge/sync/state/migrations``)::

    from crmbridge.sync.state.migrate import upgrade, current
    upgrade("sqlite:///var/crmbridge.db")     # create or bring the schema to the newest revision
    current("sqlite:///var/crmbridge.db")     # -> ["0001"]

Revisions: ``0001`` (this module's owner: runs, cursors, xref, identity index, snapshots, dead letters,
conflicts, leases, write intents); later revisions (ledger, keys) revise it.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from crmbridge.sync.state.db import make_engine

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current", "heads", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: PostgreSQL advisory lock held while migrating ("crmbridg" as a 64-bit integer)
_PG_LOCK_KEY = int.from_bytes(b"crmbridg", "big") & 0x7FFF_FFFF_FFFF_FFFF


def alembic_config(url: str | None = None) -> Config:
    """An Alembic :class:`Config` pointing at the shipped scripts (and at ``url`` when given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


#: tries of an upgrade SQLite refused with "database is locked"
_SQLITE_LOCKED_TRIES = 10


def heads() -> list[str]:
    """The newest revision(s) the shipped scripts define."""
    return sorted(ScriptDirectory.from_config(alembic_config()).get_heads())


def upgrade(url: str | Engine, revision: str = "heads") -> list[str]:
    """Bring the state database at ``url`` (or an engine) to ``revision``; idempotent. Returns the revisions now
    applied.

    Safe to call from several processes at once: the migration runs under the database's write lock (SQLite
    ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), in one transaction.
    """
    engine = url if isinstance(url, Engine) else make_engine(url)
    try:
        for attempt in range(_SQLITE_LOCKED_TRIES):
            try:
                _upgrade_once(engine, revision)
                break
            except OperationalError as exc:
                # SQLite refuses a lock at once (no busy wait) when waiting could deadlock, e.g. several
                # processes opening a new database together: try again shortly
                if engine.dialect.name != "sqlite" or "locked" not in str(exc) or attempt == _SQLITE_LOCKED_TRIES - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return current(engine)
    finally:
        if not isinstance(url, Engine):
            engine.dispose()


def _upgrade_once(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        # several processes may start at once (scheduler, workers, a CLI command): one migrates, the others
        # wait for it and then find nothing to do
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current(url: str | Engine) -> list[str]:
    """The revision(s) the database at ``url`` is at (empty for a database never upgraded)."""
    engine = url if isinstance(url, Engine) else make_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(MigrationContext.configure(conn).get_current_heads())
    finally:
        if not isinstance(url, Engine):
            engine.dispose()
