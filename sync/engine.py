"""The sync engine: one run of one job, with no loss and no duplicates.

A run streams the source in pages and handles them in batches::

    extract ─► map in ─► identify ─► consent ─► diff ─► map out ─► (intents) ─► write ─► record
                 │           │                    │                                      │
            dead letter   review             unchanged: no call          ledger + xref + snapshots + cursor
                                                                          in ONE transaction per batch

Guarantees, and where they come from:

* **No loss.** The cursor (per job and source object) moves only in the transaction that records the batch's
  outcomes, after the target acknowledged the writes; a record that fails is recorded as a dead letter in that
  same transaction (and retried by later runs), so moving past it loses nothing. Extraction re-reads an overlap
  window before the watermark; re-read records whose source content is unchanged are recognised by their keyed
  content hash and skipped without a ledger entry (they were recorded when first handled).
* **No duplicates.** A new party's id is committed (source cross-reference) *before* anything is written to a
  target, and every write is keyed by that id: an upsert on the target's key field (Zoho), or, where the vendor
  has no upsert (Fxiaoke), a write-intent journal plus a lookup by the key field before repeating a create that
  a crash or timeout cut off.
* **No needless calls.** A record whose target payload hashes as what was last written costs no write call.
* **Echo suppression** (two-way). What crmbridge wrote to a side is remembered as the keyed hash of the fields the
  job reads back from that side; when the side reports the record as changed and those fields hash the same, it
  is crmbridge's own write coming back (even if the vendor's automation touched other fields): no ping-pong.

Dry runs take the same decisions, call no write API and roll back every state change, cursor included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select

from crmbridge.adapters.base import UNCERTAIN_CODES, Adapter, Page, RawRecord, WriteItem, WriteResult, WriteStatus
from crmbridge.canonical.c3 import refuse_c3, without_c3
from crmbridge.canonical.mapping import Mapping, mask_kind_for
from crmbridge.canonical.masking import mask, mask_canonical
from crmbridge.canonical.model import Party, hash_canonical, parse_party
from crmbridge.config import MAX_BATCH_SIZE, JobConfig
from crmbridge.core.errors import (
    ConfigurationError,
    CrmBridgeError,
    FatalSyncError,
    LeaseHeldError,
    RecordError,
    RetryableError,
    SystemUnavailableError,
)
from crmbridge.core.logsafe import bind_log_context, reset_log_context
from crmbridge.sync.bootstrap import Runtime
from crmbridge.sync.merge import ConflictPolicy, diff, flatten, merge_unseen, three_way_merge, unflatten
from crmbridge.sync.report import PlannedChange, RunReport, outcome_of
from crmbridge.sync.state.db import chunked
from crmbridge.sync.state.ledger import Action, LedgerEntryIn
from crmbridge.sync.state.ledger_trust import publish_configured
from crmbridge.sync.state.store import DeadLetterStatus, RunStatus, StoreTx, dead_letters, write_intents

__all__ = ["JobRunner", "effective_batch_size", "keyed_hash", "run_job"]

log = logging.getLogger("crmbridge.sync")

LEASE_TTL_SECONDS = 300.0
#: lease holders of this process whose run is under way (a holder of this process not in it has ended)
_ACTIVE_HOLDERS: set[str] = set()
#: a full-scan run reading nothing after a run that read at least this many is flagged, not a success
SUSPICIOUS_DROP_FROM = 100
#: when a failed record is tried again
DEAD_LETTER_BACKOFF = timedelta(minutes=5)
#: a system whose records are stamped more than this far ahead of this host's clock is reported (run warning)
CLOCK_AHEAD_WARN_SECONDS = 30.0
CLOSED_STAGES = frozenset({"CLOSED", "DECEASED", "DISSOLVED", "MERGED"})
TOMBSTONE = "tombstone"
#: ledger reason of the writes that recover a create a run which did not finish may have applied (two-way)
RECOVERED = "recovered a create a run that did not finish may have applied: merged with the target's current record"


def effective_batch_size(job: JobConfig, target: Adapter) -> int:
    """The job's ``batch_size`` when configured; unset, enough records to fill the target's concurrent write calls
    (vendor batch maximum × the adapter's concurrency, at least the default 100, at most the configurable
    maximum): a batch's writes go out alone, so a batch of 100 records leaves Zoho's 100-record upserts partly
    filled and its edition's concurrency unused."""
    if "batch_size" in job.model_fields_set:
        return job.batch_size
    fill = target.max_batch_size * target.concurrency
    return min(MAX_BATCH_SIZE, max(job.batch_size, fill))


def keyed_hash(value: Any, key: bytes) -> str:
    """HMAC-SHA256 of a JSON value in canonical form (a plain hash of personal data is brute-forceable)."""
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _batched(pages: Iterable[Page], n: int) -> Iterator[list[RawRecord]]:
    """Records of successive pages in batches of ``n``: a batch may span pages, so a job's batch size (and with it
    the target's write concurrency) is not capped by the source's page size."""
    buf: list[RawRecord] = []
    for page in pages:
        buf.extend(page.records)
        while len(buf) >= n:
            yield buf[:n]
            buf = buf[n:]
    if buf:
        yield buf


def _snap_row(party_id: str, system: str, obj: str) -> dict[str, str]:
    return {"party_id": party_id, "system": system, "object": obj}


class _DryRunRollback(Exception):
    """Raised inside a dry run's transaction to roll it back."""


class _StopRequested(Exception):
    """Raised after a batch committed when ``should_stop`` says so: the run ends ``stopped``."""


@dataclass
class _Decision:
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

    def quiet(self, outcome: str) -> _Decision:
        """Nothing to record for this record (no ledger entry): it ends as ``outcome``."""
        self.silent, self.outcome = True, outcome
        return self


@dataclass
class _CursorState:
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
class _Side:
    """One end of a job: its system, object, adapter and mapping."""

    system: str
    object: str
    adapter: Adapter
    mapping: Mapping

    @property
    def cursor_key(self) -> str:
        return f"{self.system}.{self.object}"


@dataclass
class _Ctx:
    run_id: int
    name: str
    job: JobConfig
    source: _Side
    target: _Side
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
    #: intent's id): merged with the source like any two-way change instead of overwritten (see _guard_intents)
    recovered: dict[str, tuple[RawRecord, int]] = field(default_factory=dict)


