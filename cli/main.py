"""``crmbridge``: the command line of the integration team, operations and auditors.

Each command group lives in its own module with a ``register(app)`` function; :data:`COMMAND_MODULES`
lists them. Errors from crmbridge are shown as one clear line (no traceback unless ``--debug``) and map
to exit codes: 2 configuration, 3 data (records rejected), 4 external system, 1 anything else.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console

from crmbridge.core.errors import AdapterError, ConfigurationError, CrmBridgeError, RecordError

__all__ = ["COMMAND_MODULES", "app", "main"]

COMMAND_MODULES = [
    "crmbridge.cli.simulate_cmd",
]

app = typer.Typer(
    name="crmbridge",
    help="Integration middleware between core banking and the bank's CRMs (Fxiaoke, Zoho CRM).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, ConfigurationError):
        return 2
    if isinstance(exc, RecordError):
        return 3
    if isinstance(exc, AdapterError):
        return 4
    return 1


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, standalone_mode=False)
    except CrmBridgeError as exc:
        if _state["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False, markup=True)
        sys.exit(exit_code_for(exc))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive as click exceptions
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        if _state["debug"]:
            raise
        err_console.print(f"[bold red]internal error:[/] {type(exc).__name__} (run with --debug for details)")
        sys.exit(1)
