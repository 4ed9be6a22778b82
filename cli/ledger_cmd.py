"""``crmbridge ledger runs|show|history|export|verify|public-key``: the auditors' view of the sync ledger.

Everything shown is masked (the ledger holds masked values only; full diffs stay encrypted). ``verify`` works
offline from a JSONL export and a public key, without the database or any secret.
"""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crmbridge.cli.actor import ActorOption, RevealReasonOption, check_reveal, record_reveal
from crmbridge.cli.keys_cmd import ConfigOption, SecurityContext, UrlOption
from crmbridge.core.errors import ConfigurationError

__all__ = ["register"]

ledger_app = typer.Typer(help="Inspect, export and verify the tamper-evident sync ledger.", no_args_is_help=True)
console = Console()


def _when(value: str | None, opt: str, *, end: bool = False) -> datetime | None:
    """An ISO date or time (UTC unless it says otherwise). A plain date given to ``--until`` includes that whole
    day (``--since 2026-12-01 --until 2026-12-01``: the 1st of December)."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"not an ISO date or time (2026-12-07, 2026-12-07T09:30): {value!r}",
                                 where=opt) from None
    if end and len(value.strip()) == 10:
        dt += timedelta(days=1)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _short(value: object, width: int, *, tail: bool = False) -> str:
    """An id cut to ``width`` characters (the head of a UUID, the tail of a vendor's numeric id)."""
    text = "" if value is None else str(value)
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1):] if tail else text[:width - 1] + "…"


def _side(e: dict[str, Any], side: str) -> str:
    system, rid = e.get(f"{side}_system"), e.get(f"{side}_id")
    if not system:
        return ""
    return f"{system}:{_short(rid, 9, tail=True)}" if rid else str(system)


#: the history/show table: (header, width); 8 + 16 + 17 + 8 + 36 + 10 and a space between columns = 100 columns,
#: whatever the terminal: ids shortened (``ledger show --seq N`` has them whole), one line per entry
_COLUMNS = (("seq", 8), ("time (UTC)", 16), ("action", 17), ("party", 8), ("source→target / why", 36),
            ("by", 10))
#: entries that record a person's decision: the table shows why (their reason) instead of the route
_DECISIONS = frozenset(("conflict", "conflict-resolved", "erased", "erasure-lifted", "key-rotated", "revealed",
                        "signed-in", "sign-in-refused", "signed-out", "locked-out", "refused", "user-changed",
                        "four-eyes-requested", "four-eyes-approved", "four-eyes-rejected"))
TABLE_WIDTH = 100


def _entries_table(entries: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  title_justify="left", collapse_padding=True)
    for col, width in _COLUMNS:
        table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=width)
    for e in entries:
        route = "→".join(x for x in (_side(e, "source"), _side(e, "target")) if x)
        if e["action"] in _DECISIONS and e.get("reason") or not route:
            route = e.get("reason") or route
        table.add_row(str(e["seq"]), e["recorded_at"][:16].replace("T", " "), e["action"],
                      _short(e.get("party_id"), 8), Text(route), Text(_short(e.get("actor"), 10)))
    return table


def _print_entries(entries: list[dict[str, Any]], title: str, *, as_json: bool, values: bool,
                   clear: dict[int, Any] | None = None) -> None:
    if as_json:
        rows = [{k: v for k, v in e.items() if k != "diff_enc"} for e in entries]
        if clear is not None:
            for r in rows:
                if r["seq"] in clear:
                    r["clear_diff"] = clear[r["seq"]]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=1, default=str) + "\n")
        return
    out = Console(width=TABLE_WIDTH, soft_wrap=False) if not console.is_terminal else console
    out.print(_entries_table(entries, title))
    if values or clear is not None:
        _print_values(entries, clear)
    else:
        console.print("details (fields, masked values, payload sent, answer): add --values", style="dim")


RevealOption = Annotated[bool, typer.Option(
    "--reveal", help="Also decrypt and print the clear values behind the masked ones (needs --reason; ledgered with "
                     "who, which fields of which party, why; refused when privacy.reveal is deny).")]


