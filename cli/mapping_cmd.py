"""``crmbridge mapping validate|preview|schema``: the integration team's tools for mapping files.

- ``validate [FILES...]`` checks mapping files (default ``mappings/*.yaml``) and prints every problem as
  ``file:line: key.path: message``; exit 2 when any file has an error.
- ``preview FILE --record JSON`` maps one record and shows a side-by-side table (vendor field | canonical path |
  value), personal data masked unless ``--reveal``; a bad record prints its located error and exits 3.
- ``schema`` prints the JSON Schema of the language (``mappings/mapping.schema.json`` is this output).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crmbridge.adapters._json import loads
from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.c3 import mapping_c3_fields, refuse_c3
from crmbridge.canonical.mapping import (
    MappingProblem,
    TraceRow,
    check_mapping_file,
    keypath,
    line_for,
    load_mapping,
    mapping_json_schema,
    validate_against,
)
from crmbridge.canonical.masking import mask
from crmbridge.cli._common import ConfigOption
from crmbridge.cli.actor import ActorOption, RevealReasonOption, check_reveal, record_reveal
from crmbridge.core.errors import BadResponseError, ForbiddenDataError, ValidationError

__all__ = ["register"]

mapping_app = typer.Typer(help="Validate, preview and describe mapping files.", no_args_is_help=True)

#: exit codes, as in crmbridge.cli.main (sys.exit: ``main`` runs click with standalone_mode=False, which would turn
#: a typer.Exit into a return value and lose the code)
EXIT_CONFIG = 2
EXIT_RECORD = 3


class DirectionOpt(StrEnum):
    IN = "in"
    OUT = "out"


def _default_files() -> list[Path]:
    here = sorted(Path("mappings").glob("*.yaml"))
    if here:
        return here
    import crmbridge.mappings as pkg

    return sorted(Path(pkg.__file__).parent.glob("*.yaml"))


@mapping_app.command("validate")
def validate(
    files: Annotated[list[Path] | None, typer.Argument(help="Mapping files (default: mappings/*.yaml).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print problems only.")] = False,
    against: Annotated[str | None, typer.Option(
        "--against", help="Also check the mapped vendor fields exist, with compatible types and lengths, in this "
                          "configured system's live field metadata (Zoho /settings/fields, Fxiaoke describe...).")]
    = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Configuration naming the --against system (default: $CRMBRIDGE_CONFIG, else "
                               "config/crmbridge.yaml).", envvar="CRMBRIDGE_CONFIG")] = None,
) -> None:
    """Check mapping files: structure, canonical paths, transforms, code tables, mandatory vendor fields."""
    targets = files or _default_files()
    out = Console(highlight=False, soft_wrap=True)
    if not targets:
        out.print("no mapping files found")
        sys.exit(EXIT_CONFIG)
    adapter = _adapter_for(against, config) if against else None
    failed = 0
    for f in targets:
        mapping, problems = check_mapping_file(f, profile=target_profile)
        if mapping is not None:
            problems = sorted([*problems, *c3_problems(mapping, str(f))], key=lambda pr: (pr.line or 0, pr.path))
        if adapter is not None and mapping is not None:
            if mapping.system != adapter.name:
                out.print(f"skipped against {against}: {f} maps {mapping.system}, not {adapter.name}", markup=False)
                continue
            problems = [*problems, *validate_against(mapping, adapter.describe(mapping.object),
                                                     filled=adapter.fills_fields)]
        errors = [p for p in problems if p.severity == "error"]
        for p in problems:
            out.print(str(p), markup=False)
        if errors:
            failed += 1
        elif not quiet:
            warn = f" ({len(problems)} warning(s))" if problems else ""
            out.print(f"ok: {f}{warn}", markup=False)
    if failed:
        out.print(f"{failed} of {len(targets)} mapping file(s) have errors", markup=False)
        sys.exit(EXIT_CONFIG)


def c3_problems(mapping: Any, file: str) -> list[MappingProblem]:
    """A step (or header) reading or writing a C3-looking vendor field, located in the file."""
    return [MappingProblem(file, line_for(mapping.lines, rel), keypath(rel), msg)
            for rel, msg in mapping_c3_fields(mapping)]


def _adapter_for(system: str, config: Path | None) -> Any:
    """The adapter of a configured system, to read its field metadata (no state database is touched)."""
    from crmbridge.adapters.registry import adapter_class
    from crmbridge.config import load_config

    cfg = load_config(config)
    if system not in cfg.systems:
        raise typer.BadParameter(f"no system {system!r} in {cfg.source_file}; configured: "
                                 f"{', '.join(sorted(cfg.systems)) or '(none)'}", param_hint="--against")
    sys_cfg = cfg.systems[system]
    cls = adapter_class(sys_cfg.adapter)
    return cls(sys_cfg, system=system, base_dir=cfg.base_dir)


def _show(value: Any, kind: str | None, reveal: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v, kind, reveal) for v in value) + "]"
    text = value if isinstance(value, str) else str(getattr(value, "value", value))
    if reveal or kind is None:
        return text
    return mask(kind, text)


def _table(title: str, rows: list[TraceRow], reveal: bool, direction: str) -> Table:
    t = Table(title=title, show_lines=False)
    t.add_column("#", justify="right", style="dim")
    if direction == "in":
        t.add_column("vendor field")
        t.add_column("vendor value")
        t.add_column("canonical path")
        t.add_column("canonical value")
    else:
        t.add_column("canonical path")
        t.add_column("canonical value")
        t.add_column("vendor field")
        t.add_column("vendor value")
    t.add_column("note", style="dim")
    for r in rows:
        step = "" if r.step < 0 else str(r.step)
        vendor_v = _show(r.vendor_value, r.mask_kind, reveal)
        canon_v = _show(r.canonical_value, r.mask_kind, reveal)
        note = r.note or ("" if r.mask_kind is None else "" if reveal else f"masked ({r.mask_kind})")
        cells = ((step, r.vendor, vendor_v, r.canonical, canon_v, note) if direction == "in"
                 else (step, r.canonical, canon_v, r.vendor, vendor_v, note))
        t.add_row(*(Text(c) for c in cells))  # Text: no rich markup, [type=MOBILE] stays as written
    return t


@mapping_app.command("preview")
def preview(
    file: Annotated[Path, typer.Argument(help="The mapping file.")],
    record: Annotated[Path, typer.Option("--record", "-r", help="JSON file: a vendor record (in) or a canonical "
                                                              "party (out).")],
    direction: Annotated[DirectionOpt, typer.Option(
        "--direction", "-d", help="in: vendor → canonical; out: canonical → vendor.")] = DirectionOpt.IN,
    reveal: Annotated[bool, typer.Option(
        "--reveal", help="Show personal data in clear (C2 values); needs --reason and a configuration: the reveal "
                         "is ledgered with who, what and why.")] = False,
    reason: RevealReasonOption = None,
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Map one record through a mapping and show what goes where (personal data masked unless --reveal)."""
    cfg = None
    if reveal:
        from crmbridge.config import load_config

        cfg = load_config(config)
        check_reveal(cfg, reveal, reason)
    mapping = load_mapping(file, profile=target_profile)
    try:
        # nesting bounded: a crafted file is an error, never a RecursionError
        data = loads(record.read_text(encoding="utf-8"), vendor="record file", where=str(record))
    except (OSError, ValueError, BadResponseError) as exc:
        typer.echo(f"error: cannot read {record}: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    console = Console(highlight=False, soft_wrap=False, width=200 if not sys.stdout.isatty() else None)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    title = f"{mapping.system}/{mapping.object} v{mapping.spec.version} ({direction.value})"
    try:
        # C3 authentication data is refused before anything is mapped or shown (a PIN is never previewed, not even
        # masked), in a vendor record and in a canonical one alike
        if isinstance(data, dict):
            refuse_c3(data, where=str(record))
        if direction is DirectionOpt.IN:
            _, rows = mapping.trace_in(data)
            party = mapping.to_party(data)
            if reveal:
                _ledger_reveal(cfg, mapping, rows, reason, actor, record_id=mapping.external_id(data))
            console.print(_table(title, rows, reveal, "in"))
            console.print(f"valid {party.party_type.value} (external id {mapping.external_id(data)})", markup=False)
        else:
            from crmbridge.canonical.model import parse_party

            party = parse_party(data, where=str(record))
            _, rows = mapping.trace_out(party)
            if reveal:
                _ledger_reveal(cfg, mapping, rows, reason, actor, party_id=str(party.party_id))
            console.print(_table(title, rows, reveal, "out"))
    except ForbiddenDataError as exc:
        err.print(f"{record}: record refused: {exc.message}", markup=False)
        sys.exit(EXIT_RECORD)
    except ValidationError as exc:
        err.print(f"{record}: record error: {exc}", markup=False)
        sys.exit(EXIT_RECORD)


def _ledger_reveal(cfg: Any, mapping: Any, rows: list[TraceRow], reason: str | None, actor: str | None, *,
                   record_id: str | None = None, party_id: str | None = None) -> None:
    """Ledger a preview's reveal (the C2 fields it shows in clear) before it is shown."""
    from crmbridge.cli.keys_cmd import SecurityContext

    fields = [r.canonical for r in rows if r.mask_kind is not None]
    if not fields:
        return
    ctx = SecurityContext(cfg, cfg.state.url)
    with ctx.transaction() as tx:
        record_reveal(tx.ledger(ctx.signer()), what=f"mapping preview {mapping.system}/{mapping.object}",
                      fields=fields, reason=reason or "", note=actor, party_id=party_id, system=mapping.system,
                      object_name=mapping.object, record_id=record_id)


@mapping_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the mapping language."""
    typer.echo(json.dumps(mapping_json_schema(), indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    app.add_typer(mapping_app, name="mapping")
