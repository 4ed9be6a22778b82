"""The state database: one declarative ``Base`` every table module registers on, and engine creation.

Table modules (listed in :data:`MODEL_MODULES`) define their tables on :class:`Base`; Alembic's
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

__all__ = ["DEFAULT_URL", "MODEL_MODULES", "Base", "chunked", "import_models", "make_engine"]

DEFAULT_URL = "sqlite:///var/crmbridge.db"

#: every module that defines tables on Base
MODEL_MODULES = [
    "crmbridge.sync.state.store",
    "crmbridge.sync.security.crypto",
    "crmbridge.sync.state.ledger",
    "crmbridge.sync.security.protect",
    "crmbridge.sync.runners.scheduler",
    "crmbridge.sync.state.engine_tables",
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
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)  # type: ignore[arg-type]


def chunked(items: Sequence[Any], n: int = 500) -> Iterator[list[Any]]:
    """Lists of at most ``n`` of ``items`` in order (the default keeps an IN list's bound parameters well under
    every driver's limit)."""
    for i in range(0, len(items), n):
        yield list(items[i:i + n])