def _reveal(ctx: SecurityContext, entries: list[dict[str, Any]], reason: str | None, note: str | None,
            what: str) -> dict[int, Any]:
    """The clear diffs of ``entries`` (seq → {path: [before, after]}, or a note when erased), each party's reveal
    ledgered first, in the same transaction."""
    from crmbridge.sync.security.crypto import DecryptionError

    check_reveal(ctx.config, True, reason)
    cipher = ctx.cipher()
    by_party: dict[str | None, set[str]] = {}
    for e in entries:
        if e.get("diff_enc"):
            by_party.setdefault(e.get("party_id"), set()).update(e.get("changed_fields") or [])
    out: dict[int, Any] = {}
    with ctx.transaction() as tx:
        ledger = tx.ledger(ctx.signer(), cipher=cipher)
        for party, fields in by_party.items():
            record_reveal(ledger, what=what, fields=sorted(fields), reason=reason or "", note=note, party_id=party)
        for e in entries:
            if not e.get("diff_enc"):
                continue
            try:
                out[e["seq"]] = ledger.decrypt_diff(e)
            except DecryptionError as exc:   # KeyDestroyedError: the party was erased
                out[e["seq"]] = f"[not readable: {exc.message if hasattr(exc, 'message') else exc}]"
    return out


@ledger_app.command("runs")
def runs(config: ConfigOption = None, url: UrlOption = None,
         limit: Annotated[int, typer.Option(min=1, help="Most recent N runs.")] = 50) -> None:
    """Runs recorded in the ledger with their entry counts per action."""
    ctx = SecurityContext.load(config, url)
    with ctx.transaction(refuse_writes=True) as tx:
        rows = tx.ledger().runs(limit=limit)
    table = Table(title="ledger runs")
    for col in ("run", "job", "first entry (UTC)", "last entry (UTC)", "entries", "actions"):
        table.add_column(col)
    for r in rows:
        acts = ", ".join(f"{k} {v}" for k, v in sorted(r["actions"].items()))
        table.add_row(r["run_id"], r["job"] or "", r["first"][:19].replace("T", " "),
                      r["last"][:19].replace("T", " "), str(r["entries"]), acts)
    console.print(table)


SinceOption = Annotated[str | None, typer.Option(
    "--since", help="From this date or UTC time (ISO 8601: 2026-12-07 or 2026-12-07T09:30), inclusive.")]
UntilOption = Annotated[str | None, typer.Option(
    "--until", help="Up to this UTC time, exclusive; a plain date includes that whole day.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the entries as JSON (masked, as stored).")]
ValuesOption = Annotated[bool, typer.Option(
    "--values", help="Also print each entry's fields, masked before/after values, the payload sent and the answer.")]


def _read(ctx: SecurityContext, **filters: Any) -> list[dict[str, Any]]:

    with ctx.transaction(refuse_writes=True) as tx:
        ledger = tx.ledger()
        return ledger.decode(list(ledger.iter_entries(**filters)))


@ledger_app.command("show")
def show(run_arg: Annotated[str | None, typer.Argument(metavar="[RUN_ID]", help="Run id (as --run).")] = None,
         run_id: Annotated[str | None, typer.Option("--run", help="Every entry of this run.")] = None,
         seq: Annotated[int | None, typer.Option("--seq", help="This one entry, with its details.")] = None,
         config: ConfigOption = None, url: UrlOption = None, values: ValuesOption = False,
         as_json: JsonOption = False, reveal: RevealOption = False, reason: RevealReasonOption = None,
         actor: ActorOption = None) -> None:
    """Every entry of one run (--run RUN_ID), or one entry (--seq N) with what was sent and answered."""
    run_id = run_id or run_arg
    if (run_id is None) == (seq is None):
        raise ConfigurationError("give --run RUN_ID or --seq N (one of them)")
    ctx = SecurityContext.load(config, url)
    check_reveal(ctx.config, reveal, reason)
    if seq is not None:
        entries = [e for e in _read(ctx, after=seq - 1, limit=1) if e["seq"] == seq] if seq > 0 else []
        title, values = f"ledger entry {seq}", True
    else:
        entries = _read(ctx, run_id=run_id)
        title = f"run {run_id}"
    if not entries:
        console.print(f"no ledger entries for {title}")
        raise SystemExit(1)
    clear = _reveal(ctx, entries, reason, actor, f"ledger show {title}") if reveal else None
    _print_entries(entries, title, as_json=as_json, values=values, clear=clear)


def _by_class(path: str, value: Any) -> Any:
    """A stored value as shown: one that carries the mask character was masked by its class when written and is
    shown as stored; any other is masked now by its path's class (an entry written by a writer that took a list
    of personal values such as ``name.aliases`` for C1 shows nothing in clear). C1 values stay readable."""
    from crmbridge.canonical.masking import mask_canonical

    if value is None or value in ("[]", "{}", "") or "*" in str(value):
        return value
    return mask_canonical(path, value)


