"""Distributed runs: a one-way job's batches executed as Celery tasks by any number of ``crmbridge worker``\\ s.

::

    crmbridge dispatch JOB (the dispatcher)                        crmbridge worker (×N, Celery)
    ─────────────────────────────────────────                      ───────────────────────────────────────────
    job lease, run row, cursor                                     task process_batch(batch_id)  ← ids only
    due dead letters, source pages, deletions ─► dist_batches ──►  claim the batch row (pending / stale)
        (records ENCRYPTED in the state DB)      + one task each   lock its parties (PostgreSQL advisory locks)
    poll: cursor → end of the contiguous run of done batches       the engine's per-batch step (decide, write,
          re-send batches whose worker died                        record: ledger + xref + snapshots)
    finish: run counts, ledger checkpoint, payloads erased         batch done (counts) — the cursor is not its job

Guarantees, and where they come from:

* **Nothing personal on the broker.** A task carries a batch id; the batch's raw records wait in
  ``dist_batches.payload``, sealed with the field cipher (bound to run and sequence number) and erased when the
  run ends.
* **Cursor never ahead of committed work.** Workers never move the cursor. The dispatcher moves it over the
  source batches in extraction order, and only across a contiguous prefix of done batches: a batch lost with a
  killed worker holds the cursor behind it until it is done.
* **A killed worker loses nothing.** Tasks are acknowledged late, so the broker delivers a killed worker's task
  again; the batch row, claimed by a worker that stopped heart-beating for ``batch_timeout_seconds``, is taken
  over (the dispatcher also sends it again). Re-running a batch is safe: the engine's per-batch step is
  idempotent (new parties' ids are committed before any write, writes are keyed by party id, re-read records
  whose content is unchanged are skipped).
* **One party, one worker at a time.** Before a batch is processed its worker takes a session-level PostgreSQL
  advisory lock on every key that can lead to a party: the source record's key, the blind index of each match
  rule value, and the party ids already linked to them; keys are taken in sorted order (no deadlock between
  workers) and held through decide, write and record. Partitioning batches by party hash cannot do this: a new
  record's party is not known until it is identified, and two records of one person can arrive in different
  pages. Transaction-scoped locks (``pg_advisory_xact_lock``) would not cover the write between the decide and
  the record transactions.
* **One ledger.** The ledger serialises appends on its head row: entries from all workers form one chain.
* **Fencing.** A worker heart-beats the dispatcher's job lease as its holder; if the lease was lost (the
  dispatcher died and another took the job over), the batch fails instead of writing beside the new holder.
  Batches of a run that is no longer running are not claimed.

Record-level failures are dead letters exactly as in a single process. A batch that fails as a whole (the
target still failing after the adapter's retries, the lease lost) fails the run, with the cursor before it, as
a single-process run would. Distributed mode runs one-way jobs, with the state on PostgreSQL.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError

from crmbridge.adapters.base import RawRecord
from crmbridge.config import CrmBridgeConfig, DistributedConfig
from crmbridge.core.errors import ConfigurationError, CrmBridgeError, FatalSyncError, RecordError
from crmbridge.core.logsafe import mask_text
from crmbridge.sync.engine import (
    BatchKind,
    JobRunner,
    RunContext,
    identity_keys,
    watermark_of,
)
from crmbridge.sync.engine import (
    process_batch as engine_process_batch,
)
from crmbridge.sync.state.engine_tables import dist_batches
from crmbridge.sync.state.locks import LocksBusy, advisory_locks

if TYPE_CHECKING:
    from celery import Celery

    from crmbridge.sync.bootstrap import Runtime
    from crmbridge.sync.engine import CursorState
    from crmbridge.sync.report import RunReport

__all__ = [
    "TASK_NAME",
    "BatchKind",
    "BatchStatus",
    "batch_counts",
    "check_schema",
    "close_celery_app",
    "dispatch",
    "dist_batches",
    "distributed_settings",
    "make_celery_app",
    "process_batch",
    "worker_argv",
]

log = logging.getLogger("crmbridge.distributed")

#: the Celery task every worker runs (argument: a batch id)
TASK_NAME = "crmbridge.process_batch"
#: what the dispatcher's runs and ledger entries say ran them
DISPATCH_ACTOR = "dispatcher"


class BatchStatus(enum.StrEnum):
    PENDING = "pending"      # staged and sent, or released by a worker that could not lock its parties
    RUNNING = "running"      # claimed by a worker that heart-beats it
    DONE = "done"
    FAILED = "failed"


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def distributed_settings(config: CrmBridgeConfig) -> DistributedConfig:
    if config.distributed is None:
        raise ConfigurationError(f"{config.where(('distributed',))}: distributed mode needs a 'distributed:' block "
                                 "(broker_url, queue...) in the configuration")
    if not config.state.url.startswith("postgresql"):
        raise ConfigurationError(f"{config.where(('state', 'url'))}: state.url: distributed mode needs PostgreSQL as "
                                 "the state database (workers of several hosts share it and lock parties in it)")
    return config.distributed


def _masked_error(exc: BaseException) -> str:
    return mask_text(f"{type(exc).__name__}: {exc}")[:2000]


# ============================================================================================ payload
# Raw vendor records go through JSON; values JSON has no type for are tagged so they come back as they were.
def _enc(v: Any) -> Any:
    if isinstance(v, _dt.datetime):
        return {"$t": "datetime", "v": v.isoformat()}
    if isinstance(v, _dt.date):
        return {"$t": "date", "v": v.isoformat()}
    if isinstance(v, decimal.Decimal):
        return {"$t": "decimal", "v": str(v)}
    if isinstance(v, bytes):
        return {"$t": "bytes", "v": v.hex()}
    if isinstance(v, Mapping):
        if "$t" in v:
            return {"$t": "map", "v": {str(k): _enc(x) for k, x in v.items()}}
        return {str(k): _enc(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    return v


def _dec(v: Any) -> Any:
    if isinstance(v, dict):
        tag = v.get("$t")
        if tag == "datetime":
            return _dt.datetime.fromisoformat(v["v"])
        if tag == "date":
            return _dt.date.fromisoformat(v["v"])
        if tag == "decimal":
            return decimal.Decimal(v["v"])
        if tag == "bytes":
            return bytes.fromhex(v["v"])
        if tag == "map":
            return {k: _dec(x) for k, x in v["v"].items()}
        return {k: _dec(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v


def _pack(raws: Sequence[RawRecord]) -> list[dict[str, Any]]:
    return [{"object": r.object, "external_id": r.external_id, "data": _enc(dict(r.data)),
             "modified_at": r.modified_at.isoformat() if r.modified_at else None, "version": r.version,
             "deleted": r.deleted} for r in raws]


def _unpack(items: Sequence[Mapping[str, Any]]) -> list[RawRecord]:
    return [RawRecord(object=i["object"], external_id=i["external_id"], data=_dec(i["data"]),
                      modified_at=_dt.datetime.fromisoformat(i["modified_at"]) if i["modified_at"] else None,
                      version=i["version"], deleted=bool(i["deleted"])) for i in items]


# ============================================================================================ Celery
def make_celery_app(config: CrmBridgeConfig, *, queue: str | None = None) -> Celery:
    """The Celery application of distributed mode, with :data:`TASK_NAME` registered.

    Late acknowledgement and a prefetch of one (by default): a task is taken off the queue only once it ran,
    so a killed worker's task is delivered again, and no worker hoards batches another could run.

    Args:
        config: the configuration (its ``distributed`` block; the broker URL's secret reference is resolved here).
        queue: use this queue instead of ``distributed.queue``.
    """
    from crmbridge.core.extras import require_extra

    require_extra("distributed", purpose="distributed mode (Celery)")
    from celery import Celery

    settings = distributed_settings(config)
    backend = settings.result_backend
    if backend is not None and backend.startswith(("env:", "file:")):
        from crmbridge.core.secrets import resolve_secret

        backend = resolve_secret(backend, where="distributed.result_backend",
                                 base_dir=config.base_dir).get_secret_value()
    queue = queue or settings.queue
    app = Celery("crmbridge", broker=settings.resolved_broker_url(config.base_dir), backend=backend,
                 set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        task_routes={TASK_NAME: {"queue": queue}},
        task_acks_late=settings.acks_late,
        task_reject_on_worker_lost=settings.acks_late,
        worker_prefetch_multiplier=settings.prefetch_multiplier,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_ignore_result=backend is None,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
        worker_hijack_root_logger=False,
    )
    app.conf.crmbridge_config = str(config.source_file.resolve()) if config.source_file else None
    app.conf.crmbridge_queue = queue

    @app.task(name=TASK_NAME, bind=True, acks_late=settings.acks_late, ignore_result=True)
    def _process_batch_task(task: Any, batch_id: int) -> str:
        return process_batch(_worker_runtime(app.conf.crmbridge_config), int(batch_id),
                             worker=_worker_id(getattr(task.request, "hostname", None)))

    return app


def _worker_id(node: str | None) -> str:
    """``node/pid`` (``/thread`` in a thread pool): one id per process that can claim a batch."""
    wid = f"{node or socket.gethostname()}/{os.getpid()}"
    if threading.current_thread() is not threading.main_thread():
        wid += f"/{threading.get_ident()}"
    return wid


def close_celery_app(app: Celery, *, connections: bool = False) -> None:
    """Close the app; with ``connections``, also every pooled broker connection of the process (kombu keeps them
    in process-wide pools shared by all apps of one broker URL: only when no other app is still in use)."""
    app.close()
    if connections:
        from kombu import pools

        pools.reset()


_RUNTIMES: dict[tuple[int, str], Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def _worker_runtime(config_path: str | None) -> Runtime:
    """One runtime per worker process (built after a prefork pool forked: engines are not shared across fork)."""
    from crmbridge.sync.bootstrap import bootstrap

    key = (os.getpid(), config_path or "")
    with _RUNTIMES_LOCK:
        if key not in _RUNTIMES:
            _RUNTIMES[key] = bootstrap(config_path, migrate=False)
        return _RUNTIMES[key]


def check_schema(config: CrmBridgeConfig) -> None:
    """Workers never migrate (several starting at once would race): the schema must be current already."""
    from crmbridge.sync.state.migrate import current, heads

    have, want = sorted(current(config.state.url)), sorted(heads())
    if have != want:
        raise ConfigurationError(f"the state database is at revision {', '.join(have) or '(empty)'}, not "
                                 f"{', '.join(want)}: run 'crmbridge db upgrade' before starting workers")


# ============================================================================================ worker
@dataclass
class _Claim:
    run_id: int
    job: str
    seq: int
    kind: str
    lease_holder: str
    payload: bytes


def process_batch(rt: Runtime, batch_id: int, *, worker: str) -> str:
    """Run one staged batch through the engine's per-batch step (what a worker's task does).

    Returns what happened: ``done``, ``failed``, or why the batch was left alone (``not-found``, ``done already``,
    ``busy`` (another live worker has it), ``run finished``, ``released`` (its parties stayed locked)).
    """
    settings = distributed_settings(rt.config)
    claim, why = _claim(rt, batch_id, worker, settings)
    if claim is None:
        log.info("batch %s: %s", batch_id, why)
        return why
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat_batch, args=(rt, batch_id, worker, settings, stop),
                            name=f"crmbridge-batch-{batch_id}-heartbeat", daemon=True)
    beat.start()
    try:
        counts = _run_claimed(rt, batch_id, claim, worker, settings)
    except _LocksBusy as exc:
        _finish_batch(rt, batch_id, worker, BatchStatus.PENDING, error=str(exc))
        return "released"
    except Exception as exc:  # noqa: BLE001 - whatever it is, the batch fails once rather than loop on workers
        log.error("batch %s of run %s failed: %s", batch_id, claim.run_id, _masked_error(exc))
        _finish_batch(rt, batch_id, worker, BatchStatus.FAILED, error=_masked_error(exc))
        return "failed"
    finally:
        stop.set()
        beat.join(timeout=5)
    _finish_batch(rt, batch_id, worker, BatchStatus.DONE, counts=counts)
    return "done"


def _claim(rt: Runtime, batch_id: int, worker: str, settings: DistributedConfig) -> tuple[_Claim | None, str]:
    """Take the batch: pending, or running under a worker that stopped heart-beating. One statement: of two
    workers racing for it, one wins."""
    stale = _now() - _dt.timedelta(seconds=settings.batch_timeout_seconds)
    with rt.store.transaction() as tx:
        row = tx.claim_dist_batch(batch_id, worker, pending=BatchStatus.PENDING.value,
                                  running=BatchStatus.RUNNING.value, stale_before=stale)
        if row is not None:
            return _Claim(**row), "claimed"
        state = tx.dist_batch_status(batch_id)
    if state is None:
        return None, "not-found"
    if state in (BatchStatus.DONE.value, BatchStatus.FAILED.value):
        return None, f"{state} already"
    if state == BatchStatus.RUNNING.value:
        return None, "busy"
    return None, "run finished"


def _heartbeat_batch(rt: Runtime, batch_id: int, worker: str, settings: DistributedConfig,
                     stop: threading.Event) -> None:
    every = max(0.2, settings.batch_timeout_seconds / 3)
    while not stop.wait(every):
        try:
            with rt.store.transaction() as tx:
                tx.update_claimed_dist_batch(batch_id, worker, running=BatchStatus.RUNNING.value,
                                             heartbeat_at=_now())
        except DBAPIError as exc:  # the batch goes on; a missed beat only risks a harmless takeover
            log.warning("batch %s: heartbeat failed: %s", batch_id, _masked_error(exc))


def _finish_batch(rt: Runtime, batch_id: int, worker: str, status: BatchStatus, *,
                  counts: dict[str, Any] | None = None, error: str | None = None) -> None:
    values: dict[str, Any] = {"status": status.value, "updated_at": _now(), "error": error}
    if counts is not None:
        values["counts"] = counts
    if status is BatchStatus.PENDING:
        values["heartbeat_at"] = _now()
    with rt.store.transaction() as tx:
        tx.update_claimed_dist_batch(batch_id, worker, running=BatchStatus.RUNNING.value, **values)


#: the batch's parties stayed locked by another worker longer than ``lock_timeout_seconds``
_LocksBusy = LocksBusy


def _run_claimed(rt: Runtime, batch_id: int, claim: _Claim, worker: str,
                 settings: DistributedConfig) -> dict[str, Any]:
    from crmbridge.sync.report import RunReport

    # heart-beat the dispatcher's lease: keeps it alive while batches run, and fails the batch if it was lost
    runner = JobRunner(rt, claim.job, actor=f"worker:{worker}", holder=claim.lease_holder)
    ctx = runner.context(claim.run_id, RunReport(run_id=str(claim.run_id), job=claim.job, dry_run=False),
                         track_progress=False)
    with rt.store.transaction() as tx:
        items = tx.unseal(rt.cipher, "dist_batches", "payload",
                          row={"run_id": claim.run_id, "seq": claim.seq}, token=claim.payload)
    raws = _unpack(items)
    kind = BatchKind(claim.kind)
    before = {s.system: (s.adapter.stats.api_calls, s.adapter.stats.retries, s.adapter.stats.throttled)
              for s in (ctx.source, ctx.target)}
    with _party_locks(rt, _lock_keys(rt, ctx, raws), settings.lock_timeout_seconds):
        with rt.store.transaction() as tx:
            runner.load_intents(tx, ctx)   # under the locks: other workers' intents for these parties are settled
            # the boundary dedupe as the single-process run does it, on a copy that never moves (the dispatcher
            # moves the cursor)
            cursor = runner.cursor(tx, ctx, ctx.source, moves=False) if kind is BatchKind.EXTRACT else None
        engine_process_batch(runner, ctx, raws, kind, cursor=cursor)
    r = ctx.report
    stats = {s.system: s.adapter.stats for s in (ctx.source, ctx.target)}
    return {
        "read": r.read,
        "actions": {str(k): v for k, v in r.actions.items() if v},
        "outcomes": dict(r.outcomes), "refusals": dict(r.refusals),
        "api_calls": {k: st.api_calls - before[k][0] for k, st in stats.items()},
        "retries": sum(st.retries - before[k][1] for k, st in stats.items()),
        "throttled": sum(st.throttled - before[k][2] for k, st in stats.items()),
        "worker": worker,
    }


def _lock_keys(rt: Runtime, ctx: RunContext, raws: Sequence[RawRecord]) -> set[str]:
    """Every key through which a record of the batch can reach a party (see the module docstring)."""
    src = ctx.source
    keys: set[str] = set()
    indexer = rt.indexer()
    with rt.store.transaction() as tx:
        for raw in raws:
            keys.add(f"src|{src.system}|{src.object}|{raw.external_id}")
            pid = tx.get_xref(src.system, src.object, raw.external_id)
            if pid is not None:
                keys.add(f"party|{pid}")
            if raw.deleted:
                continue
            try:
                party = src.mapping.to_party(raw.data)
            except (RecordError, ValueError, TypeError):
                continue  # the record fails in the batch itself: its source key is enough
            for name, bidx in identity_keys(indexer, ctx.job.match_rules, party):
                keys.add(f"id|{name}|{bidx}")
                keys.update(f"party|{p}" for p in tx.lookup_identity(name, bidx))
    return keys


def _party_locks(rt: Runtime, keys: set[str], timeout_seconds: float) -> AbstractContextManager[None]:
    """Session-level advisory locks on the batch's party keys, held for the block (see the module docstring)."""
    return advisory_locks(rt.store, keys, timeout_seconds, busy=f"parties of the batch stayed locked by another "
                                                                f"worker for over {timeout_seconds:g} s")


