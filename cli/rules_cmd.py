"""``crmbridge rules validate|preview|schema``: segmentation and lifecycle rules files (docs/rules.md).

- ``validate [FILES...]`` checks rules files (default ``mappings/rules.yaml``) and prints every problem as
  ``file:line: key.path: message``; exit 2 when any file has an error.
- ``preview FILE --party ID`` derives the fields of one party from the state store (its stored snapshots: the
  newest is the party, all of them the AUM-band history; its holdings as the holdings jobs last read them,
  ``StoreTx.holdings_of``), or
  ``--input JSON`` from a document ``{"party": {...}, "holdings": [...], "history": [...]}``, and shows the
  derivation step by step, values masked by their class; a bad document exits 3.
- ``schema`` prints the JSON Schema of the language (``mappings/rules.schema.json`` is this output).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crmbridge.cli._common import ConfigOption
from crmbridge.core.errors import BadResponseError, ConfigurationError, ForbiddenDataError, ValidationError

__all__ = ["register"]

rules_app = typer.Typer(help="Validate and preview segmentation and lifecycle rules.", no_args_is_help=True)

EXIT_CONFIG = 2
EXIT_RECORD = 3


def _default_files() -> list[Path]:
    here = Path("mappings") / "rules.yaml"
    if here.is_file():
        return [here]
    import crmbridge.mappings as pkg

    shipped = Path(pkg.__file__).parent / "rules.yaml"
    return [shipped] if shipped.is_file() else []


@rules_app.command("validate")
def validate(
    files: Annotated[list[Path] | None, typer.Argument(help="Rules files (default: mappings/rules.yaml).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print problems only.")] = False,
) -> None:
    """Check rules files: structure, facts, canonical paths, operators, derived values, unreachable cases."""
    from crmbridge.canonical.rules import check_rules_file

    out = Console(highlight=False, soft_wrap=True)
    targets = files or _default_files()
    if not targets:
        out.print("no rules files found")
        sys.exit(EXIT_CONFIG)
    failed = 0
    for f in targets:
        rules, problems = check_rules_file(f)
        for p in problems:
            out.print(str(p), markup=False)
        if rules is None:
            failed += 1
        elif not quiet:
            out.print(f"ok: {f} (version {rules.spec.version}, {rules.version_hash[:12]})", markup=False)
    if failed:
        out.print(f"{failed} of {len(targets)} rules file(s) have errors", markup=False)
        sys.exit(EXIT_CONFIG)


def _from_store(config: Path | None, party_id: str) -> tuple[dict[str, Any], list[Any], list[dict[str, Any]], str]:
    """The party's newest stored snapshot, its stored holdings (open and closed, as the holdings jobs last read
    them) and its history (every stored snapshot's time and AUM band), read in a unit of work the database refuses
    writes in."""
    from crmbridge.cli.keys_cmd import SecurityContext

    ctx = SecurityContext.load(config, None)
    cipher = ctx.cipher()
    points: list[tuple[dt.datetime, dict[str, Any]]] = []
    with ctx.transaction(refuse_writes=True) as tx:
        for row in tx.snapshots_of_party(party_id):
            if row["content_hash"] == "tombstone":
                continue
            data = tx.unseal(cipher, "snapshots", "blob", token=row["blob"],
                             row={"party_id": party_id, "system": row["system"], "object": row["object"]})
            if isinstance(data, dict):
                points.append((row["synced_at"], data))
        holdings = tx.holdings_of(party_id, cipher=cipher)
    if not points:
        raise ConfigurationError(f"no stored snapshot of party {party_id} (sync it first, or use --input)",
                                 where="state store")
    points.sort(key=lambda p: p[0])
    party = {**points[-1][1], "party_id": party_id}
    history = [{"at": at.isoformat(), "aum_band": (d.get("aum") or {}).get("band")} for at, d in points]
    note = (f"{len(points)} stored snapshot(s) of party {party_id}; {len(holdings)} stored holding(s)"
            + ("" if holdings else " (no holdings job has read any of this party's)"))
    return party, holdings, history, note


def _from_file(path: Path) -> tuple[dict[str, Any], list[Any], list[Any], str]:
    from crmbridge.adapters._json import loads
    from crmbridge.canonical.c3 import refuse_c3

    data = loads(path.read_text(encoding="utf-8"), vendor="input file", where=str(path))
    if not isinstance(data, dict) or not isinstance(data.get("party"), dict):
        raise ValidationError('the input is a JSON object {"party": {...}, "holdings": [...], "history": [...]}',
                              field="party", code="bad_input", where=str(path))
    refuse_c3(data, where=str(path))
    holdings, history = data.get("holdings") or [], data.get("history") or []
    if not isinstance(holdings, list) or not isinstance(history, list):
        raise ValidationError("holdings and history are lists", field="holdings", code="bad_input", where=str(path))
    return data["party"], holdings, history, f"{path}: {len(holdings)} holding(s), {len(history)} history point(s)"


@rules_app.command("preview")
def preview(
    file: Annotated[Path, typer.Argument(help="The rules file.")],
    party: Annotated[str | None, typer.Option("--party", help="A party id: derive from the state store.")] = None,
    input_file: Annotated[Path | None, typer.Option(
        "--input", "-i", help='JSON file {"party": {...}, "holdings": [...], "history": [...]}.')] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Evaluation date YYYY-MM-DD (default: today, UTC).")]
    = None,
    config: ConfigOption = None,
) -> None:
    """Derive one party's fields and show each rule's tests step by step (values masked by their class)."""
    from crmbridge.canonical.rules import derive, load_rules

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if (party is None) == (input_file is None):
        raise typer.BadParameter("give exactly one of --party ID or --input JSON", param_hint="--party/--input")
    day = None
    if as_of is not None:
        try:
            day = dt.date.fromisoformat(as_of)
        except ValueError:
            raise typer.BadParameter(f"{as_of!r} is not a date YYYY-MM-DD", param_hint="--as-of") from None
    try:
        rules = load_rules(file)
    except ConfigurationError as exc:      # a RulesLoadError: every problem, located
        for pr in getattr(exc, "problems", None) or [exc]:
            err.print(str(pr), markup=False)
        sys.exit(EXIT_CONFIG)
    try:
        if party is not None:
            try:
                pid = str(uuid.UUID(party))
            except ValueError:
                raise typer.BadParameter("a party id is a UUID", param_hint="--party") from None
            doc = _from_store(config, pid)
        else:
            assert input_file is not None
            try:
                doc = _from_file(input_file)
            except (OSError, ValueError, BadResponseError) as exc:
                err.print(f"error: cannot read {input_file}: {exc}", markup=False)
                sys.exit(EXIT_CONFIG)
        p, holdings, history, note = doc
        derivation = derive(p, holdings, history, rules, as_of=day)
    except ConfigurationError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(EXIT_CONFIG)
    except ForbiddenDataError as exc:
        err.print(f"input refused: {exc.message}", markup=False)
        sys.exit(EXIT_RECORD)
    except ValidationError as exc:
        err.print(f"record error: {exc}", markup=False)
        sys.exit(EXIT_RECORD)
    console = Console(highlight=False, soft_wrap=False, width=200 if not sys.stdout.isatty() else None)
    t = Table(title=f"rules v{rules.spec.version} ({rules.version_hash[:12]}) as of {derivation.as_of}")
    for col in ("rule", "case", "test", "value", "holds", "note"):
        t.add_column(col)
    for r in derivation.trace:
        holds = "" if r.result is None else ("yes" if r.result else "no")
        t.add_row(*(Text(c) for c in (r.rule, "" if r.case is None else str(r.case), "  " * r.depth + r.test,
                                      r.value, holds, r.note)))
    console.print(note, markup=False)
    console.print(t)
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in derivation.fields.items()) or "(nothing derived)"
    console.print(f"derived: {shown}", markup=False)
    console.print(f"rules version: {derivation.rules_version}", markup=False)


@rules_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the rules language."""
    from crmbridge.canonical.rules import rules_json_schema

    typer.echo(json.dumps(rules_json_schema(), indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")