def _print_values(entries: list[dict[str, Any]], clear: dict[int, Any] | None = None) -> None:
    for e in entries:
        head = f"{e['seq']} · {e['recorded_at'][:19].replace('T', ' ')} · {e['action']}"
        if e.get("job"):
            head += f" · job {e['job']} run {e.get('run_id') or '-'}"
        console.print(head, style="bold", highlight=False, markup=False)
        lines = [("party", e.get("party_id")),
                 ("source", "/".join(str(x) for x in (e.get("source_system"), e.get("source_object"),
                                                      e.get("source_id")) if x)),
                 ("target", "/".join(str(x) for x in (e.get("target_system"), e.get("target_object"),
                                                      e.get("target_id")) if x)),
                 ("by", e.get("actor") + (f" [{e['actor_note']}]" if e.get("actor_note") else "")),
                 ("reason", e.get("reason")), ("correlation id", e.get("correlation_id"))]
        for label, v in lines:
            if v:
                console.print(f"  {label}: {v}", highlight=False, markup=False)
        revealed = (clear or {}).get(e["seq"])
        if isinstance(revealed, str):
            console.print(f"  clear values: {revealed}", highlight=False, markup=False)
        for path in e.get("changed_fields") or []:
            before = _by_class(path, (e.get("masked_before") or {}).get(path))
            after = _by_class(path, (e.get("masked_after") or {}).get(path))
            if isinstance(revealed, dict) and path in revealed:
                before, after = revealed[path]
                console.print(f"  {path}: {before!r} → {after!r} (clear)", highlight=False, markup=False)
            else:
                console.print(f"  {path}: {before!r} → {after!r}", highlight=False, markup=False)
        _print_lineage(e)


def _shown(value: Any) -> str:
    """A stored payload or answer value as JSON text (masked when it was written: shown as stored)."""
    from crmbridge.sync.state.ledger import canonical_json

    return canonical_json(value) if isinstance(value, dict | list) else json.dumps(value, ensure_ascii=False)


def _print_lineage(e: dict[str, Any]) -> None:
    """What a write sent (one vendor field a line, masked as stored), what the vendor answered, which mappings."""
    def out(text: str) -> None:
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    payload, answer, versions = e.get("payload"), e.get("answer"), e.get("mapping_versions")
    if payload is not None:
        where = "/".join(str(x) for x in (e.get("target_system"), e.get("target_object")) if x)
        out(f"  sent{' to ' + where if where else ''} ({len(payload)} fields, masked):")
        for name, value in payload.items():
            out(f"    {name}: {_shown(value)}")
    if answer is not None:
        out("  answer: " + (", ".join(f"{k} {_shown(v) if k == 'message' else v}" for k, v in answer.items())
                            or "(none)"))
    if versions:
        out("  mappings: " + ", ".join(f"{name} @ {digest}" for name, digest in versions.items()))