# ============================================================================================ dispatcher
@dataclass
class _Dispatch:
    rt: Runtime
    runner: JobRunner
    ctx: RunContext
    app: Celery
    settings: DistributedConfig
    cursor: CursorState
    seq: int = 0
    advanced: int = 0                   # extract batches (in order) the cursor has moved over
    extract_ids: list[int] = field(default_factory=list)
    last_progress: float = field(default_factory=time.monotonic)
    last_state: tuple[Any, ...] = ()

    # -- staging -------------------------------------------------------------------------------
    def stage(self, raws: Sequence[RawRecord], kind: BatchKind) -> None:
        if not raws:
            return
        self.seq += 1
        top, at_top = watermark_of(raws, self.ctx.hash_key)
        with self.rt.store.transaction() as tx:
            payload = tx.seal(self.rt.cipher, "dist_batches", "payload",
                              row={"run_id": self.ctx.run_id, "seq": self.seq}, value=_pack(raws))
            batch_id = tx.add_dist_batch(
                run_id=self.ctx.run_id, job=self.ctx.name, seq=self.seq, kind=kind.value,
                status=BatchStatus.PENDING.value, lease_holder=self.runner.holder, record_count=len(raws),
                payload=payload, watermark=top.isoformat() if top else None, at_watermark=at_top, sent_at=_now())
        if kind is BatchKind.EXTRACT:
            self.extract_ids.append(batch_id)
        self.send(batch_id)

    def send(self, batch_id: int) -> None:
        from kombu.exceptions import KombuError, OperationalError

        try:
            self.app.send_task(TASK_NAME, args=[batch_id], queue=self.app.conf.crmbridge_queue,
                               retry=True, retry_policy={"max_retries": 3, "interval_start": 0.2,
                                                         "interval_step": 0.5, "interval_max": 2})
        except (OperationalError, KombuError, OSError) as exc:
            raise FatalSyncError(f"cannot send batch {batch_id} to the broker ({type(exc).__name__}); is it "
                                 "running and is distributed.broker_url right?") from None

    # -- watching ------------------------------------------------------------------------------
    def poll(self) -> list[dict[str, Any]]:
        """Move the cursor over done batches, send again those whose worker died; returns the batch rows."""
        with self.rt.store.transaction() as tx:
            rows = tx.dist_batches_of(self.ctx.run_id, "id", "seq", "kind", "status", "watermark", "at_watermark",
                                      "heartbeat_at", "attempts", "sent_at", "updated_at", "counts", "error")
            self._advance(tx, rows)
        self.runner.heartbeat(self.ctx)
        state = tuple((r["id"], r["status"], r["attempts"]) for r in rows)
        if state != self.last_state:
            self.last_state, self.last_progress = state, time.monotonic()
        self._resend(rows)
        return rows

    def _advance(self, tx: Any, rows: list[dict[str, Any]]) -> None:
        by_id = {r["id"]: r for r in rows}
        while self.advanced < len(self.extract_ids):
            r = by_id.get(self.extract_ids[self.advanced])
            if r is None or r["status"] != BatchStatus.DONE.value:
                break
            if r["watermark"] and r["at_watermark"]:
                self.runner.advance_cursor(tx, self.ctx, self.cursor, _dt.datetime.fromisoformat(r["watermark"]),
                                           dict(sorted(r["at_watermark"].items())))
            self.advanced += 1

    def _resend(self, rows: list[dict[str, Any]]) -> None:
        now = _now()
        stale = now - _dt.timedelta(seconds=self.settings.batch_timeout_seconds)
        stuck = time.monotonic() - self.last_progress > self.settings.batch_timeout_seconds
        again = []
        for r in rows:
            if r["status"] == BatchStatus.RUNNING.value and r["heartbeat_at"] is not None \
                    and r["heartbeat_at"] < stale and (r["sent_at"] is None or r["sent_at"] < stale):
                again.append(r["id"])        # its worker died or hangs: another may take it over
            elif r["status"] == BatchStatus.PENDING.value and (
                    (r["attempts"] and r["heartbeat_at"] is not None and r["sent_at"] is not None
                     and r["sent_at"] < r["heartbeat_at"])   # released by a worker after it was sent
                    or stuck):                                 # nothing moved for a whole batch timeout
                again.append(r["id"])
        if not again:
            return
        log.warning("sending %d batch(es) of run %s again: %s", len(again), self.ctx.run_id, again)
        with self.rt.store.transaction() as tx:
            tx.mark_dist_batches_sent(again)
        for batch_id in again:
            self.send(batch_id)
        self.last_progress = time.monotonic()


