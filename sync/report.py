"""What a run did, counted and shown: the run statistics, the end-of-run summary table and the dry-run plan."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from crmbridge.sync.state.ledger import Action

__all__ = ["COMPLETED", "EXIT_CODES", "NOT_SYNCED", "OUTCOMES", "Action", "MappingChange", "PlannedChange", "RunReport",
           "outcome_of", "render_plan", "render_summary"]


@dataclass
class PlannedChange:
    """One record's decision in a dry run: what would happen and the masked field diff."""

    action: Action
    source_id: str
    party_id: str | None
    fields: dict[str, tuple[str, str]] = field(default_factory=dict)   # path -> (masked before, masked after)
    reason: str | None = None
    #: the target's fields that would change, in the vendor's terms: field path -> (masked before, masked after)
    target_fields: dict[str, tuple[str, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"action": str(self.action), "source_id": self.source_id, "party_id": self.party_id,
                "reason": self.reason, "fields": {p: list(v) for p, v in self.fields.items()},
                "target_fields": {p: {"before": b, "after": a} for p, (b, a) in self.target_fields.items()}}


@dataclass
class MappingChange:
    """A dry run's account of a changed mapping: how many records it would update, and which target fields."""

    mapping: str
    records: int = 0
    fields: set[str] = field(default_factory=set)

    @property
    def message(self) -> str:
        return (f"{self.records} record{'s' if self.records != 1 else ''} will be updated because mapping "
                f"{self.mapping} changed" + (f": fields {', '.join(sorted(self.fields))}" if self.fields else ""))

    def as_dict(self) -> dict[str, Any]:
        return {"mapping": self.mapping, "records": self.records, "fields": sorted(self.fields),
                "message": self.message}


#: what each record read ends as; a run accounts for every record it read in exactly one of these
OUTCOMES = ("created", "updated", "unchanged", "deleted", "out_of_scope", "no_consent", "echo", "suppressed",
            "unmanaged", "conflict", "dead_lettered", "deferred")
#: outcomes that leave a record not (yet) synced: a run with any of them is ``partial``
NOT_SYNCED = ("conflict", "dead_lettered", "deferred")
#: the ledger action behind an outcome
_OUTCOME_OF_ACTION = {
    Action.CREATED: "created", Action.UPDATED: "updated", Action.SKIPPED_UNCHANGED: "unchanged",
    Action.SKIPPED_NO_CONSENT: "no_consent", Action.SKIPPED_ECHO: "echo", Action.CONFLICT: "conflict",
    Action.FAILED: "dead_lettered", Action.DELETED: "deleted",
}

#: statuses of a run that went through to its end (every record read is accounted for; a partial run's refused
#: records are dead letters, retried by later runs)
COMPLETED = ("succeeded", "partial")
#: run statuses, and the exit code of ``crmbridge run`` for each (README, "Run outcomes")
EXIT_CODES = {"succeeded": 0, "failed": 1, "partial": 3, "unreachable": 4, "suspicious": 5, "stopped": 6,
              "crashed": 1, "refused": 7}


def outcome_of(action: Action | str) -> str:
    """The outcome a ledger action stands for."""
    return _OUTCOME_OF_ACTION.get(Action(action), "unchanged")


@dataclass
class RunReport:
    """The outcome of one run of one job.

    ``status``: ``succeeded`` (every record read was written, unchanged, or not for this target by design),
    ``partial`` (some records dead-lettered, refused or in conflict), ``failed`` (the run stopped on an error, or
    refused more than the job's ``max_failed_ratio``), ``stopped`` (on request, after a committed batch),
    ``suspicious`` (a full scan read nothing after runs that read plenty); ``crashed`` is what a later run records
    for a run whose process died.
    """

    run_id: str
    job: str
    dry_run: bool = False
    status: str = "running"          # running | succeeded | partial | failed | stopped | suspicious
    actions: Counter[str] = field(default_factory=Counter)
    #: every record read, by what it ended as (OUTCOMES): their sum is ``read``
    outcomes: Counter[str] = field(default_factory=Counter)
    #: why records were refused or dead-lettered: ``stage: code`` → count
    refusals: Counter[str] = field(default_factory=Counter)
    #: the system that could not be reached when the run stopped for that (exit code 4)
    unreachable: str | None = None
    read: int = 0
    api_calls: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    throttled: int = 0
    credits_remaining: int | None = None
    duration_seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    plan: list[PlannedChange] = field(default_factory=list)
    planned_write_calls: int = 0
    #: a dry run: the job's changed mappings and what they would update (said first in the plan)
    mapping_changes: list[MappingChange] = field(default_factory=list)
    #: system -> how far ahead of this host's clock its records were seen stamped in this run, in seconds (the
    #: newest modified stamp of a page minus the instant the page was read: a lower bound, only a clock running
    #: ahead shows); absent: none seen ahead. Measured and reported, never compensated.
    clock_ahead_seconds: dict[str, float] = field(default_factory=dict)

    def note_clock_ahead(self, system: str, seconds: float) -> None:
        """Record that ``system`` stamped a record ``seconds`` after the instant it was read (if positive)."""
        if seconds > 0:
            self.clock_ahead_seconds[system] = round(max(seconds, self.clock_ahead_seconds.get(system, 0.0)), 3)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def exit_code(self) -> int:
        """What ``crmbridge run`` exits with: 0 succeeded, 1 failed, 3 partial, 4 a system unreachable,
        5 suspicious, 6 stopped (7, a run refused because another process holds the job, has no report)."""
        if self.status == "failed" and self.unreachable:
            return EXIT_CODES["unreachable"]
        return EXIT_CODES.get(self.status, 1)

    @property
    def out_of_scope(self) -> int:
        """Records not for this target by design (another kind of party, closed before ever synced)."""
        return self.outcomes["out_of_scope"]

    def count(self, outcome: str, n: int = 1) -> None:
        """Account ``n`` records read as ``outcome``."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        if n:
            self.outcomes[outcome] += n

    @property
    def accounted(self) -> int:
        return sum(self.outcomes.values())

    def conclude(self, max_failed_ratio: float) -> None:
        """Turn a finished run's ``succeeded`` into what its records say: every record read must be accounted
        for; records not synced make it ``partial``; refusals above ``max_failed_ratio`` of the records read make
        it ``failed``."""
        if self.accounted != self.read:
            self.warnings.append(f"accounting: {self.read} records read but {self.accounted} outcomes recorded "
                                 f"({dict(self.outcomes)}); treat this run as incomplete")
            if self.status == "succeeded":
                self.status = "partial"
        if self.status not in ("succeeded", "suspicious"):
            return
        refused = self.outcomes["dead_lettered"] + self.outcomes["deferred"]
        if self.read and refused / self.read > max_failed_ratio:
            self.status = "failed"
            self.error = (f"{refused} of {self.read} records refused or dead-lettered "
                          f"({refused / self.read:.0%}, above max_failed_ratio {max_failed_ratio:.0%})"
                          + (f"; top reasons: {self.top_refusals()}" if self.refusals else ""))
        elif self.status == "succeeded" and (any(self.outcomes[o] for o in NOT_SYNCED) or self.refusals):
            self.status = "partial"   # records not synced, or other work refused (an erasure not yet propagated)

    def top_refusals(self, n: int = 3) -> str:
        return ", ".join(f"{reason} ×{k}" for reason, k in self.refusals.most_common(n))

    def counts(self) -> dict[str, Any]:
        """What the runs table keeps of the run (``crmbridge runs``)."""
        out: dict[str, Any] = {"read": self.read, **{str(k): v for k, v in self.actions.items()},
                               "outcomes": dict(self.outcomes), "api_calls": sum(self.api_calls.values()),
                               "retries": self.retries}
        if self.api_calls:   # per system, for the console's chart of API calls per system over time
            out["api_calls_by_system"] = dict(sorted(self.api_calls.items()))
        if self.refusals:
            out["refusals"] = dict(self.refusals.most_common(20))
        if self.unreachable:
            out["unreachable"] = self.unreachable
        if self.clock_ahead_seconds:
            out["clock_ahead_seconds"] = dict(self.clock_ahead_seconds)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "job": self.job, "dry_run": self.dry_run, "status": self.status,
                "exit_code": self.exit_code, "read": self.read, "outcomes": dict(self.outcomes),
                "refusals": dict(self.refusals), "unreachable": self.unreachable,
                "out_of_scope": self.out_of_scope, "actions": dict(self.actions),
                "api_calls": self.api_calls,
                "retries": self.retries, "throttled": self.throttled, "credits_remaining": self.credits_remaining,
                "duration_seconds": round(self.duration_seconds, 3), "error": self.error, "warnings": self.warnings,
                "clock_ahead_seconds": dict(self.clock_ahead_seconds),
                **({"plan": [p.as_dict() for p in self.plan if p.action != Action.SKIPPED_UNCHANGED],
                    "planned_write_calls": self.planned_write_calls,
                    "estimated_api_calls": self.estimated_api_calls,
                    "mapping_changes": [c.as_dict() for c in self.mapping_changes]} if self.dry_run else {})}

    @property
    def estimated_api_calls(self) -> int:
        """A dry run's estimate of the vendor calls the real run would make: the reads the plan made, and the
        write calls it planned (in the target's batch sizes)."""
        return sum(self.api_calls.values()) + self.planned_write_calls


_STATUS_STYLE = {"succeeded": "green", "partial": "bold yellow", "failed": "bold red", "suspicious": "yellow",
                 "stopped": "yellow", "crashed": "bold red", "running": "cyan"}
_OUTCOME_LABELS = {"created": "created", "updated": "updated", "unchanged": "unchanged", "deleted": "deleted",
                   "out_of_scope": "out of scope", "no_consent": "no consent", "echo": "echo",
                   "suppressed": "suppressed", "unmanaged": "unmanaged", "conflict": "conflicts",
                   "dead_lettered": "dead-lettered", "deferred": "deferred"}


_ACTION_LABELS = {
    Action.CREATED: "created", Action.UPDATED: "updated", Action.SKIPPED_UNCHANGED: "unchanged",
    Action.SKIPPED_NO_CONSENT: "no consent", Action.SKIPPED_ECHO: "echo", Action.CONFLICT: "conflicts",
    Action.FAILED: "failed", Action.DELETED: "deleted",
}


def render_summary(report: RunReport, console: Console | None = None) -> None:
    """The end-of-run summary: the records read and what each ended as (one row per outcome that happened, the
    rows adding up to the records read), the vendor calls it cost, retries, duration, then the status with the
    top refusal reasons. Narrow enough for an 80-column terminal or a cron mail."""
    console = console or Console()
    title = f"{'DRY RUN — ' if report.dry_run else ''}job {report.job} · run {report.run_id}"
    t = Table(title=title, show_header=True, header_style="bold", title_justify="left")
    t.add_column("records", no_wrap=True)
    t.add_column("", justify="right", no_wrap=True)
    t.add_column("", no_wrap=True)
    t.add_row("[bold]read[/]", f"[bold]{report.read}[/]", "")
    for outcome in OUTCOMES:   # every record read ends in exactly one of these: they add up to "read"
        n = report.outcomes.get(outcome, 0)
        if n or outcome in ("created", "updated", "dead_lettered"):
            bad = outcome in NOT_SYNCED and n
            t.add_row(f"  {_OUTCOME_LABELS[outcome]}", f"[bold red]{n}[/]" if bad else str(n),
                      "[yellow]not synced[/]" if bad else "")
    if report.accounted != report.read:
        t.add_row("[bold red]  not accounted for[/]", f"[bold red]{report.read - report.accounted}[/]", "")
    console.print(t)
    calls = ", ".join(f"{k} {v}" for k, v in sorted(report.api_calls.items()))
    parts = [f"API calls {sum(report.api_calls.values())}" + (f" ({calls})" if calls else ""),
             f"retries {report.retries}", f"time {report.duration_seconds:.1f}s"]
    if report.dry_run:
        parts.insert(0, f"write calls planned {report.planned_write_calls}")
    console.print(" · ".join(parts), highlight=False)
    style = _STATUS_STYLE.get(report.status, "")
    code = f" (exit {report.exit_code})" if report.exit_code else ""
    console.print(f"status: [{style}]{report.status}[/]{code}" + (f" — {report.error}" if report.error else ""),
                  highlight=False)
    if report.refusals:
        console.print("top refusal reasons: " + report.top_refusals(5), highlight=False)
    if report.unreachable:
        console.print(f"[bold red]unreachable:[/] {report.unreachable}", highlight=False)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if report.credits_remaining is not None:
        console.print(f"vendor API credits remaining: {report.credits_remaining}")


def render_plan(report: RunReport, console: Console | None = None, *, limit: int = 50) -> None:
    """The dry-run plan: counts by action, then masked field-level diffs per record."""
    console = console or Console()
    for change in report.mapping_changes:   # said first: a changed mapping is why records would be updated
        console.print(f"[bold yellow]{change.message}[/]", highlight=False)
    render_summary(report, console)
    console.print(f"write calls it would make: {report.planned_write_calls} "
                  f"(API calls in all, estimated: {report.estimated_api_calls})")
    shown = [p for p in report.plan if p.action not in (Action.SKIPPED_UNCHANGED,)]
    for p in shown[:limit]:
        head = f"[bold]{p.action}[/] {p.source_id}" + (f" → party {p.party_id}" if p.party_id else "")
        console.print(head + (f" ({p.reason})" if p.reason else ""))
        for path, (before, after) in sorted((p.target_fields or p.fields).items()):
            console.print(f"    {path}: [red]{before or '∅'}[/] → [green]{after or '∅'}[/]", highlight=False)
    if len(shown) > limit:
        console.print(f"… and {len(shown) - limit} more records")
