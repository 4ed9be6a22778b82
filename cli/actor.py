"""Who does what, for the ledger: the accountable actor of every command and the reveal of personal data.

The actor of a command is the operating-system user and host that ran it (``alice@ops-01``), whatever the options
say; ``--actor`` and ``--reason`` are an annotation stored beside it (``alice@ops-01 [ticket 4711]``), never a
replacement. Showing a C2 value in clear (``--reveal``) needs ``--reason``, is refused when the configuration says
``privacy.reveal: deny``, and appends a ``revealed`` ledger entry (who, which fields of which party, why) before
anything is shown.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crmbridge.core.errors import ConfigurationError

if TYPE_CHECKING:
    from crmbridge.sync.state.ledger import Ledger

__all__ = ["ActorOption", "ReasonOption", "RevealReasonOption", "check_reveal", "cli_actor", "os_actor",
           "record_reveal"]

ActorOption = Annotated[str | None, typer.Option(
    "--actor", help="An annotation recorded beside you (the operating-system user and host are always recorded): "
                    "a ticket, on whose behalf.")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why, recorded in the ledger.")]
RevealReasonOption = Annotated[str | None, typer.Option(
    "--reason", help="Why you reveal personal data (required with --reveal; recorded in the ledger).")]

#: the width of the actor columns (runs, conflicts): an annotation is cut to fit
_ACTOR_WIDTH = 128


def os_actor() -> str:
    """``user@host`` of this process (the uid when the user has no name)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):   # no login name and no passwd entry (a bare container)
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname() or 'unknown-host'}"


def cli_actor(note: str | None = None, reason: str | None = None) -> str:
    """The accountable actor with the ``--actor``/``--reason`` annotation, as one string the engine carries into
    the runs table and the ledger (which stores the annotation beside the actor)."""
    from crmbridge.sync.state.ledger import format_actor

    actor = os_actor()
    parts = [p.strip() for p in (note, None if reason is None else f"reason: {reason}") if p and p.strip()]
    text = format_actor(actor, "; ".join(parts))
    if len(text) > _ACTOR_WIDTH:
        text = format_actor(actor, "; ".join(parts)[:max(0, _ACTOR_WIDTH - len(actor) - 4)].rstrip() + "…")
    return text


def check_reveal(config: Any, reveal: bool, reason: str | None) -> None:
    """Refuse ``--reveal`` when the configuration forbids it, or without a reason."""
    if not reveal:
        return
    privacy = getattr(config, "privacy", None)
    if privacy is not None and privacy.reveal == "deny":
        raise ConfigurationError("--reveal is refused: this deployment forbids showing personal data in clear "
                                 "outside a four-eyes review (privacy.reveal: deny); the masked view stays available",
                                 where="privacy.reveal")
    if not reason or not reason.strip():
        raise ConfigurationError("--reveal needs --reason: every reveal of personal data is recorded in the ledger "
                                 "with who, what and why", where="--reason")


def record_reveal(ledger: Ledger, *, what: str, fields: Sequence[str], reason: str, note: str | None = None,
                  party_id: str | None = None, job: str | None = None, system: str | None = None,
                  object_name: str | None = None, record_id: str | None = None) -> None:
    """Ledger one reveal (then sign the head, so ``verify --require-signed`` covers it) — before the values are
    shown: a reveal that cannot be ledgered does not happen."""
    from crmbridge.sync.state.ledger import Action, LedgerEntryIn

    ledger.append([LedgerEntryIn(
        action=Action.REVEALED, party_id=party_id, job=job, source_system=system, source_object=object_name,
        source_id=record_id, changed_fields=sorted(set(fields)), actor=os_actor(), actor_note=note,
        reason=f"{what}: {reason.strip()}")])
    ledger.checkpoint()
