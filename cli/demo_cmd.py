"""``crmbridge demo``: the README's main job."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


def demo() -> None:
    """Preview every shipped mapping on its sample record (the full demo sync replaces this)."""
    from crmbridge.cli.mapping_cmd import preview

    for sample in sorted((MAPPINGS / "samples").glob("*.json")):
        mapping = MAPPINGS / f"{sample.stem}.yaml"
        if mapping.exists():
            typer.echo(f"\n== {mapping.name} ← {sample.name}")
            preview(mapping, record=sample, reveal=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
