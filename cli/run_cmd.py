"""``crmbridge run JOB [--dry-run]`` and ``crmbridge reconcile JOB``: operations' commands."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from crmbridge.cli._common import ConfigOption, console, finish_run, runtime, versioned
from crmbridge.cli.actor import ActorOption

__all__ = ["observed", "register"]


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("records"), TimeElapsedColumn(), console=console, transient=True,
                    disable=not console.is_terminal)


def observed(rt, job: str, *, dry_run: bool = False):  # type: ignore[no-untyped-def]
    """:func:`crmbridge.sync.observe.observe_run` for a command: ``--verbose``/``--debug`` stay in force."""
    import logging

    from crmbridge.sync.observe import observe_run

    level = logging.getLogger().level
    return observe_run(rt, job, dry_run=dry_run, floor=level if logging.NOTSET < level < logging.WARNING else None)


def run(
    job: Annotated[str, typer.Argument(help="A job name from the configuration.")],
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; write nothing anywhere.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
    actor: ActorOption = None,
    distributed: Annotated[bool, typer.Option(
        "--distributed", help="Split the run into batches executed by `crmbridge worker` processes (Celery; "
                              "state on PostgreSQL); the same as `crmbridge dispatch JOB`.")] = False,
    full_refresh: Annotated[bool, typer.Option(
        "--full-refresh", help="Read the source from the start (the cursor is reset; resumable, nothing lost, no "
                               "duplicate) and re-derive every record; only changed payloads are written.")] = False,
    resync: Annotated[bool, typer.Option(
        "--resync", help="Re-push every record the job holds at the target from stored state, without reading "
                         "the source.")] = False,
    only_field: Annotated[str | None, typer.Option(
        "--only-field", help="With --resync: push only this target field (beside the key field).")] = None,
) -> None:
    """Run one job now: a progress bar on a terminal, a summary whose rows add up to the records read. Exit 0
    succeeded, 3 partial (records dead-lettered or in conflict), 1 failed, 4 a system unreachable, 5 suspicious,
    6 stopped, 7 another process runs the job."""
    from crmbridge.cli.actor import cli_actor
    from crmbridge.sync.engine import run_job

    who = cli_actor(actor)   # the operating-system user and host; --actor is an annotation beside them
    if distributed and dry_run:
        raise typer.BadParameter("a dry run is planned in this process; drop --distributed", param_hint="--dry-run")
    if distributed and (full_refresh or resync):
        raise typer.BadParameter("a full refresh or a resync runs in this process; drop --distributed",
                                 param_hint="--distributed")
    if only_field is not None and not resync:
        raise typer.BadParameter("--only-field applies to --resync", param_hint="--only-field")
    if resync and full_refresh:
        raise typer.BadParameter("--resync re-pushes stored state, --full-refresh re-reads the source: choose one",
                                 param_hint="--resync")
    if distributed:
        from crmbridge.core.extras import require_extra

        require_extra("distributed", purpose="crmbridge run --distributed")
    rt = runtime(config)
    try:
        with observed(rt, job, dry_run=dry_run) as obs, _progress() as bar:  # logging:, metrics, notifications
            task = bar.add_task(f"{'planning' if dry_run else 'syncing'} {job}", total=None)
            if distributed:
                from crmbridge.sync.runners.distributed import dispatch

                report = dispatch(rt, job, actor=who, progress=lambda n: bar.advance(task, n))
            else:
                report = run_job(rt, job, dry_run=dry_run, actor=who, progress=lambda n: bar.advance(task, n),
                                 full_refresh=full_refresh, resync=resync, only_field=only_field)
            obs.done(report)
    finally:
        rt.close()
    finish_run(report, as_json=as_json, plan=dry_run)


def reconcile(
    job: Annotated[str, typer.Argument(help="A job name from the configuration.")],
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    show: Annotated[int, typer.Option(help="How many ids to list per category.")] = 20,
    count_unmanaged: Annotated[bool, typer.Option(
        "--count-unmanaged", help="Target records crmbridge never wrote (created in the CRM) count as "
                                  "incomplete too.")] = False,
) -> None:
    """Compare both sides of a job record by record: missing, extra and different records (exit 1 if any).

    Records the CRM's users created themselves (crmbridge holds no cross-reference for them and they carry no
    party id) are listed as unmanaged and do not count, unless --count-unmanaged."""
    from crmbridge.sync.reconcile import reconcile as do_reconcile

    rt = runtime(config)
    try:
        with _progress() as bar:
            task = bar.add_task(f"reconciling {job}", total=None)
            rep = do_reconcile(rt, job, progress=lambda n: bar.advance(task, n), count_unmanaged=count_unmanaged)
    finally:
        rt.close()
    if as_json:
        typer.echo(json.dumps(versioned(rep.as_dict()), ensure_ascii=False, indent=2))
    else:
        t = Table(title=f"reconciliation of {job}")
        for col in ("source records", "target records", "matched", "different", "missing", "extra", "unmanaged"):
            t.add_column(col, justify="right")
        t.add_row(str(rep.source_records), str(rep.target_records), str(rep.matched), str(len(rep.different)),
                  str(len(rep.missing)), str(len(rep.extra)), str(len(rep.unmanaged)))
        console.print(t)
        for reason, n in sorted(rep.not_pushed.items()):
            console.print(f"not pushed by design — {reason}: {n}")
        for pid in rep.different[:show]:   # which target fields differ, per record (names only, no values)
            console.print(f"different: {pid}: {', '.join(rep.different_fields.get(pid, [])) or '?'}",
                          highlight=False)
        for label, ids in (("different (party ids)", rep.different), ("missing (source ids)", rep.missing),
                           ("extra (target ids)", rep.extra),
                           ("unmanaged, created in the target (target ids)"
                            + ("" if count_unmanaged else ", not counted"), rep.unmanaged)):
            if ids:
                console.print(f"[yellow]{label}:[/] {', '.join(ids[:show])}" + (" …" if len(ids) > show else ""))
        console.print("[green]complete: both sides agree[/]" if rep.complete else "[red]not complete[/]")
    if not rep.complete:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("reconcile")(reconcile)
