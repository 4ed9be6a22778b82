"""Who may do what in the console: roles, the permission of every action, signed-in principals and sessions.

Roles (a user may hold several):

- ``auditor``: read everything masked, verify the ledger, export it;
- ``operator``: runs, dead-letter retry, trigger a run or a dry run;
- ``steward``: conflict resolution;
- ``admin``: users.

:data:`PERMISSIONS` is the one table of which role may take which action; every endpoint names its action
(:func:`crmbridge.console.web.endpoint`) and the HTTP tests walk the whole table.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from crmbridge.console.passwords import hash_password, needs_rehash, verify_password
from crmbridge.console.settings import ConsoleSettings
from crmbridge.sync.state.console import ConsoleRepository
from crmbridge.sync.state.store import StateStore

__all__ = ["PERMISSIONS", "ROLES", "Principal", "Role", "SessionService", "SignIn", "allowed", "token_hash"]


class Role(StrEnum):
    AUDITOR = "auditor"
    OPERATOR = "operator"
    STEWARD = "steward"
    ADMIN = "admin"


ROLES = tuple(r.value for r in Role)
_ALL = frozenset(Role)

#: action → the roles allowed to take it
PERMISSIONS: dict[str, frozenset[Role]] = {
    "view": _ALL,                                              # dashboard, runs, lineage, conflicts, mappings (masked)
    "ledger.verify": frozenset({Role.AUDITOR}),
    "ledger.export": frozenset({Role.AUDITOR}),
    "run.trigger": frozenset({Role.OPERATOR}),
    "dead_letter.retry": frozenset({Role.OPERATOR}),
    "conflict.resolve": frozenset({Role.STEWARD}),
    "reveal.request": frozenset({Role.AUDITOR, Role.STEWARD}),
    "reveal.approve": frozenset({Role.AUDITOR, Role.STEWARD}),
    "erasure.request": frozenset({Role.STEWARD}),
    "erasure.approve": frozenset({Role.STEWARD, Role.ADMIN}),
    "users.manage": frozenset({Role.ADMIN}),
}


@dataclass(frozen=True)
class Principal:
    """A signed-in user, as every endpoint sees them."""

    username: str
    roles: frozenset[Role]
    csrf_token: str
    session_hash: str

    @property
    def actor(self) -> str:
        """The ledger's actor for what this user does in the console."""
        return f"{self.username}@console"

    def may(self, action: str) -> bool:
        return allowed(self.roles, action)


def allowed(roles: frozenset[Role] | set[Role], action: str) -> bool:
    try:
        return bool(PERMISSIONS[action] & set(roles))
    except KeyError:
        raise KeyError(f"unknown console action {action!r}") from None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in attempt: a session token, or why not (never which of name or password was wrong)."""

    token: str | None
    principal: Principal | None
    refusal: str | None = None     # "invalid", "locked", "disabled"
    #: this attempt was the failure that locked the user out (the console ledgers a ``locked-out`` entry)
    locked_now: bool = False


class SessionService:
    """Sign-in, sessions and their expiry, over the state store."""

    def __init__(self, store: StateStore, settings: ConsoleSettings) -> None:
        self.store = store
        self.settings = settings

    def _now(self) -> datetime:
        return self.store.clock()

    def sign_in(self, username: str, password: str) -> SignIn:
        now = self._now()
        with self.store.transaction() as tx:
            repo = ConsoleRepository(tx)
            user = repo.user(username)
            if user is None:
                hash_password(password)          # the same work as a real check: timing tells nothing
                return SignIn(None, None, "invalid")
            if user.disabled:
                # only the right password learns that the user is disabled (a guesser learns nothing)
                right = verify_password(user.password_hash, password)
                return SignIn(None, None, "disabled" if right else "invalid")
            if user.locked_until is not None and user.locked_until > now:
                return SignIn(None, None, "locked")
            if not verify_password(user.password_hash, password):
                failed = user.failed_attempts + 1
                locked = failed >= self.settings.lockout_threshold
                repo.update_user(username, failed_attempts=0 if locked else failed,
                                 locked_until=now + timedelta(minutes=self.settings.lockout_minutes)
                                 if locked else user.locked_until)
                return SignIn(None, None, "locked" if locked else "invalid", locked_now=locked)
            values: dict[str, object] = {"failed_attempts": 0, "locked_until": None, "last_sign_in_at": now}
            if needs_rehash(user.password_hash):
                values["password_hash"] = hash_password(password)
            repo.update_user(username, **values)
            repo.purge_sessions(now)             # sessions past their absolute expiry: nobody can use them
            token = secrets.token_urlsafe(32)
            csrf = secrets.token_urlsafe(32)
            th = token_hash(token)
            repo.add_session(th, username, csrf, now=now,
                             expires_at=now + timedelta(hours=self.settings.session_hours))
            roles = frozenset(Role(r) for r in user.roles if r in ROLES)
        return SignIn(token, Principal(username, roles, csrf, th))

    def principal(self, token: str | None) -> Principal | None:
        """The signed-in user of a session cookie, or None (no session, expired, idle too long, user disabled)."""
        if not token:
            return None
        now = self._now()
        th = token_hash(token)
        with self.store.transaction() as tx:
            repo = ConsoleRepository(tx)
            sess = repo.session(th)
            if sess is None:
                return None
            idle = sess.last_seen_at + timedelta(minutes=self.settings.idle_minutes)
            if sess.expires_at <= now or idle <= now:
                repo.end_session(th)
                return None
            user = repo.user(sess.username)
            if user is None or user.disabled:
                repo.end_session(th)
                return None
            repo.touch_session(th, now)
            roles = frozenset(Role(r) for r in user.roles if r in ROLES)
        return Principal(user.username, roles, sess.csrf_token, th)

    def sign_out(self, principal: Principal) -> None:
        with self.store.transaction() as tx:
            ConsoleRepository(tx).end_session(principal.session_hash)
