"""``crmbridge console`` (the web console) and ``crmbridge users`` (its local users).

The console reads the same configuration and state database as every other command::

    crmbridge users add alice --role auditor          # asks for the password twice
    crmbridge console --host 127.0.0.1 --port 8470
"""

from __future__ import annotations

from typing import Annotated

import typer

from crmbridge.cli._common import ConfigOption, console, runtime

__all__ = ["register"]

users_app = typer.Typer(help="The console's local users: add, change a password, disable, list.",
                        no_args_is_help=True)


def _needs_console() -> None:
    from crmbridge.core.extras import require_extra

    require_extra("console", purpose="the console")


def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8470,
) -> None:
    """Serve the web console (operations, data stewards, auditors) until interrupted."""
    _needs_console()
    import uvicorn

    from crmbridge.console.app import create_app

    rt = runtime(config)
    app = create_app(rt)
    console.print(f"crmbridge console on http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        rt.close()


def register(app: typer.Typer) -> None:
    app.command("console")(serve)
    app.add_typer(users_app, name="users")
