"""``crmbridge``: the command line of the integration team, operations and auditors.

Each command group lives in its own module with a ``register(app)`` function; :data:`COMMAND_MODULES`
lists them. Errors from crmbridge are shown as one clear line (no traceback unless ``--debug``) and map
to exit codes: 2 configuration, 3 data (records rejected), 4 external system, 7 a run refused because another
process is running its job, 1 anything else.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from crmbridge.core.errors import (
    AdapterError,
    ConfigurationError,
    CrmBridgeError,
    LeaseHeldError,
    RecordError,
    SystemUnavailableError,
)

__all__ = ["COMMAND_MODULES", "app", "main"]

COMMAND_MODULES = [
    "crmbridge.cli.simulate_cmd",
    "crmbridge.cli.mapping_cmd",
    "crmbridge.cli.rules_cmd",
    "crmbridge.cli.config_cmd",
    "crmbridge.cli.db_cmd",
    "crmbridge.cli.keys_cmd",
    "crmbridge.cli.ledger_cmd",
    "crmbridge.cli.erase_cmd",
    "crmbridge.cli.run_cmd",
    "crmbridge.cli.doctor_cmd",
    "crmbridge.cli.runs_cmd",
    "crmbridge.cli.ops_cmd",
    "crmbridge.cli.demo_cmd",
    "crmbridge.cli.scheduler_cmd",
    "crmbridge.cli.worker_cmd",
    "crmbridge.cli.console_cmd",
]

app = typer.Typer(
    name="crmbridge",
    help="Integration middleware between core banking and the bank's CRMs (Fxiaoke, Zoho CRM).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,   # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    rich_markup_mode="rich",
)
err_console = Console(stderr=True)
_state = {"debug": False}


def _version_callback(value: bool) -> None:
    """``--version``: the installed distribution's version (its metadata, not a constant in the code)."""
    if not value:
        return
    from crmbridge.core.extras import installed_version

    number = installed_version()
    typer.echo(f"crmbridge {number if number != 'unknown' else 'unknown (not installed)'}")
    raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", help="Print crmbridge's version and exit.", callback=_version_callback, is_eager=True)] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
    config: Annotated[str | None, typer.Option(
        "--config", "-c", help="Configuration file for every command (same as $CRMBRIDGE_CONFIG).")] = None,
) -> None:
    _state["debug"] = debug
    if config:
        os.environ["CRMBRIDGE_CONFIG"] = config  # each command's own --config reads this variable
    from crmbridge.core.logsafe import configure_logging

    configure_logging(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)


for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an error that ended a command (README, "Run outcomes and exit codes")."""
    if isinstance(exc, LeaseHeldError):   # another process runs the job: this run was refused, nothing failed
        from crmbridge.sync.report import EXIT_CODES

        return EXIT_CODES["refused"]
    if isinstance(exc, ConfigurationError):
        return 2
    if isinstance(exc, RecordError):
        return 3
    if isinstance(exc, AdapterError | SystemUnavailableError):   # a system (or the state database) unreachable
        return 4
    return 1


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        rv = app(args=argv, standalone_mode=False)
        if isinstance(rv, int) and rv:  # typer.Exit(code) comes back as a return value here
            sys.exit(rv)
    except CrmBridgeError as exc:
        if _state["debug"]:
            raise
        err_console.print("[bold red]error:[/] ", end="")
        err_console.print(f"{type(exc).__name__}: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exit_code_for(exc))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # usage errors arrive as (typer's vendored) click exceptions
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # ClickException and its UsageError family
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(1)
        if _state["debug"]:
            raise
        err_console.print(f"[bold red]internal error:[/] {type(exc).__name__} (run with --debug for details)")
        sys.exit(1)
