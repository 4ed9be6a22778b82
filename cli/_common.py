"""Shared command-line pieces: the ``--config`` option and building the runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["ConfigOption", "console", "runtime"]

from rich.console import Console

console = Console()

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Configuration file (default: $CRMBRIDGE_CONFIG, else config/crmbridge.yaml).",
    envvar="CRMBRIDGE_CONFIG", show_envvar=True)]


def runtime(config: Path | None):  # type: ignore[no-untyped-def]
    """The runtime for a command (schema brought up to date, keys ready)."""
    from crmbridge.sync.bootstrap import bootstrap

    return bootstrap(config)
