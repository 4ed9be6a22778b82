"""The job runner: one run of one job, with no loss and no duplicates.

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

Dry runs take the same decisions, call no write API and roll back every state change, cursor included: their
units of work are read-only (``StateStore.transaction(read_only=True)``), so none can commit.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from crmbridge.adapters.base import Adapter, RawRecord
from crmbridge.config import MAX_BATCH_SIZE, JobConfig
from crmbridge.core.errors import ConfigurationError, CrmBridgeError, RetryableError, SystemUnavailableError
from crmbridge.core.logsafe import bind_log_context, reset_log_context
from crmbridge.sync.bootstrap import Runtime
from crmbridge.sync.engine.context import BatchKind, BatchResult, CursorState, RunContext, Side, StopRequested
from crmbridge.sync.engine.derive import Derive
from crmbridge.sync.engine.erasure import Erasure
from crmbridge.sync.engine.lease import LEASE_TTL_SECONDS, Lease
from crmbridge.sync.engine.objects import ObjectSync
from crmbridge.sync.engine.responses import Responses, is_response_job
from crmbridge.sync.engine.twoway import TwoWay
from crmbridge.sync.engine.versions import Versions
from crmbridge.sync.report import RunReport
from crmbridge.sync.state.ledger_trust import publish_configured
from crmbridge.sync.state.store import RunStatus

__all__ = ["CLOCK_AHEAD_WARN_SECONDS", "SUSPICIOUS_DROP_FROM", "JobRunner", "effective_batch_size",
           "process_batch", "run_job"]

log = logging.getLogger("crmbridge.sync")

#: a full-scan run reading nothing after a run that read at least this many is flagged, not a success
SUSPICIOUS_DROP_FROM = 100
#: a system whose records are stamped more than this far ahead of this host's clock is reported (run warning)
CLOCK_AHEAD_WARN_SECONDS = 30.0


def effective_batch_size(job: JobConfig, target: Adapter) -> int:
    """The job's ``batch_size`` when configured; unset, enough records to fill the target's concurrent write calls
    (vendor batch maximum × the adapter's concurrency, at least the default 100, at most the configurable
    maximum): a batch's writes go out alone, so a batch of 100 records leaves Zoho's 100-record upserts partly
    filled and its edition's concurrency unused."""
    if "batch_size" in job.model_fields_set:
        return job.batch_size
    fill = target.max_batch_size * target.concurrency
    return min(MAX_BATCH_SIZE, max(job.batch_size, fill))



