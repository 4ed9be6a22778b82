"""``crmbridge erase PARTY_ID``: remove a party's personal data from crmbridge's stores, for good, and keep it out.

Crypto-shredding (the party's data keys are destroyed, so every ciphertext of that party, ledger diffs included,
is unreadable), plus deletion of its snapshots, conflicts, identity-index entries and dead letters; the ledger
records the erasure and still verifies. A suppression entry (blind-indexed identifiers, the vendor records it was
known as) makes every later run skip the party with a ledgered ``suppressed-erased``; the next run of each job
writing to a CRM that holds the party deletes or anonymises it there, by the job's delete policy.

``crmbridge erase --lift PARTY_ID --reason TEXT`` (or ``--lift --identifier SCHEME:VALUE``) is the deliberate way
back for a person who becomes a customer again: ledgered with the actor; the next run ingests them as a new party.
See docs/erasure.md.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from crmbridge.cli.actor import ActorOption, cli_actor
from crmbridge.cli.keys_cmd import ConfigOption, SecurityContext, UrlOption
from crmbridge.cli.ledger_trust_cmd import publish_after
from crmbridge.core.errors import ConfigurationError

__all__ = ["register"]

console = Console()


def erase(
    party_id: Annotated[str | None, typer.Argument(help="Canonical party id to erase (or whose erasure to lift).")]
    = None,
    reason: Annotated[str | None, typer.Option(help="Why (recorded in the ledger; no personal data). Required "
                                               "with --lift.")] = None,
    lift: Annotated[bool, typer.Option("--lift", help="Lift the erasure of a person who is a customer again (e.g. "
                                       "a new account opening): the next run ingests them as a new party.")]
    = False,
    identifier: Annotated[str | None, typer.Option(
        "--identifier", help="With --lift: find the erasure by SCHEME:VALUE (e.g. CN_RIC:11010519491231002X, "
        "looked up by blind index) instead of PARTY_ID.")] = None,
    actor: ActorOption = None,
    drop_xref: Annotated[bool, typer.Option("--drop-xref", help="Also delete the cross-reference (vendor ids); the "
                                            "suppression entry keeps what propagating the erasure needs.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None, url: UrlOption = None,
) -> None:
    """Erase PARTY_ID's personal data from crmbridge's stores (irreversible) and keep it from coming back."""
    from crmbridge.sync.security.privacy import erase_party

    who = cli_actor(actor)   # the operating-system user and host; --actor is an annotation beside them
    if lift:
        _lift(party_id, identifier, reason, who, yes, config, url)
        return
    if party_id is None or identifier is not None:
        raise ConfigurationError("give the PARTY_ID to erase (--identifier is for --lift)")
    if not yes:
        typer.confirm(f"Irreversibly erase party {party_id} from crmbridge's stores?", abort=True)
    ctx = SecurityContext.load(config, url)
    cipher = ctx.cipher()
    jobs = ctx.config.jobs.values()
    sources = {(j.source_system, j.source_object) for j in jobs}
    # the CRMs the jobs write to (a system some job reads from, core banking, is never erased by crmbridge)
    targets = {(j.target_system, j.target_object) for j in jobs} - sources
    with ctx.transaction() as tx:
        ledger = tx.ledger(ctx.signer(), cipher=cipher)
        report = erase_party(tx, cipher, party_id, ledger=ledger, reason=reason or "erasure request (PIPL Art. 47)",
                             actor=who, drop_xref=drop_xref, targets=targets)
        ledger.checkpoint()
    publish_after(ctx)
    rows = ", ".join(f"{t} {n}" for t, n in sorted(report.rows_deleted.items())) or "none"
    console.print(f"erased party {party_id}: {report.keys_destroyed} data key(s) destroyed, rows deleted: {rows}; "
                  f"ledger entry {report.ledger_seq}", highlight=False)
    console.print(f"suppressed from now on by {report.suppressed_by} identifier/source key(s)", highlight=False)
    if report.to_propagate:
        console.print(f"to be deleted or anonymised by the next run of the jobs writing to them: "
                      f"{', '.join(report.to_propagate)}", highlight=False)


def _lift(party_id: str | None, identifier: str | None, reason: str | None, actor: str, yes: bool,
          config: object, url: str | None) -> None:
    from crmbridge.sync.security.privacy import lift_erasure

    ident = None
    if identifier is not None:
        scheme, sep, value = identifier.partition(":")
        if not sep or not value:
            raise ConfigurationError("must be SCHEME:VALUE", where="--identifier")
        ident = (scheme, value)
    if not reason or not reason.strip():
        raise ConfigurationError("lifting an erasure needs a reason (recorded in the ledger)", where="--reason")
    if not yes:
        typer.confirm("Lift the erasure, so that the next run ingests this person as a new party?", abort=True)
    ctx = SecurityContext.load(config, url)  # type: ignore[arg-type]
    cipher = ctx.cipher()
    job_sources = {name: (j.source_system, j.source_object) for name, j in ctx.config.jobs.items()}
    with ctx.transaction() as tx:
        ledger = tx.ledger(ctx.signer(), cipher=cipher)
        report = lift_erasure(tx, cipher, reason=reason, actor=actor, party_id=party_id, identifier=ident,
                              ledger=ledger, job_sources=job_sources)
        ledger.checkpoint()
    publish_after(ctx)
    console.print(f"erasure lifted for party {', '.join(report.party_ids)} (ledger entry "
                  f"{', '.join(map(str, report.ledger_seqs))}); the next run ingests the person as a new party",
                  highlight=False)
    for job, ref in report.rereads:
        console.print(f"  {job}: reads {ref} again", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("erase")(erase)
