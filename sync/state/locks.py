"""Session-level PostgreSQL advisory locks on named keys (a distributed worker locks a batch's parties with them:
crmbridge.sync.runners.distributed)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from crmbridge.sync.state.store import StateStore

__all__ = ["LocksBusy", "advisory_locks", "lock_id"]


class LocksBusy(Exception):
    """A key stayed locked by another session longer than the timeout."""


def lock_id(key: str) -> int:
    """The advisory lock number of a key."""
    return int.from_bytes(hashlib.blake2b(f"crmbridge|{key}".encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def advisory_locks(store: StateStore, keys: set[str], timeout_seconds: float, *,
                   busy: str = "keys stayed locked by another session") -> Iterator[None]:
    """Session-level advisory locks on ``keys``, in sorted order (no deadlock between two lockers), held on one
    connection for the block; :class:`LocksBusy` (message: ``busy``) when one stays taken ``timeout_seconds``.
    Transaction-scoped locks would not do: the block spans several transactions."""
    ids = sorted({lock_id(k) for k in keys})
    conn = store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        conn.execute(text("SELECT set_config('lock_timeout', :v, false)"), {"v": f"{int(timeout_seconds * 1000)}ms"})
        try:
            for k in ids:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": k})
        except DBAPIError as exc:
            # lock_not_available: psycopg 3 names the code sqlstate, psycopg2 pgcode
            if (getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)) == "55P03":
                raise LocksBusy(busy) from None
            raise
        yield
    finally:
        try:
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
            conn.execute(text("RESET lock_timeout"))
        except DBAPIError:
            conn.invalidate()  # a broken session: its locks went with it
        conn.close()
