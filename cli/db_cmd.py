"""``crmbridge db upgrade|current|grant``: create or migrate the state database; its PostgreSQL roles.

Alembic and the configuration loader are imported when a command runs, so ``crmbridge --help`` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crmbridge.core.errors import ConfigurationError

__all__ = ["register"]

db_app = typer.Typer(help="Create or migrate the state database.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="Configuration file whose state.url to use (default: $CRMBRIDGE_CONFIG, else "
    "config/crmbridge.yaml).", envvar="CRMBRIDGE_CONFIG", show_envvar=True)]
UrlOption = Annotated[str | None, typer.Option("--url", help="State database URL (overrides --config).")]


def _url(config: Path | None, url: str | None) -> str:
    if url:
        return url
    from crmbridge.config import load_config

    try:
        return load_config(config).state.url
    except ConfigurationError as exc:
        for line in str(exc).splitlines():
            typer.echo(line, err=True)
        raise SystemExit(2) from None


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def upgrade(config: ConfigOption = None, url: UrlOption = None,
            revision: Annotated[str, typer.Option(help="Target revision.")] = "heads") -> None:
    """Bring the schema to the newest revision (creates it on an empty database; safe to repeat)."""
    from crmbridge.sync.state.migrate import current as current_revisions
    from crmbridge.sync.state.migrate import upgrade as upgrade_db

    target = _url(config, url)
    before = current_revisions(target)
    after = upgrade_db(target, revision)
    was = ", ".join(before) or "empty"
    now = ", ".join(after) or "empty"
    verb = "already at" if before == after else f"upgraded from {was} to"
    typer.echo(f"{_shown(target)}: {verb} {now}")


@db_app.command("current")
def current(config: ConfigOption = None, url: UrlOption = None) -> None:
    """Show the schema revision of the state database and the newest one available."""
    from crmbridge.sync.state.migrate import current as current_revisions
    from crmbridge.sync.state.migrate import heads

    target = _url(config, url)
    revs = current_revisions(target)
    newest = heads()
    state = "up to date" if revs == newest else "needs `crmbridge db upgrade`"
    typer.echo(f"{_shown(target)}: at {', '.join(revs) or 'empty'}; newest {', '.join(newest)} ({state})")


@db_app.command("grant")
def grant(
    owner: Annotated[str, typer.Option("--owner", help="Role that owns the schema and runs migrations/archive.")],
    service: Annotated[str, typer.Option("--service", help="Role crmbridge runs as (runs, scheduler, workers).")],
    apply: Annotated[bool, typer.Option("--apply", help="Execute the statements (connect as the owner or a "
                                        "superuser) instead of printing them.")] = False,
    config: ConfigOption = None, url: UrlOption = None,
) -> None:
    """PostgreSQL: print (or apply) the grants that keep the service role from rewriting the ledger.

    The service role may only SELECT/INSERT the ledger tables; it owns nothing, so it cannot disable the
    append-only triggers. Re-run after each `db upgrade`.
    """
    from crmbridge.sync.state.db import Base, import_models, make_engine
    from crmbridge.sync.state.roles import apply_grants, existing_tables, grant_sql

    import_models()
    tables = {*Base.metadata.tables, "alembic_version"}
    target = _url(config, url) if apply or url or config else None
    engine = make_engine(target) if target is not None and target.startswith("postgresql") else None
    if apply and engine is None:
        raise ConfigurationError("roles and grants are PostgreSQL's; the state database is not PostgreSQL",
                                 where="--url")
    try:
        if engine is not None:
            tables &= existing_tables(engine)
        try:
            statements = grant_sql(owner, service, tables)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if not apply:
            typer.echo("\n".join(s + ";" for s in statements))
            return
        assert engine is not None
        apply_grants(engine, statements)
        typer.echo(f"{_shown(target or '')}: {len(statements)} statements applied; {service} may only append to "
                   f"and read the ledger, {owner} owns the schema")
    finally:
        if engine is not None:
            engine.dispose()


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
