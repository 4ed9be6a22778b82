"""``crmbridge ledger runs|show|history|export|verify|public-key``: the auditors' view of the sync ledger.

Everything shown is masked (the ledger holds masked values only; full diffs stay encrypted). ``verify`` works
offline from a JSONL export and a public key, without the database or any secret.
"""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from crmbridge.canonical.masking import mask_canonical
from crmbridge.cli.keys_cmd import ConfigOption, SecurityContext, UrlOption
from crmbridge.core.errors import ConfigurationError
from crmbridge.sync.state.ledger import (
    Ledger,
    export_ledger,
    load_public_key,
)
from crmbridge.sync.state.store import open_private

__all__ = ["register"]

ledger_app = typer.Typer(help="Inspect, export and verify the tamper-evident sync ledger.", no_args_is_help=True)
console = Console()


def _when(value: str | None, opt: str) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"not an ISO date or time: {value!r}", where=opt) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _entries_table(entries: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for col in ("seq", "time (UTC)", "run", "job", "action", "party", "source → target", "fields", "actor"):
        table.add_column(col, overflow="fold")
    for e in entries:
        src = "/".join(x for x in (e.get("source_system"), e.get("source_object"), e.get("source_id")) if x)
        tgt = "/".join(x for x in (e.get("target_system"), e.get("target_object"), e.get("target_id")) if x)
        route = f"{src} → {tgt}" if src or tgt else ""
        fields = ", ".join(e.get("changed_fields") or [])
        if e.get("reason"):
            fields = f"{fields} ({e['reason']})" if fields else e["reason"]
        table.add_row(str(e["seq"]), e["recorded_at"][:19].replace("T", " "), e.get("run_id") or "",
                      e.get("job") or "", e["action"], e.get("party_id") or "", route, fields, e.get("actor") or "")
    return table


@ledger_app.command("runs")
def runs(config: ConfigOption = None, url: UrlOption = None,
         limit: Annotated[int, typer.Option(min=1, help="Most recent N runs.")] = 50) -> None:
    """Runs recorded in the ledger with their entry counts per action."""
    ctx = SecurityContext.load(config, url)
    engine = ctx.engine()
    try:
        with engine.connect() as conn:
            rows = Ledger(conn).runs(limit=limit)
    finally:
        engine.dispose()
    table = Table(title="ledger runs")
    for col in ("run", "job", "first entry (UTC)", "last entry (UTC)", "entries", "actions"):
        table.add_column(col)
    for r in rows:
        acts = ", ".join(f"{k} {v}" for k, v in sorted(r["actions"].items()))
        table.add_row(r["run_id"], r["job"] or "", r["first"][:19].replace("T", " "),
                      r["last"][:19].replace("T", " "), str(r["entries"]), acts)
    console.print(table)


@ledger_app.command("show")
def show(run_id: Annotated[str, typer.Argument(help="Run id.")], config: ConfigOption = None,
         url: UrlOption = None,
         values: Annotated[bool, typer.Option("--values", help="Also print masked before/after values.")] = False,
         ) -> None:
    """Every entry of one run."""
    ctx = SecurityContext.load(config, url)
    engine = ctx.engine()
    try:
        with engine.connect() as conn:
            entries = list(Ledger(conn).iter_entries(run_id=run_id))
    finally:
        engine.dispose()
    if not entries:
        console.print(f"no ledger entries for run {run_id}")
        raise SystemExit(1)
    console.print(_entries_table(entries, f"run {run_id}"))
    if values:
        _print_values(entries)


def _by_class(path: str, value: Any) -> Any:
    """A stored value as shown: one that carries the mask character was masked by its class when written and is
    shown as stored; any other is masked now by its path's class (an entry written by a writer that took a list
    of personal values such as ``name.aliases`` for C1 shows nothing in clear). C1 values stay readable."""
    if value is None or value in ("[]", "{}", "") or "*" in str(value):
        return value
    return mask_canonical(path, value)


def _print_values(entries: list[dict[str, Any]]) -> None:
    for e in entries:
        for path in e.get("changed_fields") or []:
            before = _by_class(path, (e.get("masked_before") or {}).get(path))
            after = _by_class(path, (e.get("masked_after") or {}).get(path))
            console.print(f"  {e['seq']}: {path}: {before!r} → {after!r}", highlight=False, markup=False)


@ledger_app.command("history")
def history(
    party_id: Annotated[str | None, typer.Argument(help="Canonical party id.")] = None,
    identifier: Annotated[str | None, typer.Option(
        "--identifier", help="SCHEME:VALUE, e.g. CN_RIC:11010519491231002X (looked up by blind index).")] = None,
    config: ConfigOption = None, url: UrlOption = None,
    values: Annotated[bool, typer.Option("--values", help="Also print masked before/after values.")] = False,
) -> None:
    """One party's history across runs, by party id or by identifier."""
    if (party_id is None) == (identifier is None):
        raise ConfigurationError("give a PARTY_ID or --identifier SCHEME:VALUE (one of them)")
    ctx = SecurityContext.load(config, url)
    engine = ctx.engine()
    try:
        with engine.connect() as conn:
            if identifier is not None:
                scheme, sep, value = identifier.partition(":")
                if not sep or not value:
                    raise ConfigurationError("must be SCHEME:VALUE", where="--identifier")
                from crmbridge.sync.security.privacy import party_ids_for_identifier

                # the identity index, and erased parties' suppression entries (their index entries are gone)
                ids = party_ids_for_identifier(conn, ctx.cipher(), scheme, value)
            else:
                ids = [party_id]  # type: ignore[list-item]
            entries = list(Ledger(conn).iter_entries(party_ids=ids)) if ids else []
    finally:
        engine.dispose()
    if not entries:
        console.print("no ledger entries for this party")
        raise SystemExit(1)
    title = f"history of {', '.join(ids)}"
    console.print(_entries_table(entries, title))
    if values:
        _print_values(entries)


@ledger_app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl (jsonl includes checkpoints: verifiable).")]
    = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    since: Annotated[str | None, typer.Option(help="From this UTC time (ISO 8601), inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this UTC time (ISO 8601), exclusive.")] = None,
    job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
    config: ConfigOption = None, url: UrlOption = None,
) -> None:
    """Export entries with masked values only (the full diffs stay ciphertext).

    A full JSONL export verifies offline (`ledger verify --file`); a filtered one (--since/--until/--job) is for
    reading: its gaps are reported as missing entries.
    """
    if fmt not in ("csv", "jsonl"):
        raise ConfigurationError(f"unknown format {fmt!r}; use csv or jsonl", where="--format")
    ctx = SecurityContext.load(config, url)
    engine = ctx.engine()
    try:
        with engine.connect() as conn:
            ledger = Ledger(conn)
            if output is None:
                n = export_ledger(ledger, sys.stdout, fmt=fmt, since=_when(since, "--since"),
                                  until=_when(until, "--until"), job=job)
            else:
                with open_private(output, newline="") as fh:   # 0600 whatever the umask
                    n = export_ledger(ledger, fh, fmt=fmt, since=_when(since, "--since"),
                                      until=_when(until, "--until"), job=job)
    finally:
        engine.dispose()
    if output is not None:
        console.print(f"exported {n} entries to {output}")