def dispatch(rt: Runtime, job_name: str, *, app: Celery | None = None, actor: str = DISPATCH_ACTOR,
             poll_seconds: float = 0.25, queue: str | None = None,
             progress: Callable[[int], None] | None = None) -> RunReport:
    """Run a one-way job over the workers: stage its batches, send them, wait, move the cursor, close the run.

    Holds the job's lease for the whole run (workers heart-beat it too). Record-level problems are dead
    letters; a batch that fails fails the run, with the cursor before it.

    Args:
        rt: the runtime (:func:`crmbridge.sync.bootstrap.bootstrap`); the state database must be PostgreSQL.
        job_name: a one-way job of the configuration.
        app: the Celery app (default :func:`make_celery_app` of ``rt.config``).
        actor: who dispatches, for the run row and the ledger.
        poll_seconds: how often the batches' state is read while waiting.
        queue: send to this queue instead of ``distributed.queue``.
        progress: called with the number of records of each batch done.

    Raises:
        ConfigurationError: no ``distributed`` block, not PostgreSQL, unknown or two-way job.
        LeaseHeldError: the job is already running (the refused attempt is recorded as a ``refused`` run).
    """
    from crmbridge.sync.report import RunReport

    settings = distributed_settings(rt.config)
    runner = JobRunner(rt, job_name, actor=actor)
    if runner.job.direction != "one_way":
        raise ConfigurationError(f"job {job_name} is two-way: distributed mode runs one-way jobs; run it with "
                                 "'crmbridge run'")
    own_app = app is None
    app = app or make_celery_app(rt.config, queue=queue)
    started = time.monotonic()
    if not runner.lease.acquire():  # refused: recorded as a run of its own (`runs list`)
        if own_app:
            close_celery_app(app)
        raise runner.lease.refusal(actor=actor)
    try:
        with rt.store.transaction() as tx:
            previous = tx.list_runs(job_name, limit=5)
            run_id = tx.start_run(job_name, actor=actor)
            tx.ledger(rt.signer, cipher=rt.cipher).checkpoint(run_id=run_id, run_event="start")
            tx.mark_crashed_runs(job_name, current=run_id)   # we hold the lease: any other "running" run is dead
        report = RunReport(run_id=str(run_id), job=job_name, dry_run=False)
        ctx = runner.context(run_id, report, track_progress=False)
        calls_before = {s.system: s.adapter.stats.api_calls for s in (ctx.source, ctx.target)}
        full_scan = False
        rows: list[dict[str, Any]] = []
        try:
            full_scan, rows = _dispatch_run(rt, runner, ctx, app, settings, poll_seconds, progress)
            _sum_counts(report, rows)
            failed = [r for r in rows if r["status"] == BatchStatus.FAILED.value]
            if failed:
                report.status = "failed"
                report.error = f"{len(failed)} batch(es) failed, first (batch {failed[0]['seq']}): {failed[0]['error']}"
            else:
                report.status = "succeeded"
                runner.flag_suspicious(report, previous, full_scan)
                report.conclude(runner.job.max_failed_ratio)   # refused records: partial, or failed above the ratio
                runner.complete_versions(ctx)
        except (CrmBridgeError, OSError, DBAPIError) as exc:
            report.status = "failed"
            report.error = _masked_error(exc)
            log.error("distributed run %s of job %s failed: %s", run_id, job_name, report.error)
            _sum_counts(report, _rows(rt, run_id))
        for s in (ctx.source, ctx.target):  # the dispatcher's own calls (extraction, dead-letter fetches)
            report.api_calls[s.system] = report.api_calls.get(s.system, 0) + (
                s.adapter.stats.api_calls - calls_before.get(s.system, 0))
        report.duration_seconds = time.monotonic() - started
        runner.finish(ctx)
        with rt.store.transaction() as tx:  # the staged records are not needed any more
            tx.erase_dist_payloads(run_id)
        return report
    finally:
        runner.lease.release()
        if own_app:
            close_celery_app(app)


