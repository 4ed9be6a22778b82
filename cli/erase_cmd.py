"""``crmbridge erase PARTY_ID``: remove a party's personal data from crmbridge's stores, for good.

Crypto-shredding (the party's data keys are destroyed, so every ciphertext of that party, ledger diffs included,
is unreadable), plus deletion of its snapshots, conflicts, identity-index entries and dead letters; the ledger
records the erasure and still verifies. CRMs are not touched here: the deletion is propagated by the jobs'
delete policy (the cross-reference is kept for that unless ``--drop-xref``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from crmbridge.cli.keys_cmd import ConfigOption, SecurityContext, UrlOption
from crmbridge.sync.ledger import Ledger
from crmbridge.sync.privacy import erase_party

__all__ = ["register"]

console = Console()


def erase(
    party_id: Annotated[str, typer.Argument(help="Canonical party id to erase.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger; no personal data).")]
    = "erasure request (PIPL Art. 47)",
    drop_xref: Annotated[bool, typer.Option("--drop-xref", help="Also delete the cross-reference (vendor ids); "
                                            "then the deletion can no longer be propagated to the CRMs.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None, url: UrlOption = None,
) -> None:
    """Erase PARTY_ID's personal data from crmbridge's stores (irreversible)."""
    if not yes:
        typer.confirm(f"Irreversibly erase party {party_id} from crmbridge's stores?", abort=True)
    ctx = SecurityContext.load(config, url)
    cipher = ctx.cipher()
    with ctx.transaction() as conn:
        ledger = Ledger(conn, ctx.signer(), cipher=cipher)
        report = erase_party(conn, cipher, party_id, ledger=ledger, reason=reason, actor="user",
                             drop_xref=drop_xref)
        ledger.checkpoint()
    rows = ", ".join(f"{t} {n}" for t, n in sorted(report.rows_deleted.items())) or "none"
    console.print(f"erased party {party_id}: {report.keys_destroyed} data key(s) destroyed, rows deleted: {rows}; "
                  f"ledger entry {report.ledger_seq}")


def register(app: typer.Typer) -> None:
    app.command("erase")(erase)
