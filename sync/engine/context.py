"""The engine's typed vocabulary: a run's context, its two sides, the decision taken for a record, a batch."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from crmbridge.adapters.base import Adapter, RawRecord, WriteItem, WriteResult
from crmbridge.canonical.mapping import Mapping
from crmbridge.canonical.model import Party
from crmbridge.config import JobConfig
from crmbridge.core.errors import RecordError
from crmbridge.sync.report import RunReport
from crmbridge.sync.state.ledger import Action
from crmbridge.sync.state.lineage import mapping_versions

__all__ = ["BatchKind", "BatchResult", "CursorState", "Decision", "RunContext", "Side", "StopRequested", "iso",
           "parse_iso"]


class BatchKind(enum.StrEnum):
    """Where a one-way batch's records come from (a run handles them in this order)."""

    RETRY = "retry"          # due dead letters fetched again from the source
    EXTRACT = "extract"      # changes since the cursor, in extraction order: these move the cursor
    DELETE = "delete"        # deletions and closures


class StopRequested(Exception):
    """Raised after a batch committed when ``should_stop`` says so: the run ends ``stopped``."""


def iso(ts: datetime) -> str:
    """A cursor value: UTC, microseconds, ``Z``."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Decision:
    """What the engine decided for one record, before and after the write."""

    raw: RawRecord
    action: Action | None = None             # None while a write is pending
    party_id: str | None = None
    party: Party | None = None
    canonical: dict[str, Any] | None = None  # what the target should hold now
    payload_hash: str | None = None
    content_hash: str | None = None          # keyed hash of the party's canonical form (for the snapshot)
    raw_hash: str | None = None
    item: WriteItem | None = None
    target_id: str | None = None
    previous: dict[str, Any] | None = None   # flat canonical last synced to the target
    reason: str | None = None
    error: RecordError | None = None
    stage: str | None = None
    silent: bool = False                     # an overlap re-read already handled: nothing to record
    intent_id: int | None = None
    echo_hash: str | None = None             # two-way: hash of the fields read back from the target
    origin: Literal["source", "target"] = "source"   # the side ``raw`` was read from
    outcome: str | None = None               # a silent decision's outcome (report.OUTCOMES); else from ``action``
    result: WriteResult | None = None        # the vendor's answer to ``item`` (or to its delete), for the ledger
    correlation_id: str | None = None        # the id of the write call that carried it (see records.correlation_id)

    def quiet(self, outcome: str) -> Decision:
        """Nothing to record for this record (no ledger entry): it ends as ``outcome``."""
        self.silent, self.outcome = True, outcome
        return self


@dataclass
class CursorState:
    """Where a job's extraction of one side stands: the watermark, the records at it, and the overlap."""

    key: str
    watermark: datetime | None
    boundary: dict[str, str]
    overlap: int
    ordered: bool
    max_seen: datetime | None = None

    @property
    def since(self) -> datetime | None:
        return self.watermark - timedelta(seconds=self.overlap) if self.watermark else None


@dataclass
class Side:
    """One end of a job: its system, object, adapter and mapping."""

    system: str
    object: str
    adapter: Adapter
    mapping: Mapping

    @property
    def cursor_key(self) -> str:
        return f"{self.system}.{self.object}"


@dataclass
class RunContext:
    """One run of one job as the engine sees it (built by :meth:`JobRunner.context`)."""

    run_id: int
    name: str
    job: JobConfig
    source: Side
    target: Side
    hash_key: bytes
    report: RunReport
    dry_run: bool
    actor: str
    pending_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: keys with an unfinished write intent at the target from any job (another job may have half-written them)
    unfinished_keys: set[str] = field(default_factory=set)
    #: while a one-way batch is recorded: the batch's source ids that have an unresolved dead letter (None: ask)
    open_letters: set[str] | None = None
    #: while a one-way batch is decided: record hashes of its source ids' unresolved dead letters (None: ask)
    failed_hashes: dict[str, set[str]] | None = None
    #: batches committed so far (kept on the run's row, so a crashed run says how far it got)
    batches: int = 0
    #: whether this process keeps the run's row up to date after each batch (a distributed worker does not: its
    #: dispatcher owns the run)
    track_progress: bool = True
    #: two-way: party id -> (the target's record found for a create a run that did not finish journaled, that
    #: intent's id): merged with the source like any two-way change instead of overwritten (JobRunner._guard_intents)
    recovered: dict[str, tuple[RawRecord, int]] = field(default_factory=dict)
    #: re-derive every record read, even one whose source record is unchanged since the job last read it (a
    #: changed mapping, a full refresh; see :mod:`crmbridge.sync.engine.versions`): the payload hash still makes
    #: an unchanged target payload cost no call
    rederive: bool = False
    #: cursor keys this run reads from the start (a changed mapping or a full refresh resets them)
    from_start: set[str] = field(default_factory=set)
    #: mapping reference -> the mapping of the version the job last completed a run with, where it changed (a
    #: plan compares the payload it would send with the one that version made of the same state)
    previous_mappings: dict[str, Mapping] = field(default_factory=dict)

    @property
    def mapping_versions(self) -> dict[str, str]:
        """File name -> version (content hash) of the source and target mappings: what a snapshot written by this
        run records, as its ledger entries do."""
        return mapping_versions(self.source.mapping, self.target.mapping)


@dataclass
class BatchResult:
    """What :func:`process_batch` did with one batch (the run's report holds the running totals)."""

    read: int                                                  # records read
    outcomes: Counter[str] = field(default_factory=Counter)    # how they ended (report.OUTCOMES)