def _dispatch_run(rt: Runtime, runner: JobRunner, ctx: RunContext, app: Celery, settings: DistributedConfig,
                  poll_seconds: float, progress: Callable[[int], None] | None) -> tuple[bool, list[dict[str, Any]]]:
    runner.propagate_erasures(ctx)   # erasures pending at the job's target first, as a single-process run
    runner.prepare_versions(ctx)     # a changed mapping: from the start, every record re-derived (workers too)
    with rt.store.transaction() as tx:
        cursor = runner.cursor(tx, ctx, ctx.source)
    full_scan = cursor.since is None
    d = _Dispatch(rt, runner, ctx, app, settings, cursor)
    # the batches a single-process run would handle, in its order: retried dead letters, changes since the
    # cursor, deletions and closures
    for kind, raws in runner.one_way_batches(ctx, cursor):
        d.stage(raws, kind)
        if kind is BatchKind.EXTRACT:
            d.poll()   # the cursor follows the workers while the source is still read; the lease stays alive
    deadline = None if settings.wait_timeout_seconds is None else time.monotonic() + settings.wait_timeout_seconds
    reported: set[int] = set()
    while True:
        rows = d.poll()
        if progress is not None:
            for r in rows:
                if r["status"] == BatchStatus.DONE.value and r["id"] not in reported:
                    reported.add(r["id"])
                    progress(int((r["counts"] or {}).get("read", 0)))
        if all(r["status"] in (BatchStatus.DONE.value, BatchStatus.FAILED.value) for r in rows):
            break
        if deadline is not None and time.monotonic() > deadline:
            raise FatalSyncError(f"batches still unfinished after {settings.wait_timeout_seconds:g} s: are workers "
                                 f"consuming queue {app.conf.crmbridge_queue}?")
        time.sleep(poll_seconds)
    if d.advanced == len(d.extract_ids):
        runner.finish_cursor(ctx, cursor)
    return full_scan, rows


