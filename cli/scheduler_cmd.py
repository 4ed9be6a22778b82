"""``crmbridge scheduler start|status``: the scheduler service and what it is doing."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from crmbridge.cli._common import ConfigOption, console

__all__ = ["register"]

scheduler_app = typer.Typer(help="Run the configured schedules; show each job's next and last run.",
                            no_args_is_help=True)

_STATUS_STYLE = {"succeeded": "green", "failed": "bold red", "crashed": "bold red", "aborted": "yellow",
                 "partial": "yellow", "stopped": "yellow", "suspicious": "yellow", "running": "cyan"}


def _config_path(config):  # type: ignore[no-untyped-def]
    from crmbridge.config import default_config_path

    return config or default_config_path()


@scheduler_app.command("start")
def start(
    config: ConfigOption = None,
    lease_ttl: Annotated[float, typer.Option(
        help="Seconds a job's lease outlives its last heartbeat (a crashed scheduler's job resumes elsewhere "
             "after at most this long).", min=0.5)] = 300.0,
    misfire_grace: Annotated[int, typer.Option(help="A fire this many seconds late still runs.", min=1)] = 300,
    poll_interval: Annotated[float, typer.Option(
        help="Seconds between checks of the configuration file for changes.", min=0.1)] = 5.0,
    run_now: Annotated[bool, typer.Option("--run-now", help="Also run every scheduled job once at start.")] = False,
    max_workers: Annotated[int, typer.Option(help="Different jobs this process may run at once.", min=1)] = 4,
) -> None:
    """Run the jobs on their crontabs until SIGTERM/SIGINT (a running job stops after its current batch)."""
    from crmbridge.config import load_config
    from crmbridge.sync.observe import apply_logging
    from crmbridge.sync.runners.scheduler import SchedulerOptions, SchedulerService

    path = _config_path(config)
    apply_logging(load_config(path))  # the same logging as `crmbridge run` (rotation-safe file)
    service = SchedulerService(path, SchedulerOptions(lease_ttl=lease_ttl, misfire_grace=misfire_grace,
                                                      poll_interval=poll_interval, run_now=run_now,
                                                      max_workers=max_workers))
    try:
        service.start()
    except BaseException:
        service.shutdown()
        raise
    service.serve_forever()


@scheduler_app.command("status")
def status(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Each job's schedule, next run, last run result and current lease holder."""
    from sqlalchemy.exc import SQLAlchemyError

    from crmbridge.config import load_config
    from crmbridge.core.errors import ConfigurationError
    from crmbridge.sync.bootstrap import bootstrap
    from crmbridge.sync.runners.scheduler import job_status

    cfg = load_config(_config_path(config))
    try:
        rt = bootstrap(cfg, migrate=False)
        try:
            rows = job_status(rt)
        finally:
            rt.close()
    except SQLAlchemyError as exc:
        raise ConfigurationError(f"the state database of {cfg.source_file} is not ready for the scheduler: run "
                                 f"`crmbridge db upgrade` or start the scheduler once ({type(exc).__name__})") from None
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    t = Table(title="crmbridge scheduler")
    for col in ("job", "schedule (UTC)", "next run", "last run", "result", "lease holder"):
        t.add_column(col)
    for r in rows:
        last = r["last_run"]
        result = "-"
        if last:
            style = _STATUS_STYLE.get(last["status"], "")
            counts = last["counts"] or {}
            result = f"[{style}]{last['status']}[/]" if style else last["status"]
            if counts.get("read") is not None:
                result += f" · read {counts['read']}"
            if last.get("error"):
                result += f" · {last['error'][:60]}"
        lease = r["lease_holder"]
        t.add_row(r["job"], (r["schedule"] or "(by hand)") + ("" if r["enabled"] else " [dim](disabled)[/]"),
                  r["next_run"] or "-", f"#{last['id']} {last['started_at']}" if last else "-", result,
                  f"{lease['holder']} (until {lease['expires_at']})" if lease else "-")
    console.print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(scheduler_app, name="scheduler")
