"""``crmbridge runs list|show``: every run the state store recorded, whoever started it.

Runs started by hand, by cron, by the scheduler or by ``dispatch`` all leave a row in the state store's ``runs``
table (failed, crashed, no-op and dry runs too); these commands read it (nothing else: no vendor is called)::

    crmbridge runs list --job core_to_zoho --since 2026-12-01 --limit 20
    crmbridge runs show 42 --json
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from crmbridge.cli._common import ConfigOption, console

__all__ = ["register"]

runs_app = typer.Typer(help="The runs recorded in the state store: list them, show one with its counts.",
                       no_args_is_help=True)

_STATUS_STYLE = {"succeeded": "green", "failed": "bold red", "crashed": "bold red", "partial": "yellow",
                 "stopped": "yellow", "aborted": "yellow", "suspicious": "yellow", "refused": "magenta",
                 "running": "cyan"}
#: counts that are not record decisions
_NOT_DECISIONS = ("read", "api_calls", "retries", "throttled", "refusals")
_WRITES = ("created", "updated", "deleted")


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        try:
            when = datetime.combine(date.fromisoformat(value), time())
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not an ISO date or date-time (2026-12-01 or "
                                     "2026-12-01T08:00:00+08:00)", param_hint="--since") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _utc(v: datetime | None) -> datetime | None:
    if v is None:
        return None
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def _read(config: Path | None, query: Any) -> Any:
    """Run ``query(tx)`` in a read-only unit of work of the configured state store (the database refuses
    writes in it)."""
    from sqlalchemy.exc import SQLAlchemyError

    from crmbridge.config import load_config
    from crmbridge.core.errors import ConfigurationError
    from crmbridge.sync.state.store import StateStore

    cfg = load_config(config)
    store = StateStore.from_url(cfg.state.url)
    try:
        with store.transaction(refuse_writes=True) as tx:
            return query(tx)
    except SQLAlchemyError as exc:
        raise ConfigurationError(f"the state database of {cfg.source_file} (state.url) has no runs table yet: run "
                                 f"`crmbridge db upgrade` ({type(exc).__name__})") from None
    finally:
        store.dispose()


def _view(run: dict[str, Any]) -> dict[str, Any]:
    """A runs row as shown and printed as JSON: times in UTC ISO form, duration, masked reason."""
    from crmbridge.core.logsafe import mask_text

    started, finished = _utc(run.get("started_at")), _utc(run.get("finished_at"))
    counts = dict(run.get("counts") or {})
    if isinstance(counts.get("refusals"), dict):   # vendors' reasons, masked like every text shown
        counts["refusals"] = {mask_text(str(k)): v for k, v in counts["refusals"].items()}
    reason = run.get("error_summary")
    return {
        "id": run["id"], "job": run["job"], "status": run["status"], "dry_run": bool(run.get("dry_run")),
        "started_at": started.isoformat() if started else None,
        "finished_at": finished.isoformat() if finished else None,
        "duration_seconds": round((finished - started).total_seconds(), 3) if started and finished else None,
        "counts": counts, "reason": mask_text(reason) if reason else None,
        "actor": run.get("actor"), "host": run.get("host"), "pid": run.get("pid"),
        "crmbridge_version": run.get("crmbridge_version"),
    }


def _n(counts: dict[str, Any], key: str) -> int:
    v = counts.get(key)
    return int(v) if isinstance(v, (int, float)) else 0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def _status(status: str) -> str:
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


@runs_app.command("list")
def list_runs(
    config: ConfigOption = None,
    job: Annotated[str | None, typer.Option(help="Only this job's runs.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Only runs started at or after this ISO date or date-time (a date or a time without zone is UTC).")]
        = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first.", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """Runs newest first: status, duration, records read / written / failed, and the reason when not clean."""
    start = _since(since)

    def query(tx: Any) -> list[dict[str, Any]]:
        return tx.list_runs(job, limit=limit, since=start)  # type: ignore[no-any-return]

    rows = [_view(r) for r in _read(config, query)]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    t = Table(title="crmbridge runs" + (f" of {job}" if job else ""), title_justify="left")
    for col, justify in (("run", "right"), ("job", "left"), ("started (UTC)", "left"), ("duration", "right"),
                         ("status", "left"), ("read", "right"), ("written", "right"), ("failed", "right"),
                         ("reason", "left")):
        t.add_column(col, justify=justify, no_wrap=col != "reason")  # type: ignore[arg-type]
    for r in rows:
        c = r["counts"]
        started = (r["started_at"] or "")[:19].replace("T", " ")
        reason = r["reason"] or ""
        t.add_row(str(r["id"]), r["job"], started, _duration(r["duration_seconds"]),
                  _status(r["status"]) + (" [dim](dry run)[/]" if r["dry_run"] else ""),
                  str(_n(c, "read")), str(sum(_n(c, k) for k in _WRITES)), str(_n(c, "failed")),
                  reason if len(reason) <= 80 else reason[:79] + "…")
    console.print(t)
    if not rows:
        console.print("no run recorded" + (f" for job {job}" if job else "") + (f" since {since}" if since else ""))


@runs_app.command("show")
def show_run(
    run_id: Annotated[int, typer.Argument(help="The run's id (see `crmbridge runs list`).")],
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    top: Annotated[int, typer.Option(help="How many refusal reasons to show.", min=1)] = 10,
) -> None:
    """One run: when, who, how long, its status and reason, and every count broken out (with the top refusal
    reasons when the run recorded them)."""
    from crmbridge.core.errors import ConfigurationError

    run = _read(config, lambda tx: tx.get_run(run_id))
    if run is None:
        raise ConfigurationError(f"no run {run_id} in the state database (see `crmbridge runs list`)")
    r = _view(run)
    if as_json:
        typer.echo(json.dumps(r, ensure_ascii=False, indent=2))
        return
    console.print(f"[bold]run {r['id']}[/] of job [bold]{r['job']}[/]: {_status(r['status'])}"
                  + (" [dim](dry run)[/]" if r["dry_run"] else ""))
    console.print(f"started {r['started_at'] or '-'}  finished {r['finished_at'] or '-'}  "
                  f"duration {_duration(r['duration_seconds'])}", highlight=False)
    console.print(f"by {r['actor'] or '-'} on {r['host'] or '-'} (pid {r['pid'] or '-'}), crmbridge "
                  f"{r['crmbridge_version'] or 'version not recorded'}", highlight=False)
    if r["reason"]:
        console.print(f"reason: {r['reason']}", markup=False, highlight=False)
    counts = r["counts"]
    t = Table(title="counts", title_justify="left")
    t.add_column("count")
    t.add_column("n", justify="right")
    for key in ("read", *sorted(k for k in counts if k not in _NOT_DECISIONS), "api_calls", "retries", "throttled"):
        if key in counts and not isinstance(counts[key], dict):
            t.add_row(key, str(counts[key]))
    console.print(t)
    refusals = counts.get("refusals")
    if isinstance(refusals, dict) and refusals:
        rt = Table(title="top refusal reasons", title_justify="left")
        rt.add_column("reason")
        rt.add_column("records", justify="right")
        ranked = sorted(refusals.items(), key=lambda kv: (-_n(refusals, kv[0]), kv[0]))
        for reason, n in ranked[:top]:
            rt.add_row(str(reason), str(n))
        console.print(rt)
        if len(ranked) > top:
            console.print(f"… and {len(ranked) - top} more reasons")


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