class JobRunner(Responses, Derive, ObjectSync, Versions, TwoWay, Erasure):
    """Runs one configured job once (see the module docstring).

    Args:
        rt: the runtime built by :func:`crmbridge.sync.bootstrap.bootstrap`.
        job_name: a job of the configuration.
        actor: who runs it, recorded in the ledger (``scheduler``, ``user:alice``, ``worker:3``).
        progress: called with the number of records handled after each batch (a progress bar).
        should_stop: asked after each committed batch; ``True`` ends the run there with status ``stopped``
            (the cursor covers exactly the committed batches), e.g. on SIGTERM in the scheduler.
        lease_ttl: seconds the job's lease lives without a heartbeat (a crashed holder's lease expires).
        holder: run (or heart-beat) the job's lease as this holder (default: a new holder of this process).
    """

    #: whether a run refused by the job's lease leaves a ``refused`` run row (the scheduler's skipped fires do not)
    record_refusal: bool = True

    def __init__(self, rt: Runtime, job_name: str, *, actor: str = "user",
                 progress: Callable[[int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, lease_ttl: float = LEASE_TTL_SECONDS,
                 holder: str | None = None) -> None:
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
        self.lease = Lease(rt.store, job_name, holder=holder, ttl=lease_ttl)

    def context(self, run_id: int, report: RunReport, *, dry_run: bool = False,
                track_progress: bool = True) -> RunContext:
        """The context of run ``run_id`` of this job (its sides, its report); ``track_progress=False``: the run's
        row is kept by someone else (a distributed worker's dispatcher)."""
        rt, job = self.rt, self.job
        src = Side(job.source_system, job.source_object, rt.adapter(job.source_system),
                   rt.mapping(job.source_mapping))
        tgt = Side(job.target_system, job.target_object, rt.adapter(job.target_system),
                   rt.mapping(job.target_mapping))
        ctx = RunContext(run_id, self.name, job, src, tgt, rt.indexer().field_key("content-hash"), report, dry_run,
                         self.actor, track_progress=track_progress)
        with rt.store.transaction(read_only=True) as tx:   # a re-derivation under way (a worker's batch too)
            self.note_rederivation(tx, ctx)
        return ctx

    # ================================================================================== the run
    def run(self, *, dry_run: bool = False, full_refresh: bool = False, resync: bool = False,
            only_field: str | None = None) -> RunReport:
        """Run the job. Record-level problems are dead letters, not exceptions; a fatal problem ends the run with
        status ``failed`` and the cursor where the last committed batch left it.

        A mapping changed since the job's last completed run is applied to every record (see
        :mod:`crmbridge.sync.engine.versions`); ``full_refresh``: read the source from the start; ``resync``:
        re-push the target from stored state without reading the source (only ``only_field`` when given)."""
        if only_field is not None and not resync:
            raise ConfigurationError("only_field applies to a resync")
        if resync and full_refresh:
            raise ConfigurationError("a resync re-pushes stored state; a full refresh re-reads the source: "
                                     "choose one")
        rt, job = self.rt, self.job
        started = time.monotonic()
        for ref in (job.source_mapping, job.target_mapping):   # a configuration error fails before the lease
            rt.mapping(ref)
        rt.adapter(job.source_system)
        self.check_object_job()   # holdings, cases...: crmbridge.sync.engine.objects
        size = effective_batch_size(job, rt.adapter(job.target_system))
        if size != job.batch_size:
            job = self.job = job.model_copy(update={"batch_size": size})
        if not dry_run and not self.lease.acquire():  # refused: recorded as a run of its own (`runs list`)
            raise self.lease.refusal(actor=self.actor, record=self.record_refusal)
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
            ctx = self.context(run_id, report, dry_run=dry_run)
            src, tgt = ctx.source, ctx.target
            calls_before = {s.system: s.adapter.stats.api_calls for s in (src, tgt)}
            stats_before = [(s.adapter.stats.retries, s.adapter.stats.throttled) for s in (src, tgt)]
            full_scan = False
            try:
                responses = is_response_job(ctx)   # campaign responses → core consents (responses.py)
                if not responses:   # (a response job's target is the core: nothing is erased there)
                    self.propagate_erasures(ctx)   # erasures pending at this job's target first (PIPL Art. 47)
                if resync and responses:
                    raise ConfigurationError(f"job {self.name} carries campaign responses: there is no stored state "
                                             "to re-push (run it without --resync)")
                if resync:
                    self._run_resync(ctx, only_field)
                else:
                    self.prepare_versions(ctx, full_refresh=full_refresh)
                    full_scan = (self._run_responses(ctx) if responses else self._run_two_way(ctx)
                                 if job.direction == "two_way" else self._run_one_way(ctx))
                    if job.direction == "two_way" and job.target_mapping in ctx.previous_mappings:
                        # merges compare canonical states: what the new target mapping changes is pushed apart
                        self._run_resync(ctx, changed_since=ctx.previous_mappings[job.target_mapping])
                report.status = "succeeded"
                self._warn_clock_ahead(report)
                self.flag_suspicious(report, previous, full_scan)
                report.conclude(job.max_failed_ratio)
                if not resync:
                    self.complete_versions(ctx)   # a completed run: its mapping versions are the job's
                if report.status == "failed" and tgt.adapter.stats.consecutive_failed_calls and any(
                        k.endswith(": unreachable") for k, _ in report.refusals.most_common(1)):
                    report.unreachable = tgt.system   # refused mostly because the target did not answer
            except StopRequested:
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
                self.finish(ctx)
            except CrmBridgeError as exc:   # e.g. the state database went away: the run stays unfinished
                report.status = "failed"
                report.error = "; ".join(x for x in (report.error, f"recording the run's end failed: {exc}") if x)
                log.error("run %s of job %s: %s", run_id, self.name, report.error)
            return report
        finally:
            reset_log_context(log_token)
            if not dry_run:
                self.lease.release(quiet=True)

    @staticmethod
    def _unreachable(exc: BaseException, *sides: Side) -> str | None:
        """The system a run stopped on because it did not answer (exit code 4), if that is why it stopped."""
        if isinstance(exc, SystemUnavailableError):
            return exc.system
        if isinstance(exc, RetryableError):
            return next((s.system for s in sides if s.adapter.name == exc.vendor), exc.vendor or "unknown")
        return None

    @staticmethod
    def _warn_clock_ahead(report: RunReport) -> None:
        """A run warning per system whose records were stamped ahead of this host's clock (see stream.reading)."""
        for system, ahead in sorted(report.clock_ahead_seconds.items()):
            if ahead > CLOCK_AHEAD_WARN_SECONDS:
                report.warnings.append(
                    f"clock skew: {system} stamps records at least {ahead:.0f} s ahead of this host's clock (or "
                    "its configured time zone is wrong); consent is judged by the consent records themselves, but "
                    "check both clocks (NTP): change windows, last-writer-wins conflicts and audit times compare "
                    "these stamps")

    def flag_suspicious(self, report: RunReport, previous: list[dict[str, Any]], full_scan: bool) -> None:
        """A full scan reading nothing after runs that read plenty is ``suspicious`` (a warning otherwise)."""
        last_ok = next((r for r in previous if r["status"] in (RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value)
                        and not r["dry_run"]), None)
        last_read = int(((last_ok or {}).get("counts") or {}).get("read", 0))
        if report.read == 0 and last_read >= SUSPICIOUS_DROP_FROM:
            message = (f"read 0 records where the previous run read {last_read}: check the source connection "
                       "and its filters before trusting this run")
            if full_scan:
                report.status = "suspicious"
            report.warnings.append(message)

    def finish(self, ctx: RunContext) -> None:
        """Record the run's end (status, counts, summary) and, for a real run, a ledger checkpoint."""
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
                              for p in publish_configured(self.rt.config, self.rt.store))



def process_batch(runner: JobRunner, ctx: RunContext, raws: list[RawRecord], kind: BatchKind = BatchKind.EXTRACT,
                  *, cursor: CursorState | None = None) -> BatchResult:
    """Decide, write and record one batch of a one-way run: what a local run does with each batch of
    :meth:`JobRunner.one_way_batches`, and what a distributed worker does with the batch it claimed.

    Args:
        runner: the job's runner (its lease is heart-beaten after the batch commits).
        ctx: the run's context (:meth:`JobRunner.context`); its report accumulates the counts.
        raws: the batch's source records.
        kind: where they come from: ``retry`` (dead letters fetched again), ``extract`` (changes since the
            cursor), ``delete`` (deletions and closures).
        cursor: an ``extract`` batch moves it over what it committed (:meth:`JobRunner.cursor`).
    """
    before = Counter(ctx.report.outcomes)
    read = ctx.report.read
    runner.process_batch(ctx, raws, kind, cursor=cursor)
    return BatchResult(read=ctx.report.read - read, outcomes=Counter(ctx.report.outcomes) - before)


def run_job(rt: Runtime, job_name: str, *, dry_run: bool = False, actor: str = "user",
            progress: Callable[[int], None] | None = None, full_refresh: bool = False, resync: bool = False,
            only_field: str | None = None) -> RunReport:
    """Run one job once; see :class:`JobRunner` and :meth:`JobRunner.run`."""
    return JobRunner(rt, job_name, actor=actor, progress=progress).run(
        dry_run=dry_run, full_refresh=full_refresh, resync=resync, only_field=only_field)
