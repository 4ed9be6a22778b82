"""``crmbridge deadletters ...`` and ``crmbridge conflicts ...``: the queues operations work through.

Values are shown masked; a dead letter's payload is decrypted only to be masked for display.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from crmbridge.cli._common import ConfigOption, console, runtime
from crmbridge.cli.actor import (
    ActorOption,
    ReasonOption,
    RevealReasonOption,
    check_reveal,
    cli_actor,
    record_reveal,
)
from crmbridge.core.logsafe import mask_text

__all__ = ["register"]

dl_app = typer.Typer(help="Records that failed: list, inspect (masked), retry.", no_args_is_help=True)
cf_app = typer.Typer(help="Fields changed on both sides (two-way jobs): list, inspect, resolve.", no_args_is_help=True)


def _when(v: Any) -> str:
    return v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else ""


def _record_mapping(rt: Any, letter: dict[str, Any]) -> Any:
    """The mapping that reads the dead letter's record (the job's source or target mapping, by the letter's system
    and object), or ``None`` when the job or its mapping is gone (every field then masks by the fallback)."""
    job = rt.config.jobs.get(letter["job"])
    if job is None:
        return None
    here = (letter["source_system"], letter["source_object"])
    ref = (job.source_mapping if here == (job.source_system, job.source_object)
           else job.target_mapping if here == (job.target_system, job.target_object) else None)
    if ref is None:
        return None
    try:
        return rt.mapping(ref)
    except Exception:   # a mapping that no longer loads: mask without it (fail closed)
        return None


@dl_app.command("list")
def dl_list(config: ConfigOption = None, job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
            status: Annotated[str, typer.Option(help="open, retrying, resolved, abandoned or all.")] = "open",
            limit: int = 100) -> None:
    """Dead letters, oldest first."""
    rt = runtime(config)
    with rt.store.transaction() as tx:
        rows = tx.list_dead_letters(job, status=None if status == "all" else [status], limit=limit)
    rt.close()
    t = Table(title=f"dead letters ({status})")
    for col in ("id", "job", "source", "record", "stage", "reason", "message", "tries", "next try", "status"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["id"]), r["job"], f"{r['source_system']}.{r['source_object']}", r["external_id"] or "",
                  r["stage"], r["reason_code"], Text(mask_text(r["message"])[:80]), str(r["attempts"]),
                  _when(r["next_attempt_at"]), r["status"])
    console.print(t)
    if not rows:
        console.print("no dead letters")


@dl_app.command("show")
def dl_show(dl_id: int, config: ConfigOption = None) -> None:
    """One dead letter with its record's fields, each masked by the class of the canonical field it feeds."""
    from crmbridge.canonical.masking import mask_vendor_record

    rt = runtime(config)
    with rt.store.transaction() as tx:
        r = tx.get_dead_letter(dl_id)
        if r is None:
            rt.close()
            raise typer.BadParameter(f"no dead letter {dl_id}")
        payload = tx.unseal(rt.cipher, "dead_letters", "payload", row=r, token=r["payload"]) \
            if r["payload"] else None
    mapping = _record_mapping(rt, r) if payload is not None else None
    rt.close()
    for k in ("id", "job", "run_id", "source_system", "source_object", "external_id", "stage", "reason_code",
              "message", "attempts", "status", "created_at", "next_attempt_at"):
        value = mask_text(r[k]) if k == "message" and r[k] else r[k]   # free text: the pattern net, again
        console.print(f"[bold]{k}[/]: ", Text(str(value)), sep="", highlight=False)
    if payload is not None:
        t = Table(title="record (masked)")
        t.add_column("field")
        t.add_column("value")
        for k, v in mask_vendor_record(payload, mapping):
            t.add_row(Text(k), Text(v))
        console.print(t)


