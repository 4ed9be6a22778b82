"""The data-key repository: every SQL statement on ``crypto_data_keys``, inside the caller's transaction.

:class:`crmbridge.sync.security.crypto.FieldCipher` holds no connection: each of its methods is given a
:class:`KeyRepository` (``tx.keys`` of a :class:`crmbridge.sync.state.store.StoreTx``) and works inside that
unit of work. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crmbridge.sync.state.db import chunked
from crmbridge.sync.state.tables import DataKey

__all__ = ["KeyRepository", "as_connection"]

SYSTEM_SCOPE = "system"
_keys = DataKey.__table__


def as_connection(conn: Any) -> Connection:
    """The Connection behind a unit of work (``StoreTx``), a Session (joining its transaction), or the Connection."""
    if isinstance(conn, Session):
        return conn.connection()
    inner = getattr(conn, "connection", None)
    return inner if isinstance(inner, Connection) else conn


class KeyRepository:
    """Reads and writes wrapped data keys in one open transaction.

    Build it with :meth:`of` from a unit of work (``StoreTx``), a Connection or Session, or another repository.
    """

    __slots__ = ("_c",)

    def __init__(self, connection: Connection) -> None:
        self._c = connection

    @classmethod
    def of(cls, where: Any) -> KeyRepository:
        """The repository of ``where``: itself, a unit of work's ``keys``, or one over a Connection/Session."""
        if isinstance(where, KeyRepository):
            return where
        keys = getattr(where, "keys", None)
        if isinstance(keys, KeyRepository):
            return keys
        if isinstance(where, Connection | Session):
            return cls(as_connection(where))
        raise TypeError(f"expected a unit of work (StoreTx) or a KeyRepository, got {type(where).__name__}")

    @property
    def transaction(self) -> Any:
        """The open transaction (an identity for caches valid only inside it), or None."""
        return self._c.get_transaction()

    # -- reads ------------------------------------------------------------------------------------
    def current_version(self, scope: str = SYSTEM_SCOPE) -> int | None:
        """The highest key version of ``scope`` (None: no key yet)."""
        return self._c.execute(select(func.max(_keys.c.version)).where(_keys.c.scope == scope)).scalar()

    def latest(self, scope: str) -> Any:
        """(kid, version, wrapped) of the newest key of ``scope``, or None."""
        return self._c.execute(select(_keys.c.kid, _keys.c.version, _keys.c.wrapped).where(_keys.c.scope == scope)
                               .order_by(_keys.c.version.desc()).limit(1)).first()

    def latest_of(self, scopes: Iterable[str]) -> dict[str, Any]:
        """scope → (scope, kid, version, wrapped) of its newest key, for many scopes in a few statements."""
        latest: dict[str, Any] = {}
        for chunk in chunked(sorted(set(scopes))):
            for r in self._c.execute(select(_keys.c.scope, _keys.c.kid, _keys.c.version, _keys.c.wrapped)
                                     .where(_keys.c.scope.in_(chunk))):
                if r.scope not in latest or r.version > latest[r.scope].version:
                    latest[r.scope] = r
        return latest

    def kids_of(self, scopes: Iterable[str]) -> list[Any]:
        """(scope, kid, version) of every key of ``scopes``."""
        out: list[Any] = []
        for chunk in chunked(sorted(set(scopes))):
            out += self._c.execute(select(_keys.c.scope, _keys.c.kid, _keys.c.version)
                                   .where(_keys.c.scope.in_(chunk))).all()
        return out

    def get(self, kid: int) -> RowMapping | None:
        """The whole row of data key ``kid``."""
        return self._c.execute(select(_keys).where(_keys.c.kid == kid)).mappings().first()

    def scope_of(self, kid: int) -> str | None:
        return self._c.execute(select(_keys.c.scope).where(_keys.c.kid == kid)).scalar()

    def kid_taken(self, kid: int) -> bool:
        return self._c.execute(select(_keys.c.kid).where(_keys.c.kid == kid)).first() is not None

    def system_versions(self) -> list[tuple[int, str, str, datetime]]:
        """(version, algorithm, master key id, created) of every system key, oldest first."""
        return [tuple(r) for r in self._c.execute(  # type: ignore[misc]
            select(_keys.c.version, _keys.c.algorithm, _keys.c.kek_id, _keys.c.created_at)
            .where(_keys.c.scope == SYSTEM_SCOPE).order_by(_keys.c.version))]

    def counts(self, kek_id: str) -> dict[str, int]:
        """``party`` keys, ``destroyed`` party keys, live keys wrapped by another master key than ``kek_id``
        (``foreign``)."""
        def n(*cond: Any) -> int:
            return int(self._c.execute(select(func.count()).select_from(_keys).where(*cond)).scalar() or 0)
        return {"party": n(_keys.c.scope.like("party:%")),
                "destroyed": n(_keys.c.scope.like("party:%"), _keys.c.wrapped.is_(None)),
                "foreign": n(_keys.c.kek_id != kek_id, _keys.c.wrapped.is_not(None))}

    def live_wrapped_by(self, kek_id: str) -> list[RowMapping]:
        """Every live (not destroyed) key wrapped by master key ``kek_id``."""
        return list(self._c.execute(select(_keys).where(_keys.c.wrapped.is_not(None),
                                                        _keys.c.kek_id == kek_id)).mappings().all())

    # -- writes -----------------------------------------------------------------------------------
    def insert(self, values: Mapping[str, Any]) -> tuple[int, bool]:
        """Store a new wrapped key; (kid, True). On PostgreSQL, a key another transaction created for the same
        (scope, version) meanwhile wins: (its kid, False). SQLite serialises writers, there is no such race."""
        stmt = _keys.insert().values(**values)
        c = self._c
        if c.dialect.name == "postgresql" and c.in_transaction():
            try:
                with c.begin_nested():
                    c.execute(stmt)
            except IntegrityError:
                row = c.execute(select(_keys.c.kid).where(_keys.c.scope == values["scope"],
                                                          _keys.c.version == values["version"])).first()
                if row is None:
                    raise
                return int(row.kid), False
        else:
            c.execute(stmt)
        return int(values["kid"]), True

    def insert_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store many new keys; a kid or (scope, version) already taken is skipped (see :meth:`kids_of`)."""
        if not rows:
            return
        if self._c.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        self._c.execute(dialect_insert(_keys).on_conflict_do_nothing(), [dict(r) for r in rows])

    def destroy_scope(self, scope: str) -> tuple[int, list[int]]:
        """Destroy every live key of ``scope`` (crypto-shredding; SQLite overwrites the freed pages).
        Returns (how many were destroyed, every kid of the scope)."""
        c = self._c
        if c.dialect.name == "sqlite":
            c.exec_driver_sql("PRAGMA secure_delete=ON")  # overwrite freed pages, not just unlink them
        res = c.execute(update(_keys).where(_keys.c.scope == scope, _keys.c.wrapped.is_not(None))
                        .values(wrapped=None, destroyed_at=datetime.now(UTC)))
        kids = [r[0] for r in c.execute(select(_keys.c.kid).where(_keys.c.scope == scope))]
        return int(res.rowcount or 0), kids

    def rewrap(self, kid: int, wrapped: bytes, kek_id: str) -> None:
        """Replace key ``kid``'s wrapping (master key rotation)."""
        self._c.execute(update(_keys).where(_keys.c.kid == kid).values(wrapped=wrapped, kek_id=kek_id))
