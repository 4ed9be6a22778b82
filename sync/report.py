"""What a run did, counted and shown: the run statistics, the end-of-run summary table and the dry-run plan."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from crmbridge.sync.ledger import Action

__all__ = ["Action", "PlannedChange", "RunReport", "render_plan", "render_summary"]


@dataclass
class PlannedChange:
    """One record's decision in a dry run: what would happen and the masked field diff."""

    action: Action
    source_id: str
    party_id: str | None
    fields: dict[str, tuple[str, str]] = field(default_factory=dict)   # path -> (masked before, masked after)
    reason: str | None = None


@dataclass
class RunReport:
    """The outcome of one run of one job."""

    run_id: str
    job: str
    dry_run: bool = False
    status: str = "running"          # running | succeeded | failed | suspicious
    actions: Counter[str] = field(default_factory=Counter)
    read: int = 0
    out_of_scope: int = 0            # records of a kind the target mapping does not take (silently not synced)
    api_calls: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    throttled: int = 0
    credits_remaining: int | None = None
    duration_seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    plan: list[PlannedChange] = field(default_factory=list)
    planned_write_calls: int = 0

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "job": self.job, "dry_run": self.dry_run, "status": self.status,
                "read": self.read, "out_of_scope": self.out_of_scope, "actions": dict(self.actions),
                "api_calls": self.api_calls,
                "retries": self.retries, "throttled": self.throttled, "credits_remaining": self.credits_remaining,
                "duration_seconds": round(self.duration_seconds, 3), "error": self.error, "warnings": self.warnings}


_STATUS_STYLE = {"succeeded": "green", "failed": "bold red", "suspicious": "yellow", "running": "cyan"}


_ACTION_LABELS = {
    Action.CREATED: "created", Action.UPDATED: "updated", Action.SKIPPED_UNCHANGED: "unchanged",
    Action.SKIPPED_NO_CONSENT: "no consent", Action.SKIPPED_ECHO: "echo", Action.CONFLICT: "conflicts",
    Action.FAILED: "failed", Action.DELETED: "deleted",
}


def render_summary(report: RunReport, console: Console | None = None) -> None:
    """The end-of-run summary table: what was read, each decision taken (only those that happened), the vendor
    calls it cost, retries and duration."""
    console = console or Console()
    title = f"{'DRY RUN — ' if report.dry_run else ''}job {report.job} · run {report.run_id}"
    cols: list[tuple[str, str]] = [("read", str(report.read))]
    if report.out_of_scope:
        cols.append(("out of scope", str(report.out_of_scope)))
    for action, label in _ACTION_LABELS.items():
        n = report.actions.get(action, 0)
        if n or action in (Action.CREATED, Action.UPDATED, Action.FAILED):
            cols.append((label, str(n)))
    if report.dry_run:
        cols.append(("write calls planned", str(report.planned_write_calls)))
    cols += [("API calls", str(sum(report.api_calls.values()))), ("retries", str(report.retries)),
             ("time", f"{report.duration_seconds:.1f}s")]
    t = Table(title=title, show_header=True, header_style="bold", title_justify="left")
    for label, _ in cols:
        t.add_column(label, justify="right", no_wrap=True)
    t.add_row(*(value for _, value in cols))
    console.print(t)
    style = _STATUS_STYLE.get(report.status, "")
    calls = ", ".join(f"{k} {v}" for k, v in sorted(report.api_calls.items()))
    console.print(f"status: [{style}]{report.status}[/]" + (f" — {report.error}" if report.error else "")
                  + (f"   (API calls: {calls})" if calls else ""), highlight=False)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if report.credits_remaining is not None:
        console.print(f"vendor API credits remaining: {report.credits_remaining}")


def render_plan(report: RunReport, console: Console | None = None, *, limit: int = 50) -> None:
    """The dry-run plan: counts by action, then masked field-level diffs per record."""
    console = console or Console()
    render_summary(report, console)
    console.print(f"write calls it would make: {report.planned_write_calls}")
    shown = [p for p in report.plan if p.action not in (Action.SKIPPED_UNCHANGED,)]
    for p in shown[:limit]:
        head = f"[bold]{p.action}[/] {p.source_id}" + (f" → party {p.party_id}" if p.party_id else "")
        console.print(head + (f" ({p.reason})" if p.reason else ""))
        for path, (before, after) in sorted(p.fields.items()):
            console.print(f"    {path}: [red]{before or '∅'}[/] → [green]{after or '∅'}[/]", highlight=False)
    if len(shown) > limit:
        console.print(f"… and {len(shown) - limit} more records")
