"""``crmbridge ledger checkpoint|fingerprint|rotate-signing-key|publish|archive|verifier``: trust in the ledger.

Signed heads on demand, the signing key's pinned fingerprint and its hand-over, head publishing, retention into
sealed segments and the standalone verifier (docs/auditor.md).
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from crmbridge.cli.actor import cli_actor
from crmbridge.cli.keys_cmd import ConfigOption, SecurityContext, UrlOption
from crmbridge.cli.ledger_cmd import ledger_app
from crmbridge.core.errors import ConfigurationError

if TYPE_CHECKING:
    from crmbridge.sync.state.ledger import LedgerSigner

__all__ = ["publish_after"]

console = Console()


def publish_after(ctx: SecurityContext) -> None:
    """Publish the checkpoints just committed to ``ledger.publish`` (a failed target is retried next time)."""
    from crmbridge.sync.state.ledger_trust import publish_configured

    if not ctx.config.ledger.publish:
        return
    with ctx.store() as store:
        for problem in publish_configured(ctx.config, store):
            console.print(f"[yellow]warning[/]: ledger head not published to {problem}", highlight=False)


@ledger_app.command("checkpoint")
def checkpoint_cmd(config: ConfigOption = None, url: UrlOption = None) -> None:
    """Sign the current head now (and publish it): entries appended since the last checkpoint become signed."""
    from crmbridge.sync.state.ledger_trust import sign_now

    ctx = SecurityContext.load(config, url)
    signer = ctx.signer(required=True)
    with ctx.transaction() as tx:
        cp = sign_now(tx, signer)
    if cp is None:
        console.print("the head is already signed by the current key")
    else:
        console.print(f"signed checkpoint: {cp['tree_size']}:{cp['chain_head']} (key {cp['key_id']})",
                      highlight=False)
    publish_after(ctx)


@ledger_app.command("fingerprint")
def fingerprint_cmd(
    public_key: Annotated[Path | None, typer.Option("--public-key", help="Of this public key (PEM) instead of the "
                                                    "configured signing key.")] = None,
    config: ConfigOption = None,
) -> None:
    """Print the signing key's fingerprint: pin it in ledger.trusted_keys and give it to the auditors to keep."""
    from crmbridge.sync.state.ledger import load_public_key
    from crmbridge.sync.state.ledger_trust import fingerprint

    if public_key is not None:
        sys.stdout.write(fingerprint(load_public_key(public_key)) + "\n")
        return
    signer = SecurityContext.load(config, None).signer(required=True)
    assert signer is not None
    sys.stdout.write(fingerprint(signer) + "\n")


@ledger_app.command("rotate-signing-key")
def rotate_signing_key_cmd(
    new_key_file: Annotated[Path | None, typer.Option(
        "--new-key-file", help="Write the new key here (default, for a file: signing key: in its place, the old "
        "one kept as PATH.retired-KEYID).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the ledger.")] = None,
    actor: Annotated[str | None, typer.Option(help="Annotation to the OS user recorded as actor.")] = None,
    config: ConfigOption = None, url: UrlOption = None,
) -> None:
    """New ledger signing key: the hand-over is ledgered and signed by both keys; verify follows the chain."""
    from crmbridge.sync.state.ledger import generate_signing_key
    from crmbridge.sync.state.ledger_trust import fingerprint, rotate_signing_key

    ctx = SecurityContext.load(config, url)
    old = ctx.signer(required=True)
    assert old is not None
    current = ctx.signing_key_path()
    target = new_key_file or current
    if target is None:
        raise ConfigurationError("keys.signing_key is not a file: give --new-key-file PATH and point "
                                 "keys.signing_key at it afterwards", where="--new-key-file")
    staging = target.with_name(target.name + ".new")
    if staging.exists():
        raise ConfigurationError(f"{staging} exists (an interrupted rotation?); move it away first")
    new = generate_signing_key(staging)
    try:
        with ctx.transaction() as tx:
            seq = rotate_signing_key(tx, old, new, actor=cli_actor(actor), reason=reason)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    if target == current:
        retired = current.with_name(f"{current.name}.retired-{old.key_id}")
        os.replace(current, retired)
        os.replace(staging, current)
        console.print(f"old key kept as {retired} (0600): destroy it once nothing signs with it", highlight=False)
    else:
        os.replace(staging, target)
        console.print(f"point keys.signing_key at file:{target} now: the old key signs nothing after the "
                      "hand-over", highlight=False)
    console.print(f"signing key {old.key_id} handed over to {new.key_id} at ledger entry {seq}, signed by both; "
                  f"new fingerprint {fingerprint(new)}", highlight=False)
    publish_after(ctx)


@ledger_app.command("publish")
def publish_cmd(config: ConfigOption = None, url: UrlOption = None) -> None:
    """Publish every checkpoint not yet sent to the ledger.publish targets (runs do it after each run)."""
    from crmbridge.sync.state.ledger_trust import publish_configured

    ctx = SecurityContext.load(config, url)
    if not ctx.config.ledger.publish:
        raise ConfigurationError("no publishing target configured", where="ledger.publish")
    with ctx.store() as store:
        problems = publish_configured(ctx.config, store)
    for p in problems:
        console.print(f"[red]not published[/]: {p}", highlight=False)
    if problems:
        raise SystemExit(1)
    console.print("ledger heads published")


@ledger_app.command("archive")
def archive_cmd(
    before: Annotated[str, typer.Option("--before", help="Archive entries recorded before this UTC date/time.")],
    to: Annotated[Path, typer.Option("--to", help="Directory of the sealed segment files.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None, url: UrlOption = None,
) -> None:
    """Move old entries into a sealed, signed segment and remove them from the database (an anchor keeps the chain
    verifiable: `ledger verify --with-archive DIR`). On PostgreSQL run it as the owner role (--url)."""
    from crmbridge.sync.state.ledger_archive import archive

    try:
        when = datetime.fromisoformat(before.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"not an ISO date or time: {before!r}", where="--before") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    ctx = SecurityContext.load(config, url)
    signer: LedgerSigner | None = ctx.signer(required=True)
    assert signer is not None
    if not yes:
        typer.confirm(f"Move ledger entries recorded before {when.isoformat()} to {to} and remove them from the "
                      "database?", abort=True)
    with ctx.transaction() as tx:
        res = archive(tx, signer, before=when, to=to)
    if res is None:
        console.print("nothing to archive: no signed checkpoint covers entries recorded before that date")
        return
    console.print(f"archived entries {res.first_seq}..{res.last_seq} ({res.entries} entries, {res.checkpoints} "
                  f"checkpoints) to {res.segment} and {res.manifest.name}; keep the directory with the exports",
                  highlight=False)


@ledger_app.command("verifier")
def verifier_cmd() -> None:
    """Print the standalone verifier (one Python file: standard library + cryptography) for auditors."""
    sys.stdout.write(resources.files("crmbridge.sync.state").joinpath("verify_ledger.py").read_text(encoding="utf-8"))