class JobRunner:
    """Runs one configured job once (see the module docstring).

    Args:
        rt: the runtime built by :func:`crmbridge.sync.bootstrap.bootstrap`.
        job_name: a job of the configuration.
        actor: who runs it, recorded in the ledger (``scheduler``, ``user:alice``, ``worker:3``).
        progress: called with the number of records handled after each batch (a progress bar).
        should_stop: asked after each committed batch; ``True`` ends the run there with status ``stopped``
            (the cursor covers exactly the committed batches), e.g. on SIGTERM in the scheduler.
        lease_ttl: seconds the job's lease lives without a heartbeat (a crashed holder's lease expires).
    """

    #: whether a run refused by the job's lease leaves a ``refused`` run row (the scheduler's skipped fires do not)
    record_refusal: bool = True

    def __init__(self, rt: Runtime, job_name: str, *, actor: str = "user",
                 progress: Callable[[int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, lease_ttl: float = LEASE_TTL_SECONDS) -> None:
        try:
            self.job = rt.config.jobs[job_name]
        except KeyError:
            raise ConfigurationError(f"no job {job_name!r}; configured jobs: "
                                     f"{', '.join(sorted(rt.config.jobs)) or '(none)'}") from None
        self.rt = rt
        self.name = job_name
        self.actor = actor
        self.progress = progress
        self.should_stop = should_stop
        self.lease_ttl = lease_ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # ================================================================================== the run
    def run(self, *, dry_run: bool = False) -> RunReport:
        """Run the job. Record-level problems are dead letters, not exceptions; a fatal problem ends the run with
        status ``failed`` and the cursor where the last committed batch left it."""
        rt, job = self.rt, self.job
        started = time.monotonic()
        src = _Side(job.source_system, job.source_object, rt.adapter(job.source_system),
                    rt.mapping(job.source_mapping))
        tgt = _Side(job.target_system, job.target_object, rt.adapter(job.target_system),
                    rt.mapping(job.target_mapping))
        size = effective_batch_size(job, tgt.adapter)
        if size != job.batch_size:
            job = self.job = job.model_copy(update={"batch_size": size})
        if not dry_run and not self._acquire_lease():  # refused: recorded as a run of its own (`runs list`)
            refused = LeaseHeldError(self.name, (rt.store.lease_holder(self.name) or {}).get("holder"))
            if self.record_refusal:
                with rt.store.transaction() as tx:
                    refused.run_id = tx.start_run(self.name, actor=self.actor)
                    tx.finish_run(refused.run_id, RunStatus.REFUSED, error_summary=refused.message)
            raise refused
        log_token = bind_log_context(job=self.name)  # job and run id on every log line of the run (core.logsafe)
        try:
            with rt.store.transaction() as tx:
                previous = tx.list_runs(self.name, limit=5)
                # dry runs are runs too (``crmbridge runs list``); everything else they touch is rolled back
                run_id = tx.start_run(self.name, actor=self.actor, dry_run=dry_run)
                if not dry_run:   # the run's signed start: its entries are not a run nobody signed for
                    tx.ledger(rt.signer, cipher=rt.cipher).checkpoint(run_id=run_id, run_event="start")
                for dead in tx.mark_crashed_runs(self.name, current=run_id, dry_runs_of_dead_local=True) \
                        if not dry_run else []:
                    log.warning("run %s of job %s ended without finishing (its process died): recorded crashed",
                                dead, self.name)
            report = RunReport(run_id=str(run_id), job=self.name, dry_run=dry_run)
            bind_log_context(run_id=report.run_id)
            ctx = _Ctx(run_id, self.name, job, src, tgt, rt.indexer().field_key("content-hash"), report,
                       dry_run, self.actor)
            calls_before = {s.system: s.adapter.stats.api_calls for s in (src, tgt)}
            stats_before = [(s.adapter.stats.retries, s.adapter.stats.throttled) for s in (src, tgt)]
            full_scan = False
            try:
                self._propagate_erasures(ctx)   # erasures pending at this job's target first (PIPL Art. 47)
                full_scan = self._run_two_way(ctx) if job.direction == "two_way" else self._run_one_way(ctx)
                report.status = "succeeded"
                self._warn_clock_ahead(report)
                self._flag_suspicious(report, previous, full_scan)
                report.conclude(job.max_failed_ratio)
                if report.status == "failed" and tgt.adapter.stats.consecutive_failed_calls and any(
                        k.endswith(": unreachable") for k, _ in report.refusals.most_common(1)):
                    report.unreachable = tgt.system   # refused mostly because the target did not answer
            except _StopRequested:
                report.status = "stopped"
                log.warning("run %s of job %s stopped on request after a committed batch", run_id, self.name)
            except (CrmBridgeError, OSError) as exc:
                report.status = "failed"
                report.error = f"{type(exc).__name__}: {exc}"
                report.unreachable = self._unreachable(exc, src, tgt)
                log.error("run %s of job %s failed: %s", run_id, self.name, report.error)
            except Exception as exc:  # noqa: BLE001 - a bug must still end the run as failed, never leave it running
                report.status = "failed"
                report.error = f"internal error: {type(exc).__name__}: {exc}"
                log.exception("run %s of job %s failed on an internal error", run_id, self.name)
            report.duration_seconds = time.monotonic() - started
            for s in (src, tgt):
                report.api_calls[s.system] = report.api_calls.get(s.system, 0) + (
                    s.adapter.stats.api_calls - calls_before.get(s.system, 0))
            report.retries = sum(s.adapter.stats.retries - b[0] for s, b in zip((src, tgt), stats_before, strict=True))
            report.throttled = sum(s.adapter.stats.throttled - b[1]
                                   for s, b in zip((src, tgt), stats_before, strict=True))
            report.credits_remaining = tgt.adapter.stats.credits_remaining or src.adapter.stats.credits_remaining
            try:
                self._finish(ctx)
            except CrmBridgeError as exc:   # e.g. the state database went away: the run stays unfinished
                report.status = "failed"
                report.error = "; ".join(x for x in (report.error, f"recording the run's end failed: {exc}") if x)
                log.error("run %s of job %s: %s", run_id, self.name, report.error)
            return report
        finally:
            reset_log_context(log_token)
            if not dry_run:
                _ACTIVE_HOLDERS.discard(self.holder)
                try:
                    rt.store.release_lease(self.name, self.holder)
                except CrmBridgeError as exc:
                    log.warning("job %s: lease not released (%s); it is taken over as soon as it is needed",
                                self.name, exc)

    def _acquire_lease(self) -> bool:
        """Take the job's lease; a lease still held by a process of this host that no longer exists (killed,
        crashed) is taken over at once instead of blocking every run until it expires."""
        store = self.rt.store
        if store.acquire_lease(self.name, self.holder, self.lease_ttl):
            _ACTIVE_HOLDERS.add(self.holder)
            return True
        stale = (store.lease_holder(self.name) or {}).get("holder")
        if stale and _dead_local_holder(stale):
            log.warning("job %s: taking over the lease of %s, a holder of this host that no longer runs",
                        self.name, stale)
            if store.take_over_lease(self.name, stale, self.holder, self.lease_ttl):
                _ACTIVE_HOLDERS.add(self.holder)
                return True
        return False

    @staticmethod
    def _unreachable(exc: BaseException, *sides: _Side) -> str | None:
        """The system a run stopped on because it did not answer (exit code 4), if that is why it stopped."""
        if isinstance(exc, SystemUnavailableError):
            return exc.system
        if isinstance(exc, RetryableError):
            return next((s.system for s in sides if s.adapter.name == exc.vendor), exc.vendor or "unknown")
        return None

    @staticmethod
    def _warn_clock_ahead(report: RunReport) -> None:
        """A run warning per system whose records were stamped ahead of this host's clock (see _reading)."""
        for system, ahead in sorted(report.clock_ahead_seconds.items()):
            if ahead > CLOCK_AHEAD_WARN_SECONDS:
                report.warnings.append(
                    f"clock skew: {system} stamps records at least {ahead:.0f} s ahead of this host's clock (or "
                    "its configured time zone is wrong); consent is judged by the consent records themselves, but "
                    "check both clocks (NTP): change windows, last-writer-wins conflicts and audit times compare "
                    "these stamps")

    def _flag_suspicious(self, report: RunReport, previous: list[dict[str, Any]], full_scan: bool) -> None:
        last_ok = next((r for r in previous if r["status"] in (RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value)
                        and not r["dry_run"]), None)
        last_read = int(((last_ok or {}).get("counts") or {}).get("read", 0))
        if report.read == 0 and last_read >= SUSPICIOUS_DROP_FROM:
            message = (f"read 0 records where the previous run read {last_read}: check the source connection "
                       "and its filters before trusting this run")
            if full_scan:
                report.status = "suspicious"
            report.warnings.append(message)

    def _finish(self, ctx: _Ctx) -> None:
        r = ctx.report
        status = RunStatus(r.status) if r.status in RunStatus.__members__.values() else RunStatus.FAILED
        if status is RunStatus.RUNNING:
            status = RunStatus.FAILED
        summary = "; ".join(x for x in (r.error, *r.warnings,
                                        f"top refusal reasons: {r.top_refusals()}" if r.refusals else None) if x)
        with self.rt.store.transaction() as tx:
            tx.finish_run(ctx.run_id, status, counts=r.counts(), error_summary=summary or None)
            if not ctx.dry_run:
                tx.ledger(self.rt.signer, cipher=self.rt.cipher).checkpoint(run_id=ctx.run_id)
        if not ctx.dry_run:   # after the commit: a published head never names a rolled-back checkpoint
            r.warnings.extend(f"ledger head not published to {p}"
                              for p in publish_configured(self.rt.config, self.rt.store.engine))

    @contextmanager
    def _tx(self, ctx: _Ctx) -> Iterator[StoreTx]:
        """A state transaction; in a dry run it is always rolled back."""
        try:
            with self.rt.store.transaction() as tx:
                yield tx
                if ctx.dry_run:
                    raise _DryRunRollback
        except _DryRunRollback:
            pass

    def _heartbeat(self, ctx: _Ctx) -> None:
        if not ctx.dry_run and not self.rt.store.heartbeat_lease(self.name, self.holder, self.lease_ttl):
            raise FatalSyncError(f"lost the lease on job {self.name}; another process took it over")
        if self.should_stop is not None and self.should_stop():
            raise _StopRequested

    # ================================================================================== one way
    def _run_one_way(self, ctx: _Ctx) -> bool:
        job, src = ctx.job, ctx.source
        with self.rt.store.transaction() as tx:
            cur = self._cursor(tx, ctx, src)
            self._load_intents(tx, ctx)
            due = self._due_dead_letters(tx, ctx)
        # 1. records that failed before, fetched again from the source
        for raws in self._refetch_dead_letters(ctx, due):
            self._one_way_batch(ctx, raws, None, retry=True)
        # 2. what changed since the cursor, oldest first
        since = cur.since
        fields = src.mapping.vendor_fields("in") or None
        for chunk in _batched(_reading(src, src.adapter.extract(src.object, since=since, fields=fields), ctx.report),
                              job.batch_size):
            self._one_way_batch(ctx, chunk, cur)
        # 3. deletions and closures
        for chunk in _batched(_reading(src, src.adapter.extract_deleted(src.object, since=since), ctx.report),
                              job.batch_size):
            self._one_way_batch(ctx, chunk, None)
        if not cur.ordered and cur.max_seen is not None:
            with self._tx(ctx) as tx:
                self._store_cursor(tx, ctx, cur, cur.max_seen, {})
        return since is None

    def _load_intents(self, tx: StoreTx, ctx: _Ctx) -> None:
        """Write intents a run that did not finish left pending at the target (both job directions need them: a
        create they journaled may have reached the target)."""
        ctx.pending_intents = {i["key"]: i for i in tx.pending_write_intents(
            ctx.name, target_system=ctx.target.system) if i["target_object"] == ctx.target.object}
        ctx.unfinished_keys = set(tx.connection.execute(select(write_intents.c.key).where(
            write_intents.c.target_system == ctx.target.system,
            write_intents.c.target_object == ctx.target.object,
            write_intents.c.status == "pending")).scalars())

    def _refetch_dead_letters(self, ctx: _Ctx, due: list[dict[str, Any]]) -> Iterator[list[RawRecord]]:
        """Batches of the source's current version of records that failed before (a letter whose record is gone
        from the source is abandoned: there is nothing left to sync)."""
        src = ctx.source
        failures = 0
        for chunk in chunked(due, ctx.job.batch_size):
            raws = []
            for letter in chunk:
                try:
                    raw = src.adapter.get(src.object, letter["external_id"])
                except RetryableError as exc:
                    # this letter waits for the next run (it stays due); a system that fails call after call is down
                    failures += 1
                    log.warning("dead letter %s: its record could not be read again (%s)", letter["id"], exc)
                    if failures >= ctx.job.circuit_breaker_calls:
                        raise SystemUnavailableError(
                            f"{failures} reads in a row failed after every retry: {exc}", system=src.system) from exc
                    continue
                failures = 0
                if raw is None:
                    with self._tx(ctx) as tx:
                        tx.mark_dead_letter(letter["id"], DeadLetterStatus.ABANDONED)
                else:
                    raws.append(raw)
            if raws:
                yield raws

    def _cursor(self, tx: StoreTx, ctx: _Ctx, side: _Side) -> _CursorState:
        c = tx.get_cursor(ctx.name, side.cursor_key)
        ordered = bool(getattr(side.adapter, "ordered_extract", True))
        if c is None or c.value is None:
            return _CursorState(side.cursor_key, None, {}, ctx.job.overlap_seconds, ordered)
        return _CursorState(side.cursor_key, _parse_iso(c.value), dict(c.boundary), ctx.job.overlap_seconds, ordered)

    def _due_dead_letters(self, tx: StoreTx, ctx: _Ctx) -> list[dict[str, Any]]:
        letters = tx.list_dead_letters(ctx.name, status=[DeadLetterStatus.OPEN.value],
                                       due_before=datetime.now(UTC), limit=10_000)
        return [d for d in letters if d["external_id"] and d["source_system"] == ctx.source.system
                and d["source_object"] == ctx.source.object and d["attempts"] < ctx.job.dead_letter_max_attempts]

    def _one_way_batch(self, ctx: _Ctx, raws: list[RawRecord], cursor: _CursorState | None, *,
                       retry: bool = False) -> None:
        ctx.report.read += len(raws)
        # decide, and commit new parties' ids before any write so a crash cannot mint a second id
        with self._tx(ctx) as tx:
            self._prefetch(tx, ctx, raws, retry=retry)
            try:
                decisions = [self._decide(tx, ctx, raw, cursor, retry=retry) for raw in raws]
            finally:
                ctx.failed_hashes = None
            self._guard_intents(tx, ctx, decisions)
        # two-way: a create a dead run may have applied, found at the target, is merged with what the target holds
        recovered = [d for d in decisions if d.party_id is not None and d.party_id in ctx.recovered]
        if recovered:
            decisions = [d for d in decisions if d.party_id is None or d.party_id not in ctx.recovered]
        if ctx.dry_run:
            self._plan(ctx, decisions)
            if recovered:
                self._merge_batch(ctx, [(d.party_id or "", d.raw, None) for d in recovered])
            return
        self._write(ctx, decisions)
        for d in decisions:
            ctx.report.count(d.outcome if d.silent else outcome_of(d.action or Action.FAILED))
        ctx.batches += 1
        with self.rt.store.transaction() as tx:
            ctx.open_letters = self._open_letters(tx, ctx, [d.raw.external_id for d in decisions if not d.silent])
            tx.prepare_party_keys(self.rt.cipher, {
                d.party_id for d in decisions if d.party_id and d.canonical is not None and not d.silent})
            try:
                entries = [e for d in decisions if not d.silent for e in self._record(tx, ctx, d)]
            finally:
                ctx.open_letters = None
            tx.ledger(self.rt.signer, cipher=self.rt.cipher).append(entries)
            if cursor is not None:
                self._advance(tx, ctx, cursor, decisions)
            self._note_progress(tx, ctx)
        if recovered:
            self._merge_batch(ctx, [(d.party_id or "", d.raw, None) for d in recovered])
        self._heartbeat(ctx)
        if self.progress is not None:
            self.progress(len(decisions) + len(recovered))

    def _prefetch(self, tx: StoreTx, ctx: _Ctx, raws: list[RawRecord], *, retry: bool) -> None:
        """What deciding a batch reads, in one query per kind for the whole batch instead of one per record:
        failed-as-is dead letters, the source cross-references, and the known parties' snapshots and target
        links (StoreTx answers the per-record lookups from it)."""
        src, tgt = ctx.source, ctx.target
        ids = [r.external_id for r in raws]
        if not retry:
            ctx.failed_hashes = self._failed_hashes(tx, ctx, ids)
        tx.prefetch_xrefs(src.system, src.object, ids)
        pids = [p for p in (tx.get_xref(src.system, src.object, e) for e in ids) if p is not None]
        tx.prefetch_parties(pids, snapshots_of=[(src.system, _read_key(src.object, ctx.name)),
                                                (tgt.system, tgt.object)],
                            xrefs_of=[(tgt.system, tgt.object)])

    def _decide(self, tx: StoreTx, ctx: _Ctx, raw: RawRecord, cursor: _CursorState | None, *,
                retry: bool = False) -> _Decision:
        src = ctx.source
        d = _Decision(raw, raw_hash=keyed_hash(dict(raw.data), ctx.hash_key))
        if self._suppress_erased(tx, ctx, d, src, tx.erasure_for_record(src.system, src.object, raw.external_id)):
            return d   # an erased party's record: never ingested or pushed again (ledgered suppressed-erased)
        if cursor is not None and cursor.boundary.get(raw.external_id) == d.raw_hash:
            return d.quiet("unchanged")   # read again at the watermark, handled before
        if not retry and self._failed_as_is(tx, ctx, raw, d.raw_hash):
            return d.quiet("deferred")    # failed before exactly as it is now: the dead-letter schedule retries it
        if raw.error is not None:         # unusable as read (e.g. a version that is not an integer)
            d.action, d.error, d.stage = Action.FAILED, raw.error, "read"
            return d
        d.party_id = tx.get_xref(src.system, src.object, raw.external_id)
        if d.party_id is not None and not raw.deleted:
            snap = tx.get_snapshot(d.party_id, src.system, _read_key(src.object, ctx.name))
            if snap is not None and snap.content_hash == d.raw_hash:
                return d.quiet("unchanged")   # re-read in the overlap window, unchanged since it was handled
        if raw.deleted or src.mapping.is_deleted(raw.data):
            return self._decide_tombstone(tx, ctx, d)
        party = self._map_in(tx, ctx, d)
        if party is None:
            return d
        scope = ctx.target.mapping.fixed_party_type
        if scope is not None and str(party.party_type) != scope:
            return d.quiet("out_of_scope")   # not this job's kind of party (e.g. organisations for Contacts)
        if party.lifecycle_stage in CLOSED_STAGES and ctx.job.delete_policy != "ignore":
            return self._decide_tombstone(tx, ctx, d)
        # the consent records' own status, capture order and withdrawal decide, never this host's clock against
        # stamps the source's clock made (a core running ahead would otherwise refuse every fresh consent)
        if ctx.job.consent_purpose and not party.has_consent(ctx.job.consent_purpose):
            d.action, d.reason = Action.SKIPPED_NO_CONSENT, f"no granted consent for {ctx.job.consent_purpose}"
            return d
        self._plan_write(tx, ctx, d, party)
        return d

    def _failed_hashes(self, tx: StoreTx, ctx: _Ctx, external_ids: list[str]) -> dict[str, set[str]]:
        """Record hashes of the unresolved dead letters of ``external_ids`` (one query per batch)."""
        t, out = dead_letters, {}
        for chunk in chunked(sorted(set(external_ids))):
            for ext, h in tx.connection.execute(select(t.c.external_id, t.c.record_hash).where(
                    t.c.job == ctx.name, t.c.source_system == ctx.source.system,
                    t.c.source_object == ctx.source.object, t.c.external_id.in_(chunk),
                    t.c.status.in_([DeadLetterStatus.OPEN.value, DeadLetterStatus.RETRYING.value]))):
                out.setdefault(ext, set()).add(h)
        return out

    def _failed_as_is(self, tx: StoreTx, ctx: _Ctx, raw: RawRecord, raw_hash: str) -> bool:
        if ctx.failed_hashes is not None:
            return raw_hash in ctx.failed_hashes.get(raw.external_id, ())
        t = dead_letters
        hit = tx.connection.execute(select(t.c.id).where(
            t.c.job == ctx.name, t.c.source_system == ctx.source.system, t.c.source_object == ctx.source.object,
            t.c.external_id == raw.external_id, t.c.record_hash == raw_hash,
            t.c.status.in_([DeadLetterStatus.OPEN.value, DeadLetterStatus.RETRYING.value])).limit(1)).first()
        return hit is not None

    def _map_in(self, tx: StoreTx, ctx: _Ctx, d: _Decision) -> Party | None:
        """Map a source record to a party and identify it (cross-reference, then match rules)."""
        src, raw = ctx.source, d.raw
        try:
            refuse_c3(raw.data, where=f"{src.system}:{src.object}/{raw.external_id}")
            party = src.mapping.to_party(raw.data, party_id=uuid.UUID(d.party_id) if d.party_id else uuid.uuid4())
        except RecordError as exc:
            d.action, d.error, d.stage = Action.FAILED, exc, "map_in"
            return None
        if d.party_id is None:
            if self._suppress_erased(tx, ctx, d, src, self._erased_identity(tx, ctx, party, d.raw)):
                return None   # a new record of an erased person (same identifier): suppressed until lifted
            try:
                matched = self._match(tx, ctx, party)
            except RecordError as exc:
                d.action, d.error, d.stage = Action.FAILED, exc, "identify"
                return None
            if matched is not None:
                party = parse_party({**party.canonical_dict(include_volatile=True), "party_id": matched})
            else:   # a party id minted just now has no snapshot and no link anywhere yet: nothing to look up
                tx.assume_new_party(str(party.party_id), snapshots_of=[(ctx.target.system, ctx.target.object)],
                                    xrefs_of=[(ctx.target.system, ctx.target.object)])
            tx.put_xref(src.system, src.object, raw.external_id, str(party.party_id))
            self._index_identities(tx, ctx, party)
        d.party_id, d.party = str(party.party_id), party
        return party

    def _plan_write(self, tx: StoreTx, ctx: _Ctx, d: _Decision, party: Party) -> None:
        """Map the party out for the target and decide whether a write is needed."""
        tgt = ctx.target
        if d.party_id is None:
            raise FatalSyncError(f"internal: {ctx.source.system} record {d.raw.external_id} has no party id at map-out")
        try:
            payload = tgt.mapping.map_out(party)
        except RecordError as exc:
            d.action, d.error, d.stage = Action.FAILED, exc, "map_out"
            return
        d.party = party
        d.canonical = party.canonical_dict()
        d.content_hash = hash_canonical(d.canonical, ctx.hash_key)
        d.payload_hash = keyed_hash(payload, ctx.hash_key)
        snap = tx.get_snapshot(d.party_id, tgt.system, tgt.object)
        linked = tx.xrefs_for_party(d.party_id, tgt.system, tgt.object)
        d.target_id = linked[0][2] if linked else None
        if snap is not None and snap.written_hash == d.payload_hash and d.target_id is not None:
            d.action = Action.SKIPPED_UNCHANGED
            return
        if snap is not None and snap.written_hash != TOMBSTONE:
            try:
                d.previous = flatten(tx.unseal(self.rt.cipher, "snapshots", "blob",
                                            row=_snap_row(d.party_id, tgt.system, tgt.object), token=snap.blob))
            except CrmBridgeError:
                d.previous = None  # erased or unreadable: the diff shows every field as new
        d.item = WriteItem(key=d.party_id, payload=payload, external_id=d.target_id,
                           key_field=tgt.mapping.spec.key_field, duplicate_search=ctx.job.duplicate_search)
        if ctx.job.direction == "two_way":
            d.canonical = {k: v for k, v in d.canonical.items() if k != "source_refs"}  # bookkeeping, not merged
            d.echo_hash = keyed_hash(_project(flatten(d.canonical), _path_filter(tgt.mapping.owned_canonical_paths(
                "in"))), ctx.hash_key)

    def _decide_tombstone(self, tx: StoreTx, ctx: _Ctx, d: _Decision) -> _Decision:
        job, tgt = ctx.job, ctx.target
        if d.party_id is None:
            return d.quiet("out_of_scope")   # closed or deleted before it was ever synced: nothing to delete
        linked = tx.xrefs_for_party(d.party_id, tgt.system, tgt.object)
        d.target_id = linked[0][2] if linked else None
        if job.delete_policy == "ignore" or d.target_id is None:
            d.action, d.reason = Action.SKIPPED_UNCHANGED, f"closed at the source; delete policy {job.delete_policy}"
            return d
        d.action, d.reason = Action.DELETED, f"closed at the source; delete policy {job.delete_policy}"
        if job.delete_policy == "deactivate":
            snap = tx.get_snapshot(d.party_id, tgt.system, tgt.object)
            if snap is not None and snap.written_hash != TOMBSTONE:
                try:
                    data = tx.unseal(self.rt.cipher, "snapshots", "blob",
                                  row=_snap_row(d.party_id, tgt.system, tgt.object), token=snap.blob)
                    closed = parse_party({**data, "party_id": d.party_id, "lifecycle_stage": "CLOSED"})
                    payload = tgt.mapping.map_out(closed)
                except CrmBridgeError as exc:
                    d.action, d.stage = Action.FAILED, "deactivate"
                    d.error = exc if isinstance(exc, RecordError) else RecordError(str(exc), code="deactivate")
                    return d
                d.party, d.canonical = closed, closed.canonical_dict()
                d.payload_hash = keyed_hash(payload, ctx.hash_key)
                d.item = WriteItem(key=d.party_id, payload=payload, external_id=d.target_id,
                                   key_field=tgt.mapping.spec.key_field, duplicate_search=job.duplicate_search)
        return d

    # -- durable erasure (PIPL Art. 47; docs/erasure.md) ----------------------------------------
    def _suppress_erased(self, tx: StoreTx, ctx: _Ctx, d: _Decision, side: _Side,
                         hit: dict[str, Any] | None) -> bool:
        """Settle a record of an erased party (``hit``: its erasure, see StoreTx.erasure_for_record): counted
        ``suppressed``, ledgered ``suppressed-erased`` once per version of the record and job (in this
        transaction, so the decision and its entry commit together), nothing ingested, nothing pushed."""
        if hit is None:
            return False
        d.party_id = hit["party_id"]
        d.quiet("suppressed")
        if tx.note_suppressed(hit["key_id"], ctx.name, d.raw_hash or keyed_hash(dict(d.raw.data), ctx.hash_key)):
            ctx.report.actions[Action.SUPPRESSED_ERASED] += 1
            other = ctx.target if side is ctx.source else ctx.source
            tx.ledger(self.rt.signer, cipher=self.rt.cipher).append([LedgerEntryIn(
                action=Action.SUPPRESSED_ERASED, run_id=str(ctx.run_id), job=ctx.name, source_system=side.system,
                source_object=side.object, source_id=d.raw.external_id, target_system=other.system,
                target_object=other.object, party_id=hit["party_id"], actor=ctx.actor,
                reason=f"party erased on {hit['erased_at']:%Y-%m-%d} (PIPL Art. 47): not ingested, not pushed; "
                       "if the person is a customer again: crmbridge erase --lift")])
        return True

    def _erased_identity(self, tx: StoreTx, ctx: _Ctx, party: Party, raw: RawRecord) -> dict[str, Any] | None:
        """The erasure in force whose blind-indexed identities this new record carries (the job's match keys
        and the identifier of each scheme), or ``None``; the record becomes one of the erasure's source
        records, so its later reads are suppressed by id (and re-read when the erasure is lifted)."""
        if not tx.has_erasures():
            return None
        indexer = self.rt.indexer()
        keys = self._identity_keys(ctx, party) + [
            (str(getattr(i.scheme, "value", i.scheme)), indexer.identifier(str(getattr(i.scheme, "value", i.scheme)),
                                                                           i.value))
            for i in party.identifiers if i.value]
        hit = tx.erasure_by_identity(dict.fromkeys(keys))
        if hit is None:
            return None
        key_id = tx.add_erasure_key(hit["erasure_id"], "source", system=ctx.source.system, obj=ctx.source.object,
                                    external_id=raw.external_id)
        return {**hit, "key_id": key_id}

    def _drop_erased(self, ctx: _Ctx, changes: list[tuple[str, RawRecord | None, RawRecord | None]]
                     ) -> list[tuple[str, RawRecord | None, RawRecord | None]]:
        """Two-way: the changes of erased parties (from either side) are ledgered suppressed-erased and counted
        suppressed instead of being merged (the job used to skip them silently, for ever)."""
        kept = []
        with self._tx(ctx) as tx:
            if not tx.has_erasures():
                return changes
            for pid, raw_s, raw_t in changes:
                side, raw = (ctx.target, raw_t) if raw_t is not None else (ctx.source, raw_s)
                if raw is None:   # nothing read: nothing to merge or to suppress
                    continue
                hit = tx.erasure_for_record(side.system, side.object, raw.external_id)
                if hit is None:
                    er = tx.erasure_for_party(pid)
                    hit = None if er is None else {
                        "party_id": pid, "erased_at": er["erased_at"], "key_id": tx.add_erasure_key(
                            er["id"], "target" if side is ctx.target else "source", system=side.system,
                            obj=side.object, external_id=raw.external_id)}
                if hit is None:
                    kept.append((pid, raw_s, raw_t))
                    continue
                self._suppress_erased(tx, ctx, _Decision(raw, party_id=pid), side, hit)
                ctx.report.count("suppressed", _reads(raw_s, raw_t))
        return kept

    def _propagate_erasures(self, ctx: _Ctx) -> None:
        """Carry out the erasures pending at this job's target, first thing in the run, by the job's delete policy:
        ``propagate`` deletes the CRM record; ``deactivate`` (and ``ignore``: an erasure is never ignored)
        anonymises it (lifecycle CLOSED, every field the mapping writes emptied, a placeholder name where the
        CRM requires one). Each outcome is ledgered (``deleted``) and marked done in one transaction after the
        CRM's answer; a crash before that commit leaves it pending and the next run repeats it: deleting a record
        already gone and rewriting the same anonymised values are both harmless. A refusal stays pending (a
        ``failed`` ledger entry and a warning) and is tried again by the next run."""
        tgt, job = ctx.target, ctx.job
        with self.rt.store.transaction() as tx:
            pending = tx.pending_propagations(tgt.system, tgt.object) if tx.has_erasures() else []
        if not pending:
            return
        how = "delete" if job.delete_policy == "propagate" else "deactivate"
        if ctx.dry_run:
            ctx.report.warnings.append(f"{len(pending)} erasure(s) to propagate to {tgt.system}.{tgt.object} "
                                       f"({how}): not carried out in a dry run")
            return
        for chunk in chunked(pending, job.batch_size):
            outcomes: list[tuple[dict[str, Any], str, str | None]] = []
            if how == "delete":
                results = tgt.adapter.delete(tgt.object, [p["external_id"] for p in chunk])
                for p, r in zip(chunk, results, strict=True):
                    if r.status is WriteStatus.DELETED:
                        outcomes.append((p, "deleted", None))
                    elif tgt.adapter.get(tgt.object, p["external_id"]) is None:
                        outcomes.append((p, "gone", None))   # already deleted (by us before a crash, or by hand)
                    else:
                        outcomes.append((p, "failed", f"{r.error.code if r.error else 'rejected'}: {r.error}"))
            else:
                items: list[tuple[dict[str, Any], WriteItem]] = []
                for p in chunk:
                    if tgt.adapter.get(tgt.object, p["external_id"]) is None:
                        outcomes.append((p, "gone", None))   # an upsert must not create it again
                        continue
                    try:
                        payload = _anonymised_payload(tgt, p["party_id"], p["party_type"])
                    except RecordError as exc:
                        outcomes.append((p, "failed", f"anonymise: {exc.code}: {exc}"))
                        continue
                    items.append((p, WriteItem(key=p["party_id"], payload=payload, external_id=p["external_id"],
                                               key_field=tgt.mapping.spec.key_field, duplicate_search=False)))
                results = tgt.adapter.write(tgt.object, [i for _, i in items]) if items else []
                for (p, _), r in zip(items, results, strict=True):
                    ok = r.status in (WriteStatus.UPDATED, WriteStatus.UNCHANGED, WriteStatus.CREATED)
                    outcomes.append((p, "deactivated", None) if ok else
                                    (p, "failed", f"{r.error.code if r.error else 'rejected'}: {r.error}"))
            with self.rt.store.transaction() as tx:
                entries = []
                for p, outcome, error in outcomes:
                    if outcome == "failed":
                        ctx.report.actions[Action.FAILED] += 1
                        ctx.report.refusals[f"erasure {how}: {(error or '').split(':', 1)[0]}"] += 1
                        ctx.report.warnings.append(f"the erasure of party {p['party_id']} did not reach "
                                                   f"{tgt.system}.{tgt.object}/{p['external_id']} ({error}); "
                                                   "it stays pending and the next run tries again")
                    else:
                        ctx.report.actions[Action.DELETED] += 1
                        tx.finish_propagation(p["key_id"], outcome)
                        if outcome != "deactivated":
                            tx.delete_xref(tgt.system, tgt.object, p["external_id"])
                    done = {"deleted": "deleted at the target", "gone": "already gone from the target",
                            "deactivated": "anonymised and closed at the target"}.get(outcome, f"not propagated: "
                                                                                             f"{error}")
                    entries.append(LedgerEntryIn(
                        action=Action.FAILED if outcome == "failed" else Action.DELETED, run_id=str(ctx.run_id),
                        job=ctx.name, target_system=tgt.system, target_object=tgt.object,
                        target_id=p["external_id"], party_id=p["party_id"], actor=ctx.actor,
                        reason=f"erasure (PIPL Art. 47), delete policy {job.delete_policy}: {done}"))
                tx.ledger(self.rt.signer, cipher=self.rt.cipher).append(entries)
            self._breaker(ctx, tgt)

    # -- identity ------------------------------------------------------------------------------
    def _identity_keys(self, ctx: _Ctx, party: Party) -> list[tuple[str, str]]:
        """(rule, blind index) for each configured match rule the party has every value of."""
        indexer = self.rt.indexer()
        out: list[tuple[str, str]] = []
        for rule in ctx.job.match_rules:
            values = [_match_value(party, key) for key in rule]
            if any(v is None for v in values):
                continue
            if len(rule) == 1:
                out.append((rule[0], indexer.identifier(rule[0], values[0] or "")))
            else:
                name = "+".join(rule)
                out.append((name, indexer.index(f"match.{name}", "|".join(v or "" for v in values), kind="raw")))
        return out

    def _match(self, tx: StoreTx, ctx: _Ctx, party: Party) -> str | None:
        """The existing party this new record is, by the first match rule that finds one; ambiguity is an error
        for review, never a guess."""
        for name, bidx in self._identity_keys(ctx, party):
            hits = tx.lookup_identity(name, bidx)
            if len(hits) > 1:
                raise RecordError(f"match rule {name} finds {len(hits)} parties; sent to review instead of guessing",
                                  code="ambiguous_match")
            if hits:
                return hits[0]
        return None

    def _index_identities(self, tx: StoreTx, ctx: _Ctx, party: Party) -> None:
        for name, bidx in self._identity_keys(ctx, party):
            tx.add_identity(name, bidx, str(party.party_id))

    # -- intents, writes, records --------------------------------------------------------------
    def _guard_intents(self, tx: StoreTx, ctx: _Ctx, decisions: list[_Decision]) -> None:
        """Where the target has no upsert: journal each write before the call, and look up by key any create that a
        run which did not finish journaled, so that it becomes an update instead of a duplicate.

        Recovery never overwrites what it did not see: the record found may have been edited since the dead run
        created it (a relationship manager's correction). In a two-way job it is the target's current state and is
        merged with the source like any two-way change (:meth:`_merge_batch`: against what was last synced, or,
        never synced, :func:`~crmbridge.sync.merge.merge_unseen`: fields the target owns keep its value); the earlier
        intent stays pending until that merge commits, so a crash in between recovers the same way again. A one-way
        job owns every field it writes (the target's copy is a projection of the source): the found record is
        updated with it, as every later update would (docs/engine_guarantees.md)."""
        tgt = ctx.target
        if getattr(tgt.adapter, "supports_upsert", True):
            return
        for d in decisions:
            if d.item is None:
                continue
            earlier = ctx.pending_intents.pop(d.item.key, None)
            if earlier is not None:
                if d.item.external_id is None and d.item.key_field:
                    found = tgt.adapter.find(tgt.object, d.item.key_field, d.item.key)
                    if found is not None and ctx.job.direction == "two_way":
                        ctx.recovered[d.item.key] = (found, earlier["id"])
                        d.item = None
                        continue
                    if found is not None:
                        d.item = dataclasses.replace(d.item, external_id=found.external_id)
                tx.complete_write_intent(earlier["id"], external_id=d.item.external_id, failed=True)
            if d.item.external_id is None and earlier is None and d.item.key not in ctx.unfinished_keys:
                d.item = dataclasses.replace(d.item, known_new=True)  # never written: create without a lookup
            d.intent_id = tx.add_write_intent(
                ctx.name, target_system=tgt.system, target_object=tgt.object, key=d.item.key,
                operation="update" if d.item.external_id else "create", payload_hash=d.payload_hash or "",
                run_id=ctx.run_id or None)

    def _write(self, ctx: _Ctx, decisions: list[_Decision]) -> None:
        tgt = ctx.target
        pending = [d for d in decisions if d.item is not None]
        results: list[WriteResult] = tgt.adapter.write(tgt.object, [d.item for d in pending]) if pending else []
        self._breaker(ctx, tgt)
        for d, r in zip(pending, results, strict=True):
            d.target_id = r.external_id or d.target_id
            if d.action is Action.DELETED:        # a deactivation
                if r.status in (WriteStatus.FAILED, WriteStatus.CONFLICT):
                    d.action, d.stage = Action.FAILED, "deactivate"
                    d.error = r.error or RecordError("the target refused the deactivation", code="rejected")
            elif r.status is WriteStatus.CREATED:
                d.action = Action.CREATED
            elif r.status in (WriteStatus.UPDATED, WriteStatus.UNCHANGED):
                d.action = Action.UPDATED
            elif r.status is WriteStatus.CONFLICT:
                d.action, d.reason = Action.CONFLICT, "the target changed since it was read"
            else:
                d.action, d.stage = Action.FAILED, "target"
                d.error = r.error or RecordError("the target refused the record", code="rejected")
        deletes = [d for d in decisions if d.action is Action.DELETED and d.item is None and d.target_id]
        if deletes and ctx.job.delete_policy == "propagate":
            outcome = tgt.adapter.delete(tgt.object, [d.target_id or "" for d in deletes])
            for d, r in zip(deletes, outcome, strict=True):
                if r.status is WriteStatus.FAILED:
                    d.action, d.stage = Action.FAILED, "delete"
                    d.error = r.error or RecordError("the target refused the delete", code="rejected")

    def _breaker(self, ctx: _Ctx, side: _Side) -> None:
        """Stop the run when a system is down as a whole: its last write calls all failed after every retry. The
        batch under way is not recorded (its records are read again by the next run, its write intents stay
        pending); fewer failures are the failing records' own dead letters."""
        failed = side.adapter.stats.consecutive_failed_calls
        if failed >= ctx.job.circuit_breaker_calls:
            raise SystemUnavailableError(f"{failed} write calls in a row failed after every retry; the batch "
                                         "under way is read again by the next run", system=side.system)

    def _note_progress(self, tx: StoreTx, ctx: _Ctx) -> None:
        if not ctx.dry_run and ctx.run_id and ctx.track_progress:
            tx.note_run_progress(ctx.run_id, {**ctx.report.counts(), "batches": ctx.batches})

    def _record(self, tx: StoreTx, ctx: _Ctx, d: _Decision) -> list[LedgerEntryIn]:
        """Store one decision's outcome; returns its ledger entries."""
        src, tgt, rt = ctx.source, ctx.target, self.rt
        if d.action is None:
            raise FatalSyncError(f"internal: no decision for {src.system} record {d.raw.external_id}")
        ctx.report.actions[d.action] += 1
        if d.action is Action.FAILED:
            self._dead_letter(tx, ctx, d)
            if d.intent_id is not None and not (d.error is not None and d.error.code in UNCERTAIN_CODES):
                # a write whose outcome is unknown keeps its intent pending: it is looked up before it is repeated
                tx.complete_write_intent(d.intent_id, failed=True)
            err = d.error
            return [self._entry(ctx, d, reason=f"{d.stage}: {err.code if err else 'error'}: {err}")]
        self._resolve_letters(tx, ctx, d.raw)
        if d.party_id is not None and not d.raw.deleted:
            # the source side: the keyed hash of what was read, for the overlap dedupe
            tx.put_snapshot(d.party_id, src.system, _read_key(src.object, ctx.name), content_hash=d.raw_hash or "",
                            blob=b"", version=d.raw.version)
        if d.action in (Action.CREATED, Action.UPDATED) or (d.action is Action.DELETED and d.item is not None):
            if not d.party_id or d.canonical is None or d.party is None:
                raise FatalSyncError(f"internal: {d.action} of {src.system} record {d.raw.external_id} "
                                     "without its party")
            if d.target_id:
                tx.put_xref(tgt.system, tgt.object, d.target_id, d.party_id)
            blob = tx.seal(rt.cipher, "snapshots", "blob",
                        row=_snap_row(d.party_id, tgt.system, tgt.object), value=d.canonical)
            tx.put_snapshot(d.party_id, tgt.system, tgt.object,
                            content_hash=d.content_hash or d.party.content_hash(ctx.hash_key),
                            blob=blob, written_hash=d.echo_hash or d.payload_hash)
        elif d.action is Action.DELETED and d.party_id and d.target_id:
            tx.delete_xref(tgt.system, tgt.object, d.target_id)
            tx.put_snapshot(d.party_id, tgt.system, tgt.object, content_hash=TOMBSTONE, blob=b"",
                            written_hash=TOMBSTONE)
        elif d.action is Action.CONFLICT and d.party_id:
            tx.add_conflict(ctx.name, d.party_id, ["*"], run_id=ctx.run_id or None)
        if d.intent_id is not None:
            tx.complete_write_intent(d.intent_id, external_id=d.target_id)
        return [self._entry(ctx, d, reason=d.reason)]

    def _dead_letter(self, tx: StoreTx, ctx: _Ctx, d: _Decision) -> None:
        src = ctx.target if d.origin == "target" else ctx.source
        err = d.error or RecordError("failed", code="failed")
        ctx.report.refusals[f"{d.stage or 'unknown'}: {err.code or type(err).__name__}"] += 1
        if ctx.open_letters is not None:
            ctx.open_letters.add(d.raw.external_id)
        row = {"job": ctx.name, "source_system": src.system, "source_object": src.object,
               "external_id": d.raw.external_id}
        tx.add_dead_letter(
            ctx.name, stage=d.stage or "unknown", reason_code=err.code or type(err).__name__, message=str(err),
            run_id=ctx.run_id or None, source_system=src.system, source_object=src.object,
            external_id=d.raw.external_id,
            # kept to retry it, never with the C3 data a record may have been refused for
            payload=tx.seal(self.rt.cipher, "dead_letters", "payload", row=row,
                         value=without_c3(dict(d.raw.data))),
            next_attempt_at=datetime.now(UTC) + DEAD_LETTER_BACKOFF, record_hash=d.raw_hash)

    def _open_letters(self, tx: StoreTx, ctx: _Ctx, external_ids: list[str]) -> set[str]:
        """Which of ``external_ids`` have an unresolved dead letter of this job (one query per batch instead of
        one per record: most records never failed)."""
        t, out = dead_letters, set()
        for chunk in chunked(sorted(set(external_ids))):
            out.update(tx.connection.execute(select(t.c.external_id).where(
                t.c.job == ctx.name, t.c.source_system == ctx.source.system, t.c.source_object == ctx.source.object,
                t.c.external_id.in_(chunk),
                t.c.status.in_([DeadLetterStatus.OPEN.value, DeadLetterStatus.RETRYING.value]))).scalars())
        return out

    def _resolve_letters(self, tx: StoreTx, ctx: _Ctx, raw: RawRecord) -> None:
        if ctx.open_letters is not None and raw.external_id not in ctx.open_letters:
            return
        t = dead_letters
        ids = tx.connection.execute(select(t.c.id).where(
            t.c.job == ctx.name, t.c.source_system == ctx.source.system, t.c.source_object == ctx.source.object,
            t.c.external_id == raw.external_id,
            t.c.status.in_([DeadLetterStatus.OPEN.value, DeadLetterStatus.RETRYING.value]))).scalars().all()
        for dl_id in ids:
            tx.mark_dead_letter(dl_id, DeadLetterStatus.RESOLVED)

    def _entry(self, ctx: _Ctx, d: _Decision, *, reason: str | None = None,
               changed: dict[str, tuple[Any, Any]] | None = None,
               direction: Literal["to_target", "to_source"] = "to_target") -> LedgerEntryIn:
        src, tgt = ctx.source, ctx.target
        if changed is None:
            changed = {}
            if d.canonical is not None and d.action in (Action.CREATED, Action.UPDATED, Action.DELETED):
                changed = diff(d.previous or {}, flatten(d.canonical))
        ptype = str(d.party.party_type) if d.party is not None else None
        return LedgerEntryIn(
            action=d.action or Action.FAILED, run_id=str(ctx.run_id), job=ctx.name,
            source_system=src.system if direction == "to_target" else tgt.system,
            source_object=src.object if direction == "to_target" else tgt.object,
            source_id=d.raw.external_id,
            target_system=tgt.system if direction == "to_target" else src.system,
            target_object=tgt.object if direction == "to_target" else src.object,
            target_id=d.target_id, party_id=d.party_id, changed_fields=sorted(changed),
            # an empty side is left out (the changed field list says which changed): a created record's "before"
            # was a null for every field, a fifth of the ledger's size
            before={p: _masked(p, b, ptype) for p, (b, _a) in changed.items() if b is not None},
            after={p: _masked(p, a, ptype) for p, (_b, a) in changed.items() if a is not None},
            diff={p: [b, a] for p, (b, a) in changed.items()} if changed and d.party_id else None,
            mapping_version=(tgt if direction == "to_target" else src).mapping.version_hash,
            actor=ctx.actor, reason=reason)

    def _plan(self, ctx: _Ctx, decisions: list[_Decision]) -> None:
        """Dry run: count what would happen, keep masked field diffs, count the write calls."""
        r = ctx.report
        writes = [d for d in decisions if d.item is not None]
        max_batch = ctx.target.adapter.max_batch_size
        r.planned_write_calls += -(-len(writes) // max_batch) if writes else 0
        for d in decisions:
            if d.silent:
                r.count(d.outcome or "unchanged")
                continue
            action = d.action or (Action.UPDATED if d.item is not None and d.item.external_id else Action.CREATED)
            r.actions[action] += 1
            r.count(outcome_of(action))
            if action is Action.FAILED:
                err = d.error
                r.refusals[f"{d.stage or 'unknown'}: {(err.code if err else None) or 'failed'}"] += 1
            changed = diff(d.previous or {}, flatten(d.canonical)) if d.canonical is not None else {}
            ptype = str(d.party.party_type) if d.party is not None else None
            r.plan.append(PlannedChange(
                action=action, source_id=d.raw.external_id, party_id=d.party_id,
                fields={p: (_masked(p, b, ptype) or "", _masked(p, a, ptype) or "") for p, (b, a) in changed.items()},
                reason=d.reason or (f"{d.stage}: {d.error}" if d.error else None)))

    def _advance(self, tx: StoreTx, ctx: _Ctx, cur: _CursorState, decisions: list[_Decision]) -> None:
        """Move the watermark to the newest record of the batch (extraction is oldest first), remembering the
        records at exactly that time so the next overlap does not handle them again."""
        stamps = [d.raw.modified_at for d in decisions if d.raw.modified_at is not None]
        if not stamps:
            return
        top = max(stamps)
        cur.max_seen = max(cur.max_seen, top) if cur.max_seen else top
        if not cur.ordered:
            return
        at_top = {d.raw.external_id: d.raw_hash or "" for d in decisions if d.raw.modified_at == top}
        if cur.watermark is not None and top < cur.watermark:
            return
        if cur.watermark is not None and top == cur.watermark:
            cur.boundary.update(at_top)
        else:
            cur.watermark, cur.boundary = top, at_top
        self._store_cursor(tx, ctx, cur, top, cur.boundary)

    def _store_cursor(self, tx: StoreTx, ctx: _Ctx, cur: _CursorState, at: datetime, boundary: dict[str, str]) -> None:
        tx.put_cursor(ctx.name, cur.key, field="modified_at", value=_iso(at), overlap_seconds=cur.overlap,
                      boundary=boundary)

    # ================================================================================== two way
    def _policy(self, ctx: _Ctx) -> ConflictPolicy:
        cp = ctx.job.conflict_policy
        owners: dict[str, Literal["source", "target"]] = {
            glob: ("source" if system == ctx.source.system else "target") for glob, system in cp.owners.items()}
        return ConflictPolicy(type=cp.type, owners=owners, default_owner="source",
                              clock_tolerance_seconds=cp.clock_tolerance_seconds)

    def _run_two_way(self, ctx: _Ctx) -> bool:
        """Both sides' changes since their cursors, merged per party against the last synced state.

        The target's changes are read first and held until merged (a CRM's changes between runs are few); the
        source is then streamed: parties new to the target are created as in a one-way job, known ones merged
        with the target's change if it has one; the target's remaining changes are merged last. Each cursor moves
        only after what it covers is committed.
        """
        src, tgt, job = ctx.source, ctx.target, ctx.job
        with self.rt.store.transaction() as tx:
            cur_s, cur_t = self._cursor(tx, ctx, src), self._cursor(tx, ctx, tgt)
            self._load_intents(tx, ctx)
            due = self._due_dead_letters(tx, ctx)
        # source records that failed before (a CRM record that failed is tried again when the CRM changes it)
        for raws in self._refetch_dead_letters(ctx, due):
            known, fresh = self._split_known(ctx, src, raws, retry=True)
            if fresh:
                self._one_way_batch(ctx, fresh, None, retry=True)
            if known:
                ctx.report.read += len(known)
                self._merge_batch(ctx, [(pid, raw, None) for pid, raw in known])
        changed_t: dict[str, RawRecord] = {}
        seen_t: list[_Decision] = []
        for page in _reading(tgt, tgt.adapter.extract(tgt.object, since=cur_t.since,
                                                      fields=tgt.mapping.vendor_fields("in") or None), ctx.report):
            with self.rt.store.transaction() as tx:
                for raw in page.records:
                    ctx.report.read += 1
                    seen_t.append(_Decision(raw, raw_hash=keyed_hash(dict(raw.data), ctx.hash_key)))
                    pid = tx.get_xref(tgt.system, tgt.object, raw.external_id)
                    if pid is None:
                        # created in the CRM: core banking creates customers, not crmbridge
                        ctx.report.count("unmanaged")
                        continue
                    seen = tx.get_snapshot(pid, tgt.system, _read_key(tgt.object, ctx.name))
                    if seen is not None and seen.content_hash == seen_t[-1].raw_hash:
                        ctx.report.count("unchanged")   # an overlap re-read of a record already merged
                    elif pid in changed_t:
                        ctx.report.count("unchanged")   # read twice in one run (paging): the newer one is merged
                        changed_t[pid] = raw
                    else:
                        changed_t[pid] = raw
        for page in _reading(src, src.adapter.extract(src.object, since=cur_s.since,
                                                      fields=src.mapping.vendor_fields("in") or None), ctx.report):
            for chunk in chunked(page.records, job.batch_size):
                known, fresh = self._split_known(ctx, src, chunk)
                if fresh:
                    self._one_way_batch(ctx, fresh, None)
                if known:
                    ctx.report.read += len(known)
                    self._merge_batch(ctx, [(pid, raw, changed_t.pop(pid, None)) for pid, raw in known])
                if not ctx.dry_run:
                    with self.rt.store.transaction() as tx:
                        self._advance(tx, ctx, cur_s, [_Decision(r, raw_hash=keyed_hash(dict(r.data), ctx.hash_key))
                                                       for r in chunk])
        for chunk in chunked(sorted(changed_t.items()), job.batch_size):
            self._merge_batch(ctx, [(pid, None, raw) for pid, raw in chunk])
        if seen_t and not ctx.dry_run:
            with self.rt.store.transaction() as tx:
                self._advance(tx, ctx, cur_t, seen_t)
        return cur_s.since is None and cur_t.since is None

    def _split_known(self, ctx: _Ctx, side: _Side, raws: list[RawRecord], *,
                     retry: bool = False) -> tuple[list[tuple[str, RawRecord]], list[RawRecord]]:
        """Source records of parties already at the target (to merge) and the others (to create); overlap
        re-reads of records merged before are read, and counted, as unchanged."""
        known: list[tuple[str, RawRecord]] = []
        fresh: list[RawRecord] = []
        with self.rt.store.transaction() as tx:
            for raw in raws:
                if tx.erasure_for_record(side.system, side.object, raw.external_id) is not None:
                    fresh.append(raw)   # an erased party's: the shared decide step records it suppressed-erased
                    continue
                pid = tx.get_xref(side.system, side.object, raw.external_id)
                if raw.error is not None or pid is None or not tx.xrefs_for_party(pid, ctx.target.system,
                                                                                  ctx.target.object):
                    fresh.append(raw)
                    continue
                seen = tx.get_snapshot(pid, side.system, _read_key(side.object, ctx.name))
                if retry or seen is None or seen.content_hash != keyed_hash(dict(raw.data), ctx.hash_key):
                    known.append((pid, raw))
                else:
                    ctx.report.read += 1
                    ctx.report.count("unchanged")
        return known, fresh

    def _read_side(self, side: _Side, raw: RawRecord, pid: str, base: dict[str, Any]) -> dict[str, Any]:
        """One side's current state of a party, as a flat canonical record.

        A side's mapping reads only some fields (a CRM sees a masked name, no ID number): what it reads is laid
        over the last synced state, and the result validated as a whole party, so values compare in the same
        normalised form. Source references are bookkeeping, not content, and are left out of the merge.
        """
        refuse_c3(raw.data, where=f"{side.system}:{side.object}/{raw.external_id}")   # two-way reads too
        partial = side.mapping.map_in_partial(raw.data, party_id=uuid.UUID(pid))
        overlay = {k: v for k, v in flatten(partial).items() if not k.startswith("source_refs")}
        view = {**base, **overlay}
        try:
            return _content(flatten(parse_party({**unflatten(view), "party_id": pid}).canonical_dict()))
        except RecordError:
            # not a valid party as it stands (e.g. a CRM edit of a name the core owns, which leaves the name parts
            # inconsistent): compare it as read; the merge decides, and the merged party is validated afterwards
            return view

    def _merge_batch(self, ctx: _Ctx, changes: list[tuple[str, RawRecord | None, RawRecord | None]]) -> None:
        src, tgt = ctx.source, ctx.target
        policy = self._policy(ctx)
        s_paths = _path_filter(src.mapping.owned_canonical_paths("in"))
        t_paths = _path_filter(tgt.mapping.owned_canonical_paths("in"))
        to_target: list[tuple[_Decision, dict[str, Any]]] = []
        to_source: list[tuple[_Decision, dict[str, Any]]] = []
        records: list[tuple[_Decision, list[Any], dict[str, Any]]] = []
        changes = self._drop_erased(ctx, changes)   # an erased party's changes: ledgered, never merged
        reads = {pid: (raw_s, raw_t) for pid, raw_s, raw_t in changes}
        #: party id -> the intent of a recovered create (see _guard_intents), completed when its merge commits
        recovered_intents: dict[str, int] = {}
        with self._tx(ctx) as tx:
            for pid, raw_s, raw_t in changes:
                d = _Decision(raw_s or raw_t, party_id=pid)  # type: ignore[arg-type]
                snap = tx.get_snapshot(pid, tgt.system, tgt.object)
                found: RawRecord | None = None
                if pid in ctx.recovered:   # a create a dead run may have applied: the target's record as it is now
                    found, recovered_intents[pid] = ctx.recovered.pop(pid)
                elif snap is None or snap.written_hash == TOMBSTONE:
                    # never synced, or deleted: a two-way job never resurrects a party
                    ctx.report.count("suppressed", _reads(raw_s, raw_t))
                    continue
                cur_t = raw_t or found
                # what was last synced; None: never recorded as synced (a recovered create)
                base: dict[str, Any] | None = None
                if snap is not None and snap.written_hash != TOMBSTONE:
                    base = _content(flatten(tx.unseal(self.rt.cipher, "snapshots", "blob",
                                                   row=_snap_row(pid, tgt.system, tgt.object), token=snap.blob)))
                try:
                    s_flat = self._read_side(src, raw_s, pid, base or {}) if raw_s else dict(base or {})
                    d.origin = "target" if found is None else "source"   # a recovery retries from the source
                    under = s_flat if base is None else base   # never synced: the target's view over the source's
                    t_flat = self._read_side(tgt, cur_t, pid, under) if cur_t else dict(under)
                    d.origin = "source"
                except RecordError as exc:
                    # dead-letter the record that failed, under the system it came from
                    d.raw = (raw_t if d.origin == "target" else raw_s) or d.raw
                    d.action, d.error, d.stage = Action.FAILED, exc, "map_in"
                    records.append((d, [], {}))
                    continue
                echo = (raw_t is not None and snap is not None and base is not None
                        and keyed_hash(_project(t_flat, t_paths), ctx.hash_key) == snap.written_hash)
                if echo and base is not None:
                    t_flat = dict(base)  # our own write coming back, whatever else the CRM's automation touched
                    d.reason = "echo of crmbridge's own write"
                under = s_flat if base is None else base
                s_view = {p: v for p, v in under.items() if not s_paths(p)} | {p: v for p, v in s_flat.items()
                                                                              if s_paths(p)}
                t_view = {p: v for p, v in under.items() if not t_paths(p)} | {p: v for p, v in t_flat.items()
                                                                              if t_paths(p)}
                modified = {"source_modified": raw_s.modified_at if raw_s else None,
                            "target_modified": cur_t.modified_at if cur_t else None}
                result = (three_way_merge(base, s_view, t_view, policy, **modified) if base is not None
                          else merge_unseen(s_view, t_view, policy, seen=t_paths, **modified))
                try:   # the merged state must itself be a valid party and map to both sides
                    merged_party = parse_party({**unflatten(result.merged), "party_id": pid})
                    payload = tgt.mapping.map_out(merged_party) if result.to_target else None
                    payload_s = src.mapping.map_out(merged_party) if result.to_source else None
                except RecordError as exc:
                    d.raw = raw_t or raw_s or d.raw
                    d.origin = "target" if raw_t is not None else "source"
                    d.action, d.error, d.stage = Action.FAILED, exc, "merge"
                    records.append((d, [], {}))
                    continue
                d.party, d.canonical, d.previous = merged_party, merged_party.canonical_dict(), base
                linked = tx.xrefs_for_party(pid, tgt.system, tgt.object)
                d.target_id = linked[0][2] if linked else (found.external_id if found is not None else None)
                if payload is not None:
                    d.payload_hash = keyed_hash(payload, ctx.hash_key)
                    d.item = WriteItem(key=pid, payload=payload, external_id=d.target_id,
                                       key_field=tgt.mapping.spec.key_field, duplicate_search=ctx.job.duplicate_search)
                    to_target.append((d, result.to_target))
                if payload_s is not None:
                    linked_s = tx.xrefs_for_party(pid, src.system, src.object)
                    s_snap = tx.get_snapshot(pid, src.system, _read_key(src.object, ctx.name))
                    item_s = WriteItem(key=pid, payload=payload_s, external_id=linked_s[0][2] if linked_s else None,
                                       expected_version=(raw_s.version if raw_s else None)
                                       or (s_snap.version if s_snap else None))
                    to_source.append((_Decision(d.raw, party_id=pid, party=merged_party, item=item_s,
                                                target_id=item_s.external_id), result.to_source))
                d.echo_hash = keyed_hash(_project(flatten(d.canonical), t_paths), ctx.hash_key)
                records.append((d, result.conflicts, {"to_target": result.to_target, "to_source": result.to_source}))
        if ctx.dry_run:
            for d, conflicts, moves in records:
                n = _reads(*reads[d.party_id or ""])
                ctx.report.count("dead_lettered" if d.action is Action.FAILED else "conflict" if conflicts
                                 else "updated" if any(moves.values()) else "echo" if d.reason else "unchanged", n)
                ctx.report.actions[Action.CONFLICT] += len(conflicts)
                for side, fields_ in moves.items():
                    if fields_:
                        ctx.report.actions[Action.UPDATED] += 1
                        ctx.report.plan.append(PlannedChange(Action.UPDATED, d.raw.external_id, d.party_id,
                                                             {p: ("", _masked(p, v, None) or "")
                                                              for p, v in fields_.items()}, reason=side))
            ctx.report.planned_write_calls += len([1 for x in (to_target, to_source) if x])
            return
        t_results = tgt.adapter.write(tgt.object, [d.item for d, _ in to_target if d.item]) if to_target else []
        s_results = src.adapter.write(src.object, [d.item for d, _ in to_source if d.item]) if to_source else []
        with self.rt.store.transaction() as tx:
            entries: list[LedgerEntryIn] = []
            outcome_t = {d.party_id: r for (d, _), r in zip(to_target, t_results, strict=True)}
            outcome_s = {d.party_id: (d, r, f) for (d, f), r in zip(to_source, s_results, strict=True)}
            for d, conflicts, moves in records:
                pid = d.party_id or ""
                n = _reads(*reads[pid])
                if d.action is Action.FAILED:
                    ctx.report.count("dead_lettered", n)
                    entries.extend(self._record(tx, ctx, d))
                    continue
                ok = True
                refused: list[tuple[_Decision, WriteResult]] = []
                if moves["to_target"]:
                    r = outcome_t[pid]
                    entries.append(self._outcome_entry(ctx, d, r, moves["to_target"], "to_target",
                                                       RECOVERED if pid in recovered_intents else None))
                    ok = ok and r.status in (WriteStatus.UPDATED, WriteStatus.CREATED, WriteStatus.UNCHANGED)
                    if r.status is WriteStatus.FAILED:
                        refused.append((d, r))
                if moves["to_source"]:
                    ds, r, f = outcome_s[pid]
                    entries.append(self._outcome_entry(ctx, ds, r, f, "to_source",
                                                       RECOVERED if pid in recovered_intents else None))
                    ok = ok and r.status in (WriteStatus.UPDATED, WriteStatus.CREATED, WriteStatus.UNCHANGED)
                    if r.status is WriteStatus.FAILED:
                        refused.append((ds, r))
                for dr, r in refused:
                    # a refused write is a dead letter of the record read (retried by later runs), never just a
                    # ledger line: the cursor has moved past it
                    letter = _Decision(reads[pid][0] or reads[pid][1] or dr.raw, party_id=pid, stage="target",
                                       origin="source" if reads[pid][0] is not None else "target",
                                       error=r.error or RecordError("the system refused the write", code="rejected"))
                    letter.raw_hash = keyed_hash(dict(letter.raw.data), ctx.hash_key)
                    self._dead_letter(tx, ctx, letter)
                ctx.report.count("dead_lettered" if refused else "conflict" if conflicts or not ok
                                 else "updated" if moves["to_target"] or moves["to_source"]
                                 else "echo" if d.reason else "unchanged", n)
                for c in conflicts:
                    ctx.report.actions[Action.CONFLICT] += 1
                    cid = tx.add_conflict(
                        ctx.name, pid, [c.path], run_id=ctx.run_id or None,
                        **{f"{k}_value": tx.seal(self.rt.cipher, "conflicts", f"{k}_value",
                                              row={"job": ctx.name, "party_id": pid}, value={c.path: v})
                           for k, v in (("base", c.base), ("source", c.source), ("target", c.target))})
                    entries.append(LedgerEntryIn(
                        action=Action.CONFLICT, run_id=str(ctx.run_id), job=ctx.name, source_system=src.system,
                        source_object=src.object, target_system=tgt.system, target_object=tgt.object,
                        target_id=d.target_id, party_id=pid, changed_fields=[c.path],
                        before={c.path: _masked(c.path, c.source, None)},
                        after={c.path: _masked(c.path, c.target, None)},
                        actor=ctx.actor, reason=f"conflict {cid}: {c.reason}, waiting for review"))
                if not moves["to_target"] and not moves["to_source"] and not conflicts:
                    quiet = Action.SKIPPED_ECHO if d.reason else Action.SKIPPED_UNCHANGED
                    ctx.report.actions[quiet] += 1
                    entries.append(self._entry(ctx, _Decision(d.raw, action=quiet, party_id=pid, target_id=d.target_id),
                                               reason=d.reason or "no change to carry"))
                if ok and pid in recovered_intents:   # the recovered create is now linked and recorded as synced
                    if d.target_id:
                        tx.put_xref(tgt.system, tgt.object, d.target_id, pid)
                    tx.complete_write_intent(recovered_intents[pid], external_id=d.target_id)
                if ok:
                    self._remember_reads(tx, ctx, pid, *reads[pid])
                    if reads[pid][0] is not None:
                        self._resolve_letters(tx, ctx, reads[pid][0])
                if ok and d.canonical is not None and d.party is not None:
                    blob = tx.seal(self.rt.cipher, "snapshots", "blob",
                                row=_snap_row(pid, tgt.system, tgt.object), value=d.canonical)
                    tx.put_snapshot(pid, tgt.system, tgt.object, content_hash=d.party.content_hash(ctx.hash_key),
                                    blob=blob, written_hash=d.echo_hash)
            tx.ledger(self.rt.signer, cipher=self.rt.cipher).append(entries)
            ctx.batches += 1
            self._note_progress(tx, ctx)
        self._heartbeat(ctx)

    def _remember_reads(self, tx: StoreTx, ctx: _Ctx, pid: str, raw_s: RawRecord | None,
                        raw_t: RawRecord | None) -> None:
        """Keyed hashes of the records just merged, so overlap re-reads of them are recognised."""
        if raw_s is not None:
            tx.put_snapshot(pid, ctx.source.system, _read_key(ctx.source.object, ctx.name), blob=b"",
                            version=raw_s.version,
                            content_hash=keyed_hash(dict(raw_s.data), ctx.hash_key))
        if raw_t is not None:
            tx.put_snapshot(pid, ctx.target.system, _read_key(ctx.target.object, ctx.name), blob=b"",
                            version=raw_t.version,
                            content_hash=keyed_hash(dict(raw_t.data), ctx.hash_key))

    def _outcome_entry(self, ctx: _Ctx, d: _Decision, r: WriteResult, moved: dict[str, Any],
                       direction: Literal["to_target", "to_source"], note: str | None = None) -> LedgerEntryIn:
        base = d.previous or {}
        changed = {p: (base.get(p), v) for p, v in moved.items()}
        if r.status in (WriteStatus.UPDATED, WriteStatus.CREATED, WriteStatus.UNCHANGED):
            d.action, reason = Action.UPDATED, note
        elif r.status is WriteStatus.CONFLICT:
            d.action, reason = Action.CONFLICT, "stale version: the record changed since it was read"
        else:
            d.action, reason = Action.FAILED, f"{r.error.code if r.error else 'rejected'}: {r.error}"
        ctx.report.actions[d.action] += 1
        return self._entry(ctx, d, reason=reason, changed=changed, direction=direction)


#: the name an erased party's CRM record keeps where the CRM requires one (masked by the mapping like any name)
ERASED_NAME = "已删除"


def _anonymised_payload(side: _Side, party_id: str, party_type: str | None) -> dict[str, Any]:
    """What an erased party's CRM record is overwritten with when it is deactivated rather than deleted: the key,
    lifecycle CLOSED, the placeholder name, and an empty value for every other field the mapping writes."""
    ptype = side.mapping.fixed_party_type or party_type or "INDIVIDUAL"
    party = parse_party({"party_id": party_id, "party_type": ptype, "lifecycle_stage": "CLOSED",
                         "name": {"legal_zh": ERASED_NAME}})
    payload = side.mapping.map_out(party)
    for name in side.mapping.vendor_fields("out"):
        payload.setdefault(name, None)
    return payload


def _reads(*raws: RawRecord | None) -> int:
    """How many records were read for a merge (its source and/or target record)."""
    return sum(r is not None for r in raws)


def _reading(side: _Side, pages: Iterator[Page], report: RunReport | None = None) -> Iterator[Page]:
    """A side's pages; a change list that cannot be read after every retry means the system is down.

    With ``report``, the side's clock is measured as the pages arrive: a record stamped after the instant it was
    read was stamped by a clock running ahead of this host's by at least that much (the run reports it; nothing
    is compensated)."""
    while True:
        try:
            page = next(pages)
        except StopIteration:
            return
        except RetryableError as exc:
            raise SystemUnavailableError(f"reading {side.object} changes failed after every retry: {exc}",
                                         system=side.system) from exc
        if report is not None:
            now = datetime.now(UTC)
            stamps = [r.modified_at for r in page.records if r.modified_at is not None]
            if stamps:
                report.note_clock_ahead(side.system, (max(stamps) - now).total_seconds())
        yield page


def _dead_local_holder(holder: str) -> bool:
    """Whether a lease holder (``host:pid:nonce``) is a process of this host that no longer exists."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return holder not in _ACTIVE_HOLDERS   # a runner of this process that ended without releasing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:   # exists, owned by someone else
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed child not yet reaped by its parent still has a pid; it runs nothing."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _path_filter(paths: list[str]) -> Callable[[str], bool]:
    """Whether a flat canonical path is one of (or under) the mapping's canonical paths."""
    plain = tuple(sorted(set(paths)))

    def covered(path: str) -> bool:
        return any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in plain)

    return covered


def _read_key(obj: str, job: str) -> str:
    """Snapshot key under which a job keeps the keyed hash of the records it last read from ``obj`` (each job its
    own: two jobs reading the same source must each handle a record once; the object's own key holds the synced
    canonical state of a target)."""
    return f"{obj}@read:{job}"


def _content(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat record without its bookkeeping (source references)."""
    return {k: v for k, v in flat.items() if not k.startswith("source_refs")}


def _project(flat: dict[str, Any], covered: Callable[[str], bool]) -> dict[str, Any]:
    return {p: v for p, v in flat.items() if covered(p) and v is not None}


def _masked(path: str, value: Any, party_type: str | None) -> str | None:
    """A value as the ledger and plans may show it: masked by its path's class, failing closed (a list of street
    lines or aliases, an unknown path: masked leaf by leaf)."""
    if value is None:
        return None
    if not isinstance(value, dict | list | tuple):
        try:
            kind = mask_kind_for(path, party_type)
        except Exception:  # noqa: BLE001 - an unknown path is masked rather than shown
            kind = "generic"
        if kind:
            return mask(kind, value)
    return mask_canonical(path, value, party_type)


def _match_value(party: Party, key: str) -> str | None:
    if key.isupper():
        ident = party.primary_identifier(key)
        return ident.value if ident is not None else None
    if key in ("mobile", "landline", "email", "wechat_openid"):
        cp = party.contact(key.upper())
        return cp.value if cp is not None else None
    if key == "name":
        name = getattr(party, "name", None)
        return getattr(name, "legal_zh", None) or getattr(name, "en", None)
    if key == "date_of_birth":
        dob = getattr(party, "date_of_birth", None)
        return dob.isoformat() if dob else None
    return None


def run_job(rt: Runtime, job_name: str, *, dry_run: bool = False, actor: str = "user",
            progress: Callable[[int], None] | None = None) -> RunReport:
    """Run one job once; see :class:`JobRunner`."""
    return JobRunner(rt, job_name, actor=actor, progress=progress).run(dry_run=dry_run)
