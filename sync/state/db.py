"""The state database: one declarative ``Base`` every table module registers on, and engine creation.

The tables are defined on :class:`Base` in :mod:`crmbridge.sync.state.tables` (the ledger's in
:mod:`crmbridge.sync.state.ledger`), the modules listed in :data:`MODEL_MODULES`; Alembic's
environment imports them all through :func:`import_models` so ``target_metadata`` is complete.
Works on SQLite (the embedded default, a file under ``var/``) and PostgreSQL.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase

__all__ = ["DEFAULT_URL", "MODEL_MODULES", "SQLITE_PAGE_SIZE", "Base", "chunked", "create_database", "drop_database",
           "import_models", "make_engine"]

DEFAULT_URL = "sqlite:///var/crmbridge.db"

#: the modules that define the tables on Base
MODEL_MODULES = [
    "crmbridge.sync.state.store",         # no table of its own: its SQLite hook creates database files 0600
    "crmbridge.sync.state.tables",        # every table but the ledger's and the engine's
    "crmbridge.sync.state.ledger",
    "crmbridge.sync.state.ledger_trust",
    "crmbridge.sync.state.ledger_archive",
    "crmbridge.sync.state.engine_tables",     # read hashes, distributed batches
    "crmbridge.sync.state.object_tables",     # holdings, interactions... as last read (issue 20)
    "crmbridge.sync.state.version_sets",      # mapping-version sets the ledger and snapshots refer to (issue 19)
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def import_models() -> MetaData:
    """Import every table module and return the complete metadata."""
    for mod in MODEL_MODULES:
        importlib.import_module(mod)
    return Base.metadata


#: the page size of a new SQLite state database (bytes)
SQLITE_PAGE_SIZE = 8192


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for ``url``. SQLite gets its folder created, WAL journaling, foreign keys on and a busy
    timeout, so a scheduler and a CLI command can share the file."""
    if url.startswith("sqlite"):
        import crmbridge.sync.state.store  # noqa: F401  (its do_connect hook creates the database file 0600)

        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # seconds a transaction waits for another process's write lock: ?timeout=N in the URL, default 30
        busy = float(make_url(url).query.get("timeout", 30))  # type: ignore[arg-type]
        kwargs.setdefault("connect_args", {"timeout": busy})
        engine = create_engine(url, **kwargs)  # type: ignore[arg-type]

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # a new database gets 8 KB pages (set before WAL; an existing one keeps its own): a ledger entry
            # (~1.5 KB) or a sealed snapshot row then wastes less of its page than with 4 KB (issue 19, ~8 % of
            # the file; PostgreSQL's pages are 8 KB too)
            cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
            cur.close()

        return engine
    from crmbridge.core.extras import resolve_database_driver

    kwargs.setdefault("pool_pre_ping", True)
    # rowcount of every statement (INSERT ... ON CONFLICT DO NOTHING answers "did I insert it?"): psycopg 3
    # reports it only with this option, psycopg2 always did
    kwargs.setdefault("execution_options", {"preserve_rowcount": True})
    return create_engine(resolve_database_driver(url), **kwargs)  # type: ignore[arg-type]


def create_database(admin_url: str) -> str:
    """A new, empty PostgreSQL database on the server of ``admin_url`` (a maintenance database such as
    ``postgres``); returns its URL (benchmarks and tests of the distributed mode)."""
    import uuid

    name = f"crmbridge_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database of ``url`` (made by :func:`create_database`), ending its sessions first."""
    name = url.rsplit("/", 1)[1]
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %(n)s",
                                 {"n": name})
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        engine.dispose()


def chunked(items: Sequence[Any], n: int = 500) -> Iterator[list[Any]]:
    """Lists of at most ``n`` of ``items`` in order (the default keeps an IN list's bound parameters well under
    every driver's limit)."""
    for i in range(0, len(items), n):
        yield list(items[i:i + n])