def _rows(rt: Runtime, run_id: int) -> list[dict[str, Any]]:
    with rt.store.transaction() as tx:
        return tx.dist_batches_of(run_id, "status", "counts")


def _sum_counts(report: RunReport, rows: Sequence[Mapping[str, Any]]) -> None:
    from crmbridge.sync.state.ledger import Action

    for r in rows:
        c = r.get("counts") or {}
        report.read += int(c.get("read", 0))
        for action, n in (c.get("actions") or {}).items():
            report.actions[Action(action)] += int(n)
        for outcome, n in (c.get("outcomes") or {}).items():
            report.outcomes[outcome] += int(n)
        for reason, n in (c.get("refusals") or {}).items():
            report.refusals[reason] += int(n)
        for system, n in (c.get("api_calls") or {}).items():
            report.api_calls[system] = report.api_calls.get(system, 0) + int(n)
        report.retries += int(c.get("retries", 0))
        report.throttled += int(c.get("throttled", 0))


def batch_counts(rt: Runtime, run_id: int) -> dict[str, int]:
    """Batches of a run by status (for operators and tests)."""
    with rt.store.transaction() as tx:
        return tx.dist_batch_counts(run_id)


def worker_argv(*, queue: str, concurrency: int = 1, pool: str = "prefork", hostname: str | None = None,
                loglevel: str = "WARNING") -> list[str]:
    """The ``celery worker`` arguments of ``crmbridge worker``."""
    argv = ["worker", f"--queues={queue}", f"--concurrency={concurrency}", f"--pool={pool}",
            f"--loglevel={loglevel}", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if hostname:
        argv.append(f"--hostname={hostname}")
    return argv