@ledger_app.command("history")
def history(
    party_arg: Annotated[str | None, typer.Argument(metavar="[PARTY_ID]", help="Canonical party id.")] = None,
    party_id: Annotated[str | None, typer.Option("--party", help="Canonical party id.")] = None,
    identifier: Annotated[str | None, typer.Option(
        "--identifier", help="SCHEME:VALUE, e.g. CN_RIC:11010519491231002X (looked up by blind index).")] = None,
    system: Annotated[str | None, typer.Option("--system", help="With --id: a system of the configuration.")]
    = None,
    object_name: Annotated[str | None, typer.Option("--object", help="With --id: the system's object.")] = None,
    record_id: Annotated[str | None, typer.Option("--id", help="A record id in --system (its party's history).")]
    = None,
    since: SinceOption = None, until: UntilOption = None,
    config: ConfigOption = None, url: UrlOption = None, values: ValuesOption = False, as_json: JsonOption = False,
    reveal: RevealOption = False, reason: RevealReasonOption = None, actor: ActorOption = None,
) -> None:
    """One party's history across runs: by party id, by identifier (blind index) or by a system's record id."""
    from crmbridge.sync.state.ledger import decode_entry

    party_id = party_id or party_arg
    given = [x is not None for x in (party_id, identifier, record_id)]
    if sum(given) != 1:
        raise ConfigurationError("give a PARTY_ID or --identifier SCHEME:VALUE or --system S [--object O] --id X "
                                 "(one of them; --party is PARTY_ID)")
    if (record_id is None) != (system is None):
        raise ConfigurationError("--id needs --system (and --system needs --id)", where="--system")
    window = {"since": _when(since, "--since"), "until": _when(until, "--until", end=True)}
    ctx = SecurityContext.load(config, url)
    check_reveal(ctx.config, reveal, reason)
    with ctx.transaction(refuse_writes=True) as tx:
        ledger = tx.ledger()
        own: list[dict[str, Any]] = []
        if identifier is not None:
            scheme, sep, value = identifier.partition(":")
            if not sep or not value:
                raise ConfigurationError("must be SCHEME:VALUE", where="--identifier")
            from crmbridge.sync.security.privacy import party_ids_for_identifier

            # the identity index, and erased parties' suppression entries (their index entries are gone)
            ids = party_ids_for_identifier(tx, ctx.cipher(), scheme, value)
            what = f"{scheme}:{'*' * 4}"
        elif record_id is not None:
            # the record's own entries (a failure has no party yet), and its parties' whole history
            rec = (system, object_name, record_id)
            ids = sorted({e["party_id"] for e in ledger.iter_entries(record=rec)  # type: ignore[arg-type]
                          if e.get("party_id")})
            own = list(ledger.iter_entries(record=rec, **window))  # type: ignore[arg-type]
            what = f"{system}/{object_name or '*'}/{record_id}"
        else:
            ids, what = [party_id], f"party {party_id}"  # type: ignore[list-item]
        entries = {e["seq"]: e for e in (ledger.iter_entries(party_ids=ids, **window) if ids else [])}
        entries.update({e["seq"]: e for e in own})
        sets = ledger.version_sets(entries.values())
    rows = [decode_entry(entries[k], sets) for k in sorted(entries)]
    if not rows:
        if as_json:
            sys.stdout.write("[]\n")
        else:
            console.print(f"no ledger entries for {what}", highlight=False, markup=False)
        raise SystemExit(1)
    parties = ("party " + ", ".join(ids)) if ids else "no party"
    title = f"history of {what}: {len(rows)} entries" if party_id else \
        f"history of {what} ({parties}): {len(rows)} entries"
    clear = _reveal(ctx, rows, reason, actor, f"ledger history of {what}") if reveal else None
    _print_entries(rows, title, as_json=as_json, values=values, clear=clear)


@ledger_app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl (jsonl includes checkpoints: verifiable).")]
    = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    since: SinceOption = None, until: UntilOption = None,
    job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
    action: Annotated[list[str] | None, typer.Option(
        "--action", help="Only this action (repeatable): created, updated, failed, conflict-resolved, revealed…")]
    = None,
    config: ConfigOption = None, url: UrlOption = None,
) -> None:
    """Export entries with masked values only (the full diffs stay ciphertext).

    A full JSONL export verifies offline (`ledger verify --file`); a filtered one (--since/--until/--job/--action)
    is for reading: its gaps are reported as missing entries.
    """
    from crmbridge.sync.state.ledger import Action, export_ledger
    from crmbridge.sync.state.store import open_private

    if fmt not in ("csv", "jsonl"):
        raise ConfigurationError(f"unknown format {fmt!r}; use csv or jsonl", where="--format")
    known = {a.value for a in Action}
    for a in action or []:
        if a not in known:
            raise ConfigurationError(f"unknown action {a!r}; known: {', '.join(sorted(known))}", where="--action")
    filters = {"since": _when(since, "--since"), "until": _when(until, "--until", end=True), "job": job,
               "actions": action or None}
    ctx = SecurityContext.load(config, url)
    with ctx.transaction(refuse_writes=True) as tx:
        ledger = tx.ledger()
        if output is None:
            n = export_ledger(ledger, sys.stdout, fmt=fmt, **filters)
        else:
            with open_private(output, newline="") as fh:   # 0600 whatever the umask
                n = export_ledger(ledger, fh, fmt=fmt, **filters)
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
    from crmbridge.sync.state.ledger import load_public_key
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
        with ctx.transaction(refuse_writes=True) as tx:
            result = verify_database(tx, public_keys=keys, trusted=pins, published=heads, known_keys=known,
                                     require_signed=require_signed, expected_head=head, archive=with_archive)
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
    from crmbridge.sync.state.store import open_private

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
    with ctx.transaction(refuse_writes=True) as tx:
        seq, h = tx.ledger().head()
    sys.stdout.write(f"{seq}:{h}\n")


def register(app: typer.Typer) -> None:
    import crmbridge.cli.ledger_trust_cmd  # noqa: F401  (checkpoint, fingerprint, rotate-signing-key, archive...)

    app.add_typer(ledger_app, name="ledger")