@ledger_app.command("verify")
def verify(
    public_key: Annotated[list[Path] | None, typer.Option(
        "--public-key", help="An Ed25519 public key (PEM) to trust (repeatable).")] = None,
    trusted: Annotated[list[str] | None, typer.Option(
        "--trusted", help="A pinned signing-key fingerprint to trust (repeatable; adds to ledger.trusted_keys).")]
    = None,
    file: Annotated[Path | None, typer.Option("--file", help="Verify this JSONL export offline (no database).")]
    = None,
    published: Annotated[list[Path] | None, typer.Option(
        "--published", help="Published heads (the ledger.publish file, or a copy): any truncation behind one of "
        "them is tampering (repeatable).")] = None,
    with_archive: Annotated[Path | None, typer.Option(
        "--with-archive", help="Directory of sealed archive segments: verify archive and ledger as one chain.")]
    = None,
    require_signed: Annotated[bool, typer.Option(
        "--require-signed", help="Entries after the last trusted signed checkpoint count as tampering.")] = False,
    expected_head: Annotated[str | None, typer.Option(
        "--expected-head", help="SEQ:HASH from an earlier verification or checkpoint the ledger must contain.")]
    = None,
    config: ConfigOption = None, url: UrlOption = None,
) -> None:
    """Recompute hashes, links, Merkle roots and trusted signatures; name the first entry that does not match.

    Exit 0: OK; 1: tampered; 2: no trust anchor (no --public-key, --trusted or ledger.trusted_keys): a verdict
    needs a key the operators cannot replace.
    """
    from crmbridge.sync.state import verify_ledger as vl
    from crmbridge.sync.state.ledger_trust import read_published, verify_database, verify_loaded

    keys = [load_public_key(p) for p in public_key or []]
    pins = list(trusted or [])
    heads = read_published(published or [])
    head = None
    if expected_head is not None:
        seq, _, h = expected_head.partition(":")
        if not seq.isdigit() or len(h) != 64:
            raise ConfigurationError("must be SEQ:HASH (64 hex)", where="--expected-head")
        head = (int(seq), h.lower())
    if file is not None:
        try:
            entries, cps, anchor = vl.load_export(file)
        except ValueError as exc:
            raise ConfigurationError(str(exc), where="--file") from None
        result = verify_loaded(entries, cps, anchor, public_keys=keys, trusted=pins, published=heads,
                               require_signed=require_signed, expected_head=head, archive=with_archive)
        source = str(file)
    else:
        ctx = SecurityContext.load(config, url)
        pins += ctx.config.ledger.trusted_keys
        signer = ctx.signer()
        known = [signer.public_key] if signer is not None else []
        unpinned = not pins and not keys and signer is not None
        if unpinned:   # nothing pinned: the configured key is all there is (said below)
            keys, known = known, []
        engine = ctx.engine()
        try:
            with engine.connect() as conn:
                result = verify_database(conn, public_keys=keys, trusted=pins, published=heads, known_keys=known,
                                         require_signed=require_signed, expected_head=head, archive=with_archive)
        finally:
            engine.dispose()
        if unpinned:
            result.warnings.append("no ledger.trusted_keys pinned: trusted the signing key the configuration points "
                                   "to, so a replaced key and history re-signed with it would pass; pin "
                                   "`crmbridge ledger fingerprint` in ledger.trusted_keys")
        source = "database"
    out = io.StringIO()
    vl.render(result, source, out)
    for line in out.getvalue().splitlines():
        style = "green" if line.startswith("OK") else "bold red" if line.startswith(("TAMPERED", "NOT")) else \
            "yellow" if line.startswith("warning") else None
        console.print(line, style=style, highlight=False, markup=False, soft_wrap=True)
    if not result.anchored:
        raise SystemExit(2)
    if not result.ok:
        raise SystemExit(1)


@ledger_app.command("public-key")
def public_key_cmd(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the PEM here.")] = None,
    config: ConfigOption = None,
) -> None:
    """Print (or write) the Ed25519 public key auditors verify checkpoints with."""
    ctx = SecurityContext.load(config, None)
    signer = ctx.signer(required=True)
    assert signer is not None
    pem = signer.public_pem()
    if output is None:
        sys.stdout.write(pem)
    else:
        with open_private(output, encoding="ascii") as fh:
            fh.write(pem)
        console.print(f"wrote public key {signer.key_id} to {output}")


@ledger_app.command("head")
def head_cmd(config: ConfigOption = None, url: UrlOption = None) -> None:
    """Print SEQ:HASH of the chain head (keep it outside the database for --expected-head)."""
    ctx = SecurityContext.load(config, url)
    engine = ctx.engine()
    try:
        with engine.connect() as conn:
            seq, h = Ledger(conn).head()
    finally:
        engine.dispose()
    sys.stdout.write(f"{seq}:{h}\n")


def register(app: typer.Typer) -> None:
    import crmbridge.cli.ledger_trust_cmd  # noqa: F401  (checkpoint, fingerprint, rotate-signing-key, archive...)

    app.add_typer(ledger_app, name="ledger")
