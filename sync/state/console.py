"""The console's users, sessions and four-eyes requests, in the state database (the only code that runs SQL on
``console_users``, ``console_sessions`` and ``console_requests``).

Passwords are hashed by the caller (:mod:`crmbridge.console.passwords`, Argon2id): this module stores and compares
hashes only. A session is known here by the SHA-256 of its cookie token, never the token itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from crmbridge.sync.state.store import StoreTx
from crmbridge.sync.state.tables import console_requests, console_sessions, console_users

__all__ = ["ConsoleRepository", "SessionRow", "UserRow"]


@dataclass(frozen=True)
class UserRow:
    username: str
    password_hash: str
    roles: tuple[str, ...]
    disabled: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime
    created_by: str
    password_changed_at: datetime
    last_sign_in_at: datetime | None


@dataclass(frozen=True)
class SessionRow:
    token_hash: str
    username: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


def _user(row: Any) -> UserRow:
    m = row._mapping
    return UserRow(username=m["username"], password_hash=m["password_hash"], roles=tuple(m["roles"] or ()),
                   disabled=bool(m["disabled"]), failed_attempts=int(m["failed_attempts"] or 0),
                   locked_until=m["locked_until"], created_at=m["created_at"], created_by=m["created_by"],
                   password_changed_at=m["password_changed_at"], last_sign_in_at=m["last_sign_in_at"])


class ConsoleRepository:
    """Repository methods of the console's tables, inside one open :class:`StoreTx`."""

    def __init__(self, tx: StoreTx) -> None:
        self._conn = tx.connection

    # -- users ---------------------------------------------------------------------------------------------
    def user(self, username: str) -> UserRow | None:
        row = self._conn.execute(select(console_users).where(console_users.c.username == username)).first()
        return _user(row) if row is not None else None

    def users(self) -> list[UserRow]:
        return [_user(r) for r in self._conn.execute(select(console_users).order_by(console_users.c.username))]

    def add_user(self, username: str, password_hash: str, roles: list[str], *, created_by: str,
                 now: datetime) -> None:
        self._conn.execute(insert(console_users).values(
            username=username, password_hash=password_hash, roles=sorted(set(roles)), disabled=False,
            failed_attempts=0, locked_until=None, created_at=now, created_by=created_by, password_changed_at=now))

    def update_user(self, username: str, **values: Any) -> bool:
        """Set columns of a user (``password_hash``, ``roles``, ``disabled``, ``failed_attempts``,
        ``locked_until``, ``last_sign_in_at``, ``password_changed_at``); whether the user exists."""
        res = self._conn.execute(update(console_users).where(console_users.c.username == username).values(**values))
        return bool(res.rowcount)

    # -- sessions ------------------------------------------------------------------------------------------
    def add_session(self, token_hash: str, username: str, csrf_token: str, *, now: datetime,
                    expires_at: datetime) -> None:
        self._conn.execute(insert(console_sessions).values(
            token_hash=token_hash, username=username, csrf_token=csrf_token, created_at=now, last_seen_at=now,
            expires_at=expires_at))

    def session(self, token_hash: str) -> SessionRow | None:
        row = self._conn.execute(select(console_sessions).where(console_sessions.c.token_hash == token_hash)).first()
        return SessionRow(**row._mapping) if row is not None else None

    def touch_session(self, token_hash: str, now: datetime) -> None:
        self._conn.execute(update(console_sessions).where(console_sessions.c.token_hash == token_hash)
                           .values(last_seen_at=now))

    def end_session(self, token_hash: str) -> bool:
        return bool(self._conn.execute(delete(console_sessions)
                                       .where(console_sessions.c.token_hash == token_hash)).rowcount)

    def end_sessions_of(self, username: str) -> int:
        """End every session of a user (disabled, password changed)."""
        return int(self._conn.execute(delete(console_sessions)
                                      .where(console_sessions.c.username == username)).rowcount or 0)

    def purge_sessions(self, now: datetime) -> int:
        return int(self._conn.execute(delete(console_sessions)
                                      .where(console_sessions.c.expires_at < now)).rowcount or 0)

    # -- four-eyes requests --------------------------------------------------------------------------------
    def add_request(self, *, kind: str, party_id: str, fields: list[str], reason: str, requested_by: str,
                    now: datetime) -> int:
        res = self._conn.execute(insert(console_requests).values(
            kind=kind, party_id=party_id, fields=sorted(set(fields)), reason=reason, status="pending",
            requested_by=requested_by, requested_at=now))
        return int(res.inserted_primary_key[0])

    def request(self, request_id: int) -> dict[str, Any] | None:
        row = self._conn.execute(select(console_requests).where(console_requests.c.id == request_id)).first()
        return dict(row._mapping) if row is not None else None

    def requests(self, *, status: str | None = None, limit: int = 100, before: int | None = None,
                 exclude_status: str | None = None) -> list[dict[str, Any]]:
        """Requests newest first (``before``: ids below it, the next page), of one status or all but one."""
        q = select(console_requests).order_by(console_requests.c.id.desc()).limit(limit)
        if status is not None:
            q = q.where(console_requests.c.status == status)
        if exclude_status is not None:
            q = q.where(console_requests.c.status != exclude_status)
        if before is not None:
            q = q.where(console_requests.c.id < before)
        return [dict(r._mapping) for r in self._conn.execute(q)]

    def active_reveals(self, username: str, party_id: str, now: datetime) -> list[dict[str, Any]]:
        """The approved reveal requests of ``username`` for ``party_id`` that have not expired at ``now``."""
        c = console_requests.c
        q = (select(console_requests)
             .where(c.party_id == party_id, c.kind == "reveal", c.status == "approved", c.requested_by == username,
                    c.expires_at > now)
             .order_by(c.id))
        return [dict(r._mapping) for r in self._conn.execute(q)]

    def decide_request(self, request_id: int, *, expected_status: str, status: str, **values: Any) -> bool:
        """Move a request from ``expected_status`` to ``status`` (a conditional update: of two users deciding
        at once, exactly one wins); whether this call moved it."""
        res = self._conn.execute(update(console_requests)
                                 .where(console_requests.c.id == request_id,
                                        console_requests.c.status == expected_status)
                                 .values(status=status, **values))
        return bool(res.rowcount)
