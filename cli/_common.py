"""Shared command-line pieces: the ``--config`` option and building the runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["ConfigOption", "console", "finish_run", "runtime", "versioned"]

from rich.console import Console

console = Console()

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Configuration file (default: $CRMBRIDGE_CONFIG, else config/crmbridge.yaml).",
    envvar="CRMBRIDGE_CONFIG", show_envvar=True)]


def runtime(config: Path | None):  # type: ignore[no-untyped-def]
    """The runtime for a command (schema brought up to date, keys ready)."""
    from crmbridge.sync.bootstrap import bootstrap

    return bootstrap(config)


def versioned(document: dict[str, Any]) -> dict[str, Any]:
    """A ``--json`` document with ``crmbridge_version`` (the version that produced it, as ``crmbridge --version``)
    added first."""
    from crmbridge.core.extras import installed_version

    return {"crmbridge_version": installed_version(), **document}


def finish_run(report: Any, *, as_json: bool, plan: bool = False) -> None:
    """Show a run report (JSON, the dry run's plan, or the summary) and exit as operators script against
    (``RunReport.exit_code``): 0 succeeded, 1 failed, 3 partial, 4 a system unreachable, 5 suspicious, 6 stopped;
    7 (raised before any report) when another process holds the job. Configuration and usage errors exit 2."""
    import json

    from crmbridge.sync.report import render_plan, render_summary

    if as_json:
        typer.echo(json.dumps(versioned(report.as_dict()), ensure_ascii=False, indent=2))
    elif plan:
        render_plan(report, console)
    else:
        render_summary(report, console)
    if report.exit_code:
        raise typer.Exit(report.exit_code)
