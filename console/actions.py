"""The console's accountability: who is the actor of what the console causes, and the ledger entries of its own
events (sign-ins, refusals).

**The signed-in user is the actor on every ledger entry the console causes.** A page that calls an existing API
taking an ``actor`` passes :func:`actor_for` of its request, never a name of its own::

    from crmbridge.console.actions import actor_for, append

    resolve_conflict(rt, conflict_id, take="source", actor=actor_for(req, reason))   # "alice@console [reason]"
    run_job(rt, job, actor=actor_for(req, "dead-letter retry"))

The ledger stores ``alice@console`` as the actor and the note beside it (:func:`crmbridge.sync.state.ledger.
format_actor`). A page that records an entry itself uses :func:`append` (the actor is set from the request, the
head is signed at once, so ``ledger verify --require-signed`` covers it, and published where configured)::

    append(req, LedgerEntryIn(action=Action.REVEALED, party_id=pid, changed_fields=[...], reason="..."))

The console's own events go through :func:`make_audit` (installed as ``ConsoleState.audit`` by ``create_app``):

============================  ==================================================================================
``signed-in``                 a user signed in
``sign-in-refused``           refused, with why: ``invalid`` (name or password), ``locked``, ``disabled``; the
                              actor is the name as typed (cut to 64 characters) ``@console``
``locked-out``                the failure that locked the user out (after ``sign-in-refused``)
``signed-out``                a user signed out
``refused``                   an action refused: ``role`` (the user's roles may not take it) or ``csrf`` (the
                              form's token missing or wrong), with the action and the path
============================  ==================================================================================

Four-eyes requests and decisions are ledgered by :mod:`crmbridge.console.foureyes`; user administration by
``crmbridge users`` (with the operating-system actor, like every command).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crmbridge.sync.state.ledger import Action, LedgerEntryIn, format_actor

__all__ = ["CONSOLE_SYSTEM", "actor_for", "append", "append_entries", "console_actor", "make_audit", "publish"]

#: ``source_system`` of the console's own entries (sign-ins, refusals), so the ledger can be filtered on them
CONSOLE_SYSTEM = "console"
#: the longest user name recorded as given (a refused sign-in's name is whatever was typed)
NAME_WIDTH = 64

_EVENTS = {
    "signed-in": Action.SIGNED_IN,
    "sign-in-refused": Action.SIGN_IN_REFUSED,
    "signed-out": Action.SIGNED_OUT,
    "locked-out": Action.LOCKED_OUT,
    "refused": Action.REFUSED,
}


def console_actor(username: str) -> str:
    """``name@console`` for a user name as given: cut to :data:`NAME_WIDTH`, control characters and the brackets
    that delimit an annotation replaced, so the ledger's actor is one printable word."""
    name = "".join(c if c.isprintable() and c not in "[]" else "?" for c in username[:NAME_WIDTH]).strip()
    return f"{name or '(no name)'}@console"


def actor_for(req: Any, note: str | None = None) -> str:
    """The actor string of what the signed-in user of ``req`` (a :class:`crmbridge.console.web.ConsoleRequest`)
    causes, with an optional annotation (a reason, a ticket) the ledger stores beside it."""
    return format_actor(req.principal.actor, note)


def _runtime(target: Any) -> Any:
    state = getattr(target, "state", target)          # a ConsoleRequest, or the ConsoleState itself
    return getattr(state, "runtime", state)           # ... or a Runtime


def append(req: Any, *entries: LedgerEntryIn, tx: Any = None) -> list[int]:
    """Append ``entries`` with the signed-in user of ``req`` as their actor (an annotation given in the entry's
    ``actor_note`` is kept), sign the head, and publish it where configured. Inside ``tx`` when given (the caller
    commits and publishes), else in a transaction of its own. Returns the entries' seq."""
    fixed = [e.model_copy(update={"actor": req.principal.actor}) for e in entries]
    return append_entries(_runtime(req), fixed, tx=tx)


def append_entries(rt: Any, entries: list[LedgerEntryIn], *, tx: Any = None) -> list[int]:
    if tx is not None:
        ledger = tx.ledger(rt.signer, cipher=rt.cipher)
        out = ledger.append(entries)
        ledger.checkpoint()
        return [a.seq for a in out]
    with rt.store.transaction() as own:
        out_seqs = append_entries(rt, entries, tx=own)
    publish(rt)
    return out_seqs


def publish(rt: Any) -> None:
    """Publish the signed heads where the configuration says (nothing when it says nowhere)."""
    from crmbridge.sync.state.ledger_trust import publish_configured

    publish_configured(rt.config, rt.store.engine)


def make_audit(runtime: Any) -> Callable[..., None]:
    """The ``ConsoleState.audit`` hook: ``audit(event, actor, *, why=None, action=None, path=None)`` appends one
    ledger entry for a console event (see the table above). A failure to ledger propagates: the request fails
    rather than going unrecorded."""

    def audit(event: str, actor: str, *, why: str | None = None, action: str | None = None,
              path: str | None = None, **_: Any) -> None:
        kind = _EVENTS.get(event)
        if kind is None:
            raise ValueError(f"unknown console audit event {event!r}; known: {', '.join(sorted(_EVENTS))}")
        if event == "refused":
            reason = f"refused {action or '?'}: " + {"role": "the user's roles may not take it",
                                                     "csrf": "the form's CSRF token was missing or wrong",
                                                     "self-approval": "the requester may not decide their own "
                                                                      "request"}.get(why or "", why or "?")
            if path:
                reason += f" ({path[:200]})"
        elif event == "sign-in-refused":
            reason = f"sign-in refused: {why or 'invalid'}"
        elif event == "locked-out":
            reason = f"locked out after {why} failed sign-ins in a row" if why else "locked out"
        else:
            reason = event.replace("-", " ")
        append_entries(runtime, [LedgerEntryIn(action=kind, actor=actor, reason=reason, source_system=CONSOLE_SYSTEM,
                                        source_object=action)])

    return audit