@dl_app.command("retry")
def dl_retry(dl_id: Annotated[int | None, typer.Argument(help="A dead letter id.")] = None,
             config: ConfigOption = None,
             all_: Annotated[bool, typer.Option("--all", help="Every open dead letter.")] = False,
             run: Annotated[bool, typer.Option(help="Run the jobs concerned now.")] = True) -> None:
    """Make dead letters due now (attempt counter kept) and, by default, run their jobs to retry them.

    A letter whose record, read again from its system, carries C3 authentication data (a PIN, a CVV...) is refused:
    it is not made due, the refusal names the key paths (never a value), and the command exits 1.
    """
    from crmbridge.sync.deadletters import retry_dead_letters
    from crmbridge.sync.report import render_summary

    if dl_id is None and not all_:
        raise typer.BadParameter("give a dead letter id or --all")
    rt = runtime(config)
    try:
        with rt.store.transaction() as tx:
            rows = ([tx.get_dead_letter(dl_id)] if dl_id is not None
                    else tx.list_dead_letters(status=["open", "retrying"], limit=100_000))
            rows = [r for r in rows if r is not None]
            if not rows:
                raise typer.BadParameter(f"no dead letter {dl_id}" if dl_id is not None else "no open dead letters")
        outcome = retry_dead_letters(rt, rows, actor=cli_actor("deadletters retry"), run=False,
                                     say=lambda m: console.print(Text(m)))
        jobs = sorted({r["job"] for r in rows if r["id"] in outcome.due})
        if outcome.due:
            console.print(f"{len(outcome.due)} dead letter(s) due now, in job(s): {', '.join(jobs)}")
        failed = bool(outcome.refused)
        if run and outcome.due:
            from crmbridge.sync.engine import run_job

            for job in jobs:
                report = run_job(rt, job, actor=cli_actor("deadletters retry"))
                render_summary(report, console)
                failed = failed or report.failed
    finally:
        rt.close()
    if failed:
        raise typer.Exit(1)


@cf_app.command("list")
def cf_list(config: ConfigOption = None, job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
            status: Annotated[str, typer.Option(help="open, resolved or all.")] = "open") -> None:
    """Conflicts waiting for review."""
    rt = runtime(config)
    with rt.store.transaction() as tx:
        rows = tx.list_conflicts(job, status=None if status == "all" else status, limit=1000)
    rt.close()
    t = Table(title=f"conflicts ({status})")
    for col in ("id", "job", "party", "fields", "raised", "status", "resolution", "by"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["id"]), r["job"], r["party_id"], ", ".join(r["field_paths"]), _when(r["created_at"]),
                  r["status"], r["resolution"] or "", r["actor"] or "")
    console.print(t)
    if not rows:
        console.print("no conflicts")


@cf_app.command("show")
def cf_show(conflict_id: int, config: ConfigOption = None,
            reveal: Annotated[bool, typer.Option(
                "--reveal", help="Show values in clear (needs --reason; ledgered with who, what and why).")]
            = False, reason: RevealReasonOption = None, actor: ActorOption = None) -> None:
    """One conflict: the last synced value and each side's value, masked by class unless --reveal."""
    from crmbridge.canonical.masking import mask_canonical
    from crmbridge.sync.resolution import conflict_values

    rt = runtime(config)
    try:
        check_reveal(rt.config, reveal, reason)
        with rt.store.transaction() as tx:
            row = tx.get_conflict(conflict_id)
        if row is None:
            raise typer.BadParameter(f"no conflict {conflict_id}")
        values = conflict_values(rt, row)
        if reveal:   # ledgered before anything is shown
            with rt.store.transaction() as tx:
                record_reveal(tx.ledger(rt.signer, cipher=rt.cipher), what=f"conflicts show {conflict_id}",
                              fields=row["field_paths"], reason=reason or "", note=actor, party_id=row["party_id"],
                              job=row["job"])
    finally:
        rt.close()
    console.print(f"conflict {conflict_id} · job {row['job']} · party {row['party_id']} · {row['status']}")
    t = Table()
    for col in ("field", "last synced", "source", "target"):
        t.add_column(col)
    for path in row["field_paths"]:
        def show(side: str, p: str = path) -> str:
            v = values[side].get(p)
            return "∅" if v is None else str(v) if reveal else mask_canonical(p, v, None)
        t.add_row(Text(path), Text(show("base")), Text(show("source")), Text(show("target")))
    console.print(t)
    console.print(f"resolve with: crmbridge conflicts resolve {conflict_id} --take source|target|value")


@cf_app.command("resolve")
def cf_resolve(conflict_id: int, config: ConfigOption = None,
               take: Annotated[str, typer.Option(help="source, target or value.")] = "source",
               value: Annotated[str | None, typer.Option(help="The value, with --take value.")] = None,
               actor: ActorOption = None, reason: ReasonOption = None) -> None:
    """Settle a conflict: the chosen value is written where it is missing and the decision is ledgered."""
    from crmbridge.sync.resolution import resolve_conflict

    if take not in ("source", "target", "value"):
        raise typer.BadParameter("--take must be source, target or value")
    rt = runtime(config)
    try:
        res = resolve_conflict(rt, conflict_id, take=take, value=value,  # type: ignore[arg-type]
                               actor=cli_actor(actor, reason))
    finally:
        rt.close()
    console.print(f"conflict {res.conflict_id} resolved ({res.path}); written to: {', '.join(res.wrote_to) or 'none'}")


def register(app: typer.Typer) -> None:
    app.add_typer(dl_app, name="deadletters")
    app.add_typer(cf_app, name="conflicts")
