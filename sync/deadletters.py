"""Retrying dead letters, for ``crmbridge deadletters retry`` and the console's retry button alike.

A retry makes the letters due now (their attempt counter kept) and runs their jobs, which read the records again
and either sync them (the letter is resolved) or dead-letter them anew. Before that, each record is read once from
its system: one that now carries C3 authentication data (a PIN, a CVV...) is refused, not made due, and the
refusal names the key paths, never a value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crmbridge.core.logsafe import mask_text
from crmbridge.sync.bootstrap import Runtime

__all__ = ["RetryOutcome", "c3_refusals", "retry_dead_letters"]

#: reads in a row that fail before a retry stops reading a system (the run's breaker judges it)
READS_BEFORE_DOWN = 3


@dataclass
class RetryOutcome:
    """What a retry did: the letters made due, those refused (id → why) and the report of each job run."""

    due: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    reports: list[Any] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.refused) or any(getattr(r, "failed", False) for r in self.reports)


def c3_refusals(rt: Runtime, rows: list[dict[str, Any]], say: Callable[[str], None] = lambda _m: None
                ) -> dict[int, str]:
    """Letters whose record carries C3 data now (read again from its system; the engine reads it the same way to
    retry it), by id → the refusal. A record that cannot be read, or is gone, is left to the run to judge.
    ``say`` hears each note (masked)."""
    from crmbridge.canonical.c3 import refuse_c3
    from crmbridge.core.errors import CrmBridgeError, ForbiddenDataError

    out: dict[int, str] = {}
    down: dict[str, int] = {}    # consecutive read failures per system: a system that is down is not read on
    for r in rows:
        if not r["external_id"] or not r["source_system"] or down.get(r["source_system"], 0) >= READS_BEFORE_DOWN:
            continue
        where = f"{r['source_system']}:{r['source_object']}/{r['external_id']}"
        try:
            raw = rt.adapter(r["source_system"]).get(r["source_object"], r["external_id"])
        except (CrmBridgeError, OSError) as exc:
            down[r["source_system"]] = down.get(r["source_system"], 0) + 1
            say(f"dead letter {r['id']}: {where} could not be read before the retry ({mask_text(str(exc))}); "
                "the run reads it again")
            continue
        down[r["source_system"]] = 0
        data = getattr(raw, "data", raw)
        if not isinstance(data, dict):
            continue
        try:
            refuse_c3(data, where=where)
        except ForbiddenDataError as exc:
            out[r["id"]] = str(exc)
            say(f"dead letter {r['id']} not retried: {exc} (remove it at the source, then retry)")
    return out


def retry_dead_letters(rt: Runtime, rows: list[dict[str, Any]], *, actor: str, run: bool = True,
                       say: Callable[[str], None] = lambda _m: None) -> RetryOutcome:
    """Make ``rows`` (dead-letter rows) due now, except those refused for C3 data, and with ``run`` run their jobs
    as ``actor`` (the runs and their ledger entries name them)."""
    from crmbridge.sync.engine import run_job

    out = RetryOutcome(refused=c3_refusals(rt, rows, say))
    due = [r for r in rows if r["id"] not in out.refused]
    with rt.store.transaction() as tx:
        for r in due:
            tx.mark_dead_letter(r["id"], "open", next_attempt_at=datetime.now(UTC))
    out.due = [int(r["id"]) for r in due]
    if run:
        for job in sorted({r["job"] for r in due}):
            out.reports.append(run_job(rt, job, actor=actor))
    return out
