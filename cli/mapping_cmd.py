"""``crmbridge mapping validate|preview|schema|history|show|diff``: the integration team's tools for mapping files.

- ``validate [FILES...]`` checks mapping files (default ``mappings/*.yaml``) and prints every problem as
  ``file:line: key.path: message``; exit 2 when any file has an error.
- ``preview FILE --record JSON`` maps one record and shows a side-by-side table (vendor field | canonical path |
  value), personal data masked unless ``--reveal``; a bad record prints its located error and exits 3.
- ``schema`` prints the JSON Schema of the language (``mappings/mapping.schema.json`` is this output).
- ``history FILE``, ``show --version HASH``, ``diff A B``: the mapping versions runs used, archived in the state
  store (``mapping_versions``) when a run first loads a mapping.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crmbridge.cli._common import ConfigOption
from crmbridge.cli.actor import ActorOption, RevealReasonOption, check_reveal, record_reveal
from crmbridge.core.errors import BadResponseError, ForbiddenDataError, ValidationError

if TYPE_CHECKING:
    from crmbridge.canonical.mapping import (
        MappingProblem,
        TraceRow,
    )

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
    # mappings/rules.yaml beside them is a rules file (crmbridge rules validate), not a mapping
    here = sorted(p for p in Path("mappings").glob("*.yaml") if p.name != "rules.yaml")
    if here:
        return here
    import crmbridge.mappings as pkg

    return sorted(p for p in Path(pkg.__file__).parent.glob("*.yaml") if p.name != "rules.yaml")


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
    """Check mapping files: structure, canonical paths, transforms, code tables, mandatory vendor fields.

    With --config and no FILES: the mappings the configuration's jobs use, each with its job's system (and the
    configuration's canonical extensions declared)."""
    from crmbridge.adapters.registry import target_profile
    from crmbridge.canonical.mapping import check_mapping_file, validate_against

    out = Console(highlight=False, soft_wrap=True)
    if config is not None:
        from crmbridge.config import load_config

        cfg = load_config(config)      # declares the configuration's canonical extensions
        if not files:
            code = _validate_jobs(cfg, out, quiet=quiet, against=against)
            if code:
                sys.exit(code)
            return
    targets = files or _default_files()
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


def _validate_jobs(cfg: Any, out: Console, *, quiet: bool, against: str | None) -> int:
    """Check every mapping the configuration's jobs use, loaded for its end of the job (that system's adapter
    profile); the exit code (0, or EXIT_CONFIG when any has an error)."""
    from crmbridge.adapters.registry import adapter_class, target_profile
    from crmbridge.canonical.mapping import (
        MappingProblem,
        TargetProfile,
        check_mapping_file,
        line_for,
        validate_against,
    )

    if not cfg.jobs:
        out.print(f"{cfg.source_file}: no jobs to validate", markup=False)
        return EXIT_CONFIG
    adapter = _adapter_for(against, cfg.source_file) if against else None
    failed = 0
    checked: set[tuple[str, str]] = set()
    for name, job in sorted(cfg.jobs.items()):
        for key, ref in (("source", job.source_mapping), ("target", job.target_mapping)):
            end = getattr(job, key)
            system, _, obj = end.partition(".")
            label = f"jobs.{name}.{key}_mapping"
            where = cfg.where(("jobs", name, f"{key}_mapping"))
            try:
                path = cfg.mapping_path(ref)
            except Exception as exc:  # noqa: BLE001 - a ConfigurationError: reported, the others still checked
                out.print(f"{where}: {label}: {getattr(exc, 'message', exc)}", markup=False)
                failed += 1
                continue
            sys_cfg = cfg.systems.get(system)
            problems: list[MappingProblem] = []
            if sys_cfg is None:
                profile: Any = target_profile
            else:
                cls = adapter_class(sys_cfg.adapter)
                role = "system_of_record" if cls.role == "system_of_record" else "crm"
                profile = TargetProfile(role=role, mandatory_fields=tuple(cls.mandatory_fields.get(obj, ())),
                                        source_system=cls.source_system)
            mapping, problems = check_mapping_file(path, profile=profile)
            if mapping is not None:
                problems = [*problems, *c3_problems(mapping, str(path))]
                if sys_cfg is not None and (mapping.system != sys_cfg.adapter or mapping.object != obj):
                    problems.append(MappingProblem(str(path), line_for(mapping.lines, ("system",)), "system",
                                                   f"maps {mapping.system}/{mapping.object}, but {label} "
                                                   f"({where}) is {end} (adapter {sys_cfg.adapter})"))
                if adapter is not None and system == against and (against, str(path)) not in checked:
                    checked.add((against, str(path)))
                    problems += validate_against(mapping, adapter.describe(obj), filled=adapter.fills_fields)
            problems.sort(key=lambda pr: (pr.line or 0, pr.path))
            for p in problems:
                out.print(f"{label}: {p}", markup=False)
            if any(p.severity == "error" for p in problems):
                failed += 1
            elif not quiet:
                out.print(f"ok: {label}: {path}", markup=False)
    if failed:
        out.print(f"{failed} job mapping(s) have errors", markup=False)
        return EXIT_CONFIG
    return 0


def c3_problems(mapping: Any, file: str) -> list[MappingProblem]:
    """A step (or header) reading or writing a C3-looking vendor field, located in the file."""
    from crmbridge.canonical.c3 import mapping_c3_fields
    from crmbridge.canonical.mapping import MappingProblem, keypath, line_for

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
    from crmbridge.canonical.masking import mask

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
        note = _note(r, reveal, direction)
        cells = ((step, r.vendor, vendor_v, r.canonical, canon_v, note) if direction == "in"
                 else (step, r.canonical, canon_v, r.vendor, vendor_v, note))
        t.add_row(*(Text(c) for c in cells))  # Text: no rich markup, [type=MOBILE] stays as written
    return t


def _note(r: TraceRow, reveal: bool, direction: str) -> str:
    """What the row's treatment is, truthfully: on the way out what the vendor receives (masked, or in clear even
    when this table shows it masked), on the way in only how the table shows the value."""
    shown = "" if r.mask_kind is None or reveal else f"shown masked ({r.mask_kind})"
    if direction == "in":
        return "; ".join(x for x in (r.note, shown) if x)
    if r.note.startswith(("masked (", "clear:")):
        # "masked": the payload itself carries the masked value; "clear": the vendor gets it in clear (consent)
        return "; ".join(x for x in (f"sent {r.note.replace('clear:', 'in clear:')}",
                                     shown if r.note.startswith("clear:") else "") if x)
    if r.note:
        return "; ".join(x for x in (r.note, shown) if x)
    if r.mask_kind is None:
        return ""
    return "; ".join(x for x in ("sent in clear", shown) if x)


@mapping_app.command("preview")
def preview(
    file: Annotated[Path, typer.Argument(help="The mapping file.")],
    record: Annotated[Path, typer.Option("--record", "-r", help="JSON file: a vendor record (in) or a canonical "
                                                              "record of the mapping's object (out).")],
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
    from crmbridge.adapters._json import loads
    from crmbridge.adapters.registry import target_profile
    from crmbridge.canonical.c3 import refuse_c3
    from crmbridge.canonical.mapping import load_mapping

    cfg = None
    if reveal or config is not None:
        from crmbridge.config import load_config

        cfg = load_config(config)      # also declares the configuration's canonical extensions
    if reveal:
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
            what = party.party_type.value if mapping.canonical == "Party" else mapping.canonical
            console.print(f"valid {what} (external id {mapping.external_id(data)})", markup=False)
        else:
            from crmbridge.canonical.objects import parse_object

            party = parse_object(mapping.canonical, data, where=str(record))
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


# ------------------------------------------------------------------------------------- versions (archive)
def _archive_tx(config: Path | None) -> Any:
    """A read-only unit of work on the configuration's state database (where runs archive mapping versions)."""
    from contextlib import contextmanager

    from crmbridge.config import load_config
    from crmbridge.sync.state.store import StateStore

    @contextmanager
    def tx() -> Any:
        cfg = load_config(config)
        store = StateStore.from_url(cfg.state.url)
        try:
            with store.transaction(read_only=True) as t:
                yield t
        finally:
            store.dispose()
    return tx()


def _file_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@mapping_app.command("history")
def history(
    mapping: Annotated[str, typer.Argument(help="Mapping file (its name is looked up), or SYSTEM/OBJECT.")],
    config: ConfigOption = None,
) -> None:
    """The versions of a mapping that runs used (archived in the state store), oldest first, with when each was
    first seen; the version of the file as it is now is marked."""
    with _archive_tx(config) as tx:
        rows = tx.mapping_versions(mapping)
    current = _file_hash(Path(mapping)) if Path(mapping).is_file() else None
    out = Console(highlight=False, soft_wrap=True)
    if not rows:
        out.print(f"no archived versions of {mapping} (a run archives the mappings it loads)", markup=False)
        if current:
            out.print(f"the file now: {current[:12]}", markup=False)
        return
    t = Table(title=f"versions of {mapping}")
    for col in ("version", "first seen (UTC)", "system/object", "file", ""):
        t.add_column(col)
    for r in rows:
        seen = r["first_seen_at"]
        t.add_row(Text(r["content_hash"][:12]), Text(seen.strftime("%Y-%m-%d %H:%M:%S") if seen else ""),
                  Text(f"{r['system']}/{r['object']}"), Text(r["file_name"]),
                  Text("= file now" if r["content_hash"] == current else ""))
    out.print(t)
    if current and all(r["content_hash"] != current for r in rows):
        out.print(f"the file now ({current[:12]}) has not been used by a run yet", markup=False)


@mapping_app.command("show")
def show(
    version: Annotated[str, typer.Option("--version", help="Content hash of an archived version (or a unique "
                                                            "prefix of at least 8 characters).")],
    config: ConfigOption = None,
) -> None:
    """Print the text of an archived mapping version."""
    with _archive_tx(config) as tx:
        text = tx.mapping_text(version)
    if text is None:
        typer.echo(f"error: no archived mapping version {version!r} (or the prefix is ambiguous); see "
                   "crmbridge mapping history FILE", err=True)
        sys.exit(EXIT_CONFIG)
    typer.echo(text, nl=not text.endswith("\n"))


@mapping_app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="An archived version's hash (or unique prefix), or a mapping file.")],
    b: Annotated[str, typer.Argument(help="Another version's hash, or a mapping file (e.g. the file as it is now).")],
    config: ConfigOption = None,
) -> None:
    """Unified diff of two mapping versions: archived ones by hash, or a version against a file."""
    import difflib

    texts: list[tuple[str, str]] = []
    with _archive_tx(config) as tx:
        for ref in (a, b):
            p = Path(ref)
            if p.is_file():
                texts.append((str(p), p.read_text(encoding="utf-8")))
                continue
            row = tx.mapping_version(ref)
            if row is None:
                typer.echo(f"error: {ref!r} is neither a file nor an archived mapping version (or the prefix is "
                           "ambiguous)", err=True)
                sys.exit(EXIT_CONFIG)
            texts.append((f"{row['file_name']}@{row['content_hash'][:12]}", str(row["text"])))
    (la, ta), (lb, tb) = texts
    lines = list(difflib.unified_diff(ta.splitlines(keepends=True), tb.splitlines(keepends=True), la, lb))
    if not lines:
        typer.echo("no differences")
        return
    typer.echo("".join(line if line.endswith("\n") else line + "\n" for line in lines), nl=False)


@mapping_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the mapping language."""
    from crmbridge.canonical.mapping import mapping_json_schema

    typer.echo(json.dumps(mapping_json_schema(), indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    app.add_typer(mapping_app, name="mapping")
