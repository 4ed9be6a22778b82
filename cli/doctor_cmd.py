"""``crmbridge doctor SYSTEM``: probe a configured system read-only and say what to configure.

What a vendor really does (the boundary of its change filter, the largest page it accepts, its clock, its rate
limits, the operations its WSDL offers, the fields its metadata has) decides whether a sync loses customers. The
engine never assumes it: each is configuration with a safe default, and this command reads the live system to
tell which settings fit it. Every call it makes is a read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from crmbridge.cli._common import ConfigOption, console, versioned

__all__ = ["collect", "register"]

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "info": "cyan"}
#: records read (one page) to check the mapped vendor paths, nested ones included, against real data
SAMPLE = 20


def collect(cfg: Any, system: str, adapter: Any) -> list[Any]:
    """Every finding for ``system``: each job's mappings against the live field metadata and a sample of real
    records, then the adapter's own probes (:meth:`crmbridge.adapters.base.Adapter.doctor`)."""
    from crmbridge.adapters.base import Finding
    from crmbridge.adapters.registry import target_profile
    from crmbridge.canonical.mapping import load_mapping, path_get, validate_against
    from crmbridge.core.errors import ConfigurationError

    findings: list[Finding] = []
    uses: dict[str, list[tuple[str, str, str]]] = {}   # object -> [(job, mapping ref, direction)]
    for name, job in sorted(cfg.jobs.items()):
        if job.source_system == system:
            uses.setdefault(job.source_object, []).append((name, job.source_mapping, "in"))
        if job.target_system == system:
            uses.setdefault(job.target_object, []).append((name, job.target_mapping, "out"))
            if job.direction == "two_way":
                uses[job.target_object].append((name, job.target_mapping, "in"))
    if not uses:
        findings.append(Finding("jobs", "info", f"no configured job reads or writes {system}"))
    for obj, refs in sorted(uses.items()):
        try:
            meta = adapter.describe(obj)
        except Exception as exc:  # noqa: BLE001 - a probe that fails is a finding
            findings.append(Finding("fields", "fail", f"field metadata unavailable: {type(exc).__name__}: {exc}",
                                    obj=obj))
            meta = []
        sample: list[Any] | None = None
        ends: dict[tuple[str, str], set[str]] = {}
        for job, ref, direction in refs:
            ends.setdefault((job, ref), set()).add(direction)
        for (job, ref), directions in sorted(ends.items()):
            try:
                mapping = load_mapping(cfg.mapping_path(ref), profile=target_profile)
            except ConfigurationError as exc:
                findings.append(Finding("mapping", "fail", f"job {job}: {exc}", obj=obj))
                continue
            if meta:
                problems = validate_against(mapping, meta, filled=adapter.fills_fields)
                findings.append(Finding(
                    "fields", "fail" if problems else "ok",
                    f"job {job} ({ref}): " + ("; ".join(f"{p.path}: {p.message}" for p in problems[:8])
                                              + (f" … and {len(problems) - 8} more" if len(problems) > 8 else "")
                                              if problems else "every mapped field exists in the live metadata"),
                    obj=obj))
            if "in" not in directions:
                continue
            if sample is None:
                sample = _sample(adapter, obj, findings)
            if sample:
                paths = {str(p): p for p in mapping.vendor_paths("in")}
                # a path is suspect when its parent element appears in the records read but it never does (a
                # corporate-only element in a sample of individuals says nothing)
                never = sorted(text for text, p in paths.items()
                               if all(_absent(path_get(r.data, p)) for r in sample)
                               and (len(p.ops) < 2 or any(not _absent(path_get(r.data, p.parent()))
                                                          for r in sample)))
                findings.append(Finding(
                    "paths", "warn" if never else "ok",
                    f"job {job} ({ref}): " + (f"never present in {len(sample)} records read: {', '.join(never[:10])}"
                                              + (" …" if len(never) > 10 else "")
                                              if never else f"every mapped path found in {len(sample)} records read"),
                    obj=obj))
    findings.extend(adapter.doctor({obj: [] for obj in sorted(uses)}))
    return findings


def _sample(adapter: Any, obj: str, findings: list[Any]) -> list[Any]:
    from crmbridge.adapters.base import Finding

    try:
        page = next(iter(adapter.extract(obj)), None)
    except Exception as exc:  # noqa: BLE001
        findings.append(Finding("reachable", "fail", f"reading {obj} failed: {type(exc).__name__}: {exc}", obj=obj))
        return []
    return list(page.records[:SAMPLE]) if page is not None else []


def _absent(value: Any) -> bool:
    return value is None or value == [] or value == ""


def _yaml_lines(system: str, settings: dict[str, Any]) -> list[str]:
    """Dotted settings as the YAML block to put under ``systems:``."""
    tree: dict[str, Any] = {}
    for dotted, value in sorted(settings.items()):
        node = tree
        *heads, leaf = dotted.split(".")
        for h in heads:
            node = node.setdefault(h, {})
        node[leaf] = value
    out = ["systems:", f"  {system}:"]

    def walk(node: dict[str, Any], depth: int) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                out.append(f"{'  ' * depth}{k}:")
                walk(v, depth + 1)
            else:
                out.append(f"{'  ' * depth}{k}: {json.dumps(v, ensure_ascii=False)}")

    walk(tree, 2)
    return out


def doctor(
    system: Annotated[str, typer.Argument(help="A system name from the configuration.")],
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Probe a configured system read-only: reachable and authenticated, the operations and fields the jobs use,
    page size, change-filter boundary, clock skew, rate limits. Prints the configuration to set; exit 1 if a
    job would not work."""
    from crmbridge.adapters.registry import adapter_class
    from crmbridge.config import load_config

    cfg = load_config(config)
    if system not in cfg.systems:
        raise typer.BadParameter(f"no system {system!r} in {cfg.source_file}; configured: "
                                 f"{', '.join(sorted(cfg.systems)) or '(none)'}", param_hint="SYSTEM")
    sys_cfg = cfg.systems[system]
    adapter = adapter_class(sys_cfg.adapter)(sys_cfg, system=system, base_dir=cfg.base_dir)
    try:
        findings = collect(cfg, system, adapter)
    finally:
        adapter.close()
    settings: dict[str, Any] = {}
    for f in findings:
        settings.update(f.config)
    failed = any(f.status == "fail" for f in findings)
    if as_json:
        typer.echo(json.dumps(versioned({
            "system": system, "adapter": sys_cfg.adapter, "ok": not failed,
            "findings": [{"check": f.check, "status": f.status, "object": f.obj, "detail": f.detail,
                          "config": f.config} for f in findings],
            "config": settings}), ensure_ascii=False, indent=2))
    else:
        t = Table(title=f"doctor {system} ({sys_cfg.adapter})", title_justify="left")
        for col in ("check", "object", "status", "what was found"):
            t.add_column(col, overflow="fold")
        for f in findings:
            t.add_row(f.check, f.obj or "", f"[{_STYLE.get(f.status, '')}]{f.status}[/]", f.detail)
        console.print(t)
        if settings:
            console.print(f"[bold]Configuration to set[/] (in {Path(cfg.source_file).name}):")
            for line in _yaml_lines(system, settings):
                console.print(line, markup=False, highlight=False)
        else:
            console.print("nothing to change in the configuration")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
