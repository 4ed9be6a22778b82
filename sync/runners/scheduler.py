"""The scheduler service: runs the configured jobs on their crontabs, one run of a job at a time anywhere.

``crmbridge scheduler start`` builds a :class:`SchedulerService`:

* **Schedules** come from the jobs in the configuration (``schedule``: 5-field crontab, UTC; disabled jobs and jobs
  without a schedule are not scheduled). They live in APScheduler 3's SQLAlchemy job store, in the state database
  (table ``apscheduler_jobs``, created by migration 0003), under ids ``crmbridge:<job>``. Missed fires are
  coalesced into one run, and run if no later than ``misfire_grace`` seconds late.
* **Reload without restart**: the configuration file is watched (modification time and content hash, every
  ``poll_interval`` seconds); jobs are added, removed and rescheduled to match. A file that no longer validates is
  reported in the log and the schedules in force are kept.
* **One run at a time across processes and machines**: a run takes the job's lease in the state database
  (:meth:`crmbridge.sync.state.store.StateStore.acquire_lease`), heartbeated by the engine after every batch and by a
  background thread here every third of ``lease_ttl``. A fire that finds the lease held is skipped and checked
  again when that lease would expire: if the holder finished a run meanwhile, the fire was served; if the holder
  died (its lease expired with its run still marked running), this process takes the job over and resumes it
  from the committed cursor, and marks the dead holder's run ``aborted``. (A holder on this same host whose
  process no longer exists is taken over at once by the engine, without waiting for the expiry.)
* **Run now**: ``--run-now`` fires every scheduled job once at start; SIGUSR1 (``kill -USR1 <pid>``) does the
  same at any time.
* **Graceful stop** on SIGTERM / SIGINT: no new run starts; a running one ends after its current batch commits
  (status ``stopped``; the cursor covers exactly the committed batches); then the process
  exits 0.
* **Observability**: Prometheus metrics (:mod:`crmbridge.sync.metrics`) on ``metrics.host:port``; structured
  logs with the job and run ids on every line (:func:`crmbridge.core.logsafe.configure_service_logging`);
  webhook notifications (:mod:`crmbridge.sync.notify`) of failed, partial and overdue runs, growing dead letters
  and conflicts, lost leases and refused credentials.

Several schedulers may share one state database (on PostgreSQL, or on one host's SQLite file): each fires the
jobs, the lease lets exactly one run happen per fire.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crmbridge.core.errors import ConfigurationError, CrmBridgeError, LeaseHeldError
from crmbridge.core.logsafe import bind_log_context, reset_log_context
from crmbridge.sync.state.store import RunStatus
from crmbridge.sync.state.tables import apscheduler_jobs  # re-exported: declared with every other table

__all__ = [
    "JOB_ID_PREFIX",
    "SchedulerOptions",
    "SchedulerService",
    "apscheduler_jobs",
    "fire",
    "job_status",
]

log = logging.getLogger("crmbridge.scheduler")

JOB_ID_PREFIX = "crmbridge:"

@dataclass
class SchedulerOptions:
    """How the service behaves (command-line options of ``crmbridge scheduler start``).

    Attributes:
        lease_ttl: seconds a job's lease outlives its last heartbeat; a crashed holder's job resumes elsewhere
            after at most this long.
        misfire_grace: a fire this many seconds late still runs (late fires are coalesced into one).
        poll_interval: seconds between checks of the configuration file (and wake-ups of the scheduler).
        run_now: also run every scheduled job once at start (catch up after maintenance).
        max_workers: jobs this process may run at the same time (different jobs; a job never runs twice).
    """

    lease_ttl: float = 300.0
    misfire_grace: int = 300
    poll_interval: float = 5.0
    run_now: bool = False
    max_workers: int = 4


#: the service of this process, which :func:`fire` (APScheduler's stored job target) hands the fire to
_SERVICE: list[SchedulerService] = []


def fire(job_name: str) -> None:
    """Target of every stored schedule (an importable reference, as APScheduler's SQLAlchemy store needs)."""
    if not _SERVICE:
        log.error("schedule of job %s fired with no scheduler service in this process", job_name)
        return
    _SERVICE[0].run_job(job_name)


@dataclass
class _Watched:
    mtime: float = 0.0
    digest: str = ""


@dataclass
class SchedulerService:
    """The scheduler of one process (see the module docstring).

    Args:
        config_path: the configuration file (watched for changes).
        options: behaviour knobs.
        runtime_factory: builds a runtime from a configuration (default :func:`crmbridge.sync.bootstrap.bootstrap`).
    """

    config_path: Path
    options: SchedulerOptions = field(default_factory=SchedulerOptions)
    runtime_factory: Callable[..., Any] | None = None
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")

    def __post_init__(self) -> None:
        from crmbridge.sync.metrics import SyncMetrics

        self.metrics = SyncMetrics()
        self.rt: Any = None
        self.notifier: Any = None
        self.scheduler: Any = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._kick = threading.Event()
        self._watched = _Watched()
        self._retired: list[Any] = []
        self._lock = threading.Lock()

    # ================================================================================ life cycle
    def start(self) -> None:
        """Build the runtime, serve metrics, start APScheduler on the shared job store and load the schedules."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        self.config_path = Path(self.config_path).resolve()
        self._load_runtime(migrate=True)
        cfg = self.rt.config
        if cfg.metrics.port:
            try:
                self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
            except OSError as exc:
                raise ConfigurationError(f"{cfg.source_file}: metrics: cannot serve on {cfg.metrics.host}:"
                                         f"{cfg.metrics.port} ({exc.strerror or exc})") from None
            log.info("metrics on http://%s:%s/metrics", cfg.metrics.host, cfg.metrics.port)
        self.scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.rt.store.engine, tablename="apscheduler_jobs"),
                       "local": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(self.options.max_workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": self.options.misfire_grace},
            timezone=UTC,
        )
        _SERVICE[:] = [self]
        self._mark_crashed(cfg)
        self.scheduler.start()
        self.sync_jobs()
        if self.options.run_now:
            self.run_all_now()
        log.info("scheduler %s started: %d scheduled job(s)", self.holder, len(self._scheduled(cfg)))

    def _mark_crashed(self, cfg: Any) -> None:
        """Runs this host left ``running`` in processes that no longer exist (killed, host rebooted) are recorded
        ``crashed`` as the scheduler starts, not only when their job next runs."""
        with self.rt.store.transaction() as tx:
            for name in sorted(cfg.jobs):
                for dead in tx.mark_crashed_runs(name, current=0, lease_held=False):
                    log.warning("run %s of job %s ended without finishing (its process died): recorded crashed",
                                dead, name)

    def run_all_now(self) -> list[str]:
        """Fire every scheduled job once now (``--run-now``, SIGUSR1); the lease still allows one run per job."""
        names = list(self._scheduled(self.rt.config))
        for name in names:
            self.scheduler.add_job(self.run_job, "date", run_date=datetime.now(UTC), args=[name],
                                   id=f"now:{name}", jobstore="local", replace_existing=True,
                                   misfire_grace_time=None)
        return names

    def request_stop(self, *_: object) -> None:
        """Stop soon: no new run; a running one ends after its current batch (signal handler)."""
        if not self._stop.is_set():
            log.warning("stop requested: finishing the current batch of running jobs, starting no new run")
        self._stop.set()
        self._wake.set()

    def request_run_now(self, *_: object) -> None:
        """Fire every scheduled job at the next loop turn (SIGUSR1 handler: ``kill -USR1 <pid>``)."""
        self._kick.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def serve_forever(self) -> None:
        """Run until SIGTERM / SIGINT (or :meth:`request_stop`), watching the configuration; then shut down."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGUSR1, self.request_run_now)
        try:
            while not self._stop.is_set():
                self._wake.wait(self.options.poll_interval)
                self._wake.clear()
                if self._stop.is_set():
                    break
                if self._kick.is_set():
                    self._kick.clear()
                    log.info("SIGUSR1: firing %s now", ", ".join(self.run_all_now()) or "no job")
                self.reload_if_changed()
                self.scheduler.wakeup()  # another process may have changed the shared store
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Wait for running jobs (they stop after their current batch), then release everything."""
        self._stop.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.metrics.close()
        if self.notifier is not None:
            self.notifier.close()
        for rt in [*self._retired, self.rt]:
            if rt is not None:
                rt.close()
        self._retired.clear()
        _SERVICE[:] = [s for s in _SERVICE if s is not self]
        log.info("scheduler %s stopped", self.holder)

    # ================================================================================ configuration
    def _digest(self) -> _Watched:
        st = self.config_path.stat()
        return _Watched(st.st_mtime, hashlib.sha256(self.config_path.read_bytes()).hexdigest())

    def _load_runtime(self, *, migrate: bool) -> None:
        from crmbridge.sync.bootstrap import bootstrap
        from crmbridge.sync.notify import Notifier

        watched = self._digest()
        factory = self.runtime_factory or bootstrap
        rt = factory(self.config_path, migrate=migrate)
        with self._lock:
            if self.rt is not None:
                self._retired.append(self.rt)  # runs in progress keep using it; closed at shutdown
            if self.notifier is not None:
                self.notifier.close()
            self.rt = rt
            self.notifier = Notifier(rt.config.notifications, base_dir=rt.config.base_dir,
                                     on_outcome=lambda e, o: self.metrics.notifications.labels(e, o).inc())
            self._watched = watched

    def reload_if_changed(self) -> bool:
        """Reload the configuration if the file changed; True if the schedules were brought up to date."""
        try:
            now = self._digest()
        except OSError as exc:
            log.error("cannot read the configuration %s: %s; keeping the schedules in force", self.config_path, exc)
            return False
        if now.digest == self._watched.digest:
            self._watched.mtime = now.mtime
            return False
        try:
            self._load_runtime(migrate=False)
        except CrmBridgeError as exc:
            self._watched = now  # report a broken file once, not every poll
            log.error("configuration %s changed but is not valid; keeping the schedules in force:\n%s",
                      self.config_path, exc)
            return False
        changes = self.sync_jobs()
        log.info("configuration reloaded: %s", ", ".join(f"{k} {', '.join(v) or '-'}" for k, v in changes.items()))
        return True

    @staticmethod
    def _scheduled(cfg: Any) -> dict[str, str]:
        return {name: job.schedule for name, job in sorted(cfg.jobs.items()) if job.enabled and job.schedule}

    def sync_jobs(self) -> dict[str, list[str]]:
        """Make the stored schedules match the configuration: ``{"added": [...], "removed": [...],
        "rescheduled": [...]}``. Idempotent; several processes may do it at once."""
        from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
        from apscheduler.triggers.cron import CronTrigger

        wanted = self._scheduled(self.rt.config)
        changes: dict[str, list[str]] = {"added": [], "removed": [], "rescheduled": []}
        stored = {j.id[len(JOB_ID_PREFIX):]: j for j in self.scheduler.get_jobs(jobstore="default")
                  if j.id.startswith(JOB_ID_PREFIX)}
        for name, job in stored.items():
            if name not in wanted:
                try:
                    self.scheduler.remove_job(job.id, jobstore="default")
                except JobLookupError:
                    pass  # another scheduler removed it first
                changes["removed"].append(name)
        for name, crontab in wanted.items():
            trigger = CronTrigger.from_crontab(crontab, timezone=UTC)
            job = stored.get(name)
            if job is None:
                try:
                    self.scheduler.add_job(fire, trigger, args=[name], id=JOB_ID_PREFIX + name, name=name,
                                           jobstore="default")
                except ConflictingIdError:
                    pass  # another scheduler added it first
                changes["added"].append(name)
            elif str(job.trigger) != str(trigger):
                self.scheduler.reschedule_job(job.id, jobstore="default", trigger=trigger)
                changes["rescheduled"].append(name)
        return changes

    # ================================================================================ one fire
    def run_job(self, name: str, *, fired_at: datetime | None = None, holder: str | None = None) -> Any:
        """Run ``name`` now if nobody else is running it; returns the run report, or None if skipped.

        ``holder``: run under this lease holder id (one this process already took the lease with)."""
        from crmbridge.sync.engine import JobRunner
        from crmbridge.sync.metrics import snapshot_stats, stats_delta
        from crmbridge.sync.notify import events_for_run

        fired_at = fired_at or datetime.now(UTC)
        if self._stop.is_set():
            return None
        with self._lock:
            rt, notifier = self.rt, self.notifier
        job = rt.config.jobs.get(name)
        if job is None:
            log.warning("schedule of job %s fired but the configuration has no such job; skipped", name)
            return None
        token = bind_log_context(job=name)
        heartbeat_stop = threading.Event()
        overdue: threading.Timer | None = None
        try:
            runner = JobRunner(rt, name, actor="scheduler", should_stop=self._stop.is_set,
                               lease_ttl=self.options.lease_ttl)
            if holder is not None:
                runner.holder = holder
            # a fire that finds the job running elsewhere is a skip (crmbridge_lease_skips_total, looked at again
            # when the lease would expire), not a run: it leaves no run row
            runner.record_refusal = False
            adapters = {s: rt.adapter(s) for s in {job.source_system, job.target_system}}
            before_stats = snapshot_stats(adapters)
            before = dict(zip(("dead_letters", "conflicts"), self.metrics.state_counts(rt.store, name), strict=True))
            threading.Thread(target=self._heartbeat, args=(rt, name, runner.holder, heartbeat_stop),
                             name=f"lease-{name}", daemon=True).start()
            overdue_sent = threading.Event()
            if job.expected_duration_seconds:
                overdue = threading.Timer(job.expected_duration_seconds, self._overdue, args=(name, job, overdue_sent))
                overdue.daemon = True
                overdue.start()
            self.metrics.running.labels(name).set(1)
            log.info("run of job %s requested (fired %s)", name, fired_at.isoformat(timespec="seconds"))
            try:
                report = runner.run()
            except LeaseHeldError as exc:  # another live process holds the lease
                held = rt.store.lease_holder(name) or {"holder": exc.holder}
                return self._skip(name, held, fired_at)
            finally:
                self.metrics.running.labels(name).set(0)
            bind_log_context(run_id=report.run_id)  # the lines about this run's outcome carry its id too
            self.metrics.observe_run(report, stats_delta(before_stats, snapshot_stats(adapters)))
            after = self.metrics.observe_state(rt.store, name, job)
            log.info("run %s of job %s %s: read %d, %s; %.1f s", report.run_id, name, report.status, report.read,
                     ", ".join(f"{k} {v}" for k, v in sorted(report.actions.items()) if v) or "no changes",
                     report.duration_seconds)
            if overdue is not None:
                overdue.cancel()
            for event, summary, details in events_for_run(report, job, before=before, after=after):
                if event == "run_overdue" and overdue_sent.is_set():
                    continue  # already sent while the run was going
                notifier.notify(event, job=name, run_id=report.run_id, summary=summary, details=details)
            return report
        except Exception:
            log.exception("run of job %s could not be started or recorded", name)
            return None
        finally:
            heartbeat_stop.set()
            if overdue is not None:
                overdue.cancel()
            reset_log_context(token)

    def _skip(self, name: str, held: dict[str, Any], fired_at: datetime) -> None:
        """Another process runs the job: skip this fire, and look again when that lease would expire."""
        self.metrics.lease_skips.labels(name).inc()
        expires = held.get("expires_at") or (datetime.now(UTC) + timedelta(seconds=self.options.lease_ttl))
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        log.info("job %s is running elsewhere (lease held by %s until %s); this fire is skipped", name,
                 held.get("holder"), expires.isoformat(timespec="seconds"))
        if not self._stop.is_set() and self.scheduler is not None:
            self.scheduler.add_job(self._check_after_lease, "date", run_date=expires + timedelta(seconds=0.5),
                                   args=[name, fired_at], id=f"lease:{name}", jobstore="local",
                                   replace_existing=True, misfire_grace_time=None)

    def _check_after_lease(self, name: str, fired_at: datetime) -> None:
        """A skipped fire, looked at again. Under the job's lease (so no run can end or start meanwhile): served if
        a run finished since the fire; else the holder died without finishing: take the job over. If the lease is
        still held, the engine decides (it takes over a dead holder of this host; else the fire is skipped again)."""
        if self._stop.is_set():
            return
        rt = self.rt
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if not rt.store.acquire_lease(name, holder, self.options.lease_ttl):
            self.run_job(name, fired_at=fired_at)
            return
        try:
            with rt.store.transaction(refuse_writes=True) as tx:   # a refused run (`crmbridge run` meanwhile)
                latest = next(iter(tx.list_runs(name, limit=1, exclude_status=[RunStatus.REFUSED.value])), None)
        except Exception:
            rt.store.release_lease(name, holder)
            raise
        finished = latest.get("finished_at") if latest else None
        if finished is not None and finished.replace(tzinfo=finished.tzinfo or UTC) >= fired_at:
            rt.store.release_lease(name, holder)
            log.info("job %s: the skipped fire of %s was served by run %s", name,
                     fired_at.isoformat(timespec="seconds"), latest["id"] if latest else "?")
            return
        log.warning("job %s: the lease holder finished no run since %s; taking the job over", name,
                    fired_at.isoformat(timespec="seconds"))
        if self.run_job(name, fired_at=fired_at, holder=holder) is None:
            rt.store.release_lease(name, holder)  # not run after all (stopping, or it could not start)

    def _heartbeat(self, rt: Any, name: str, holder: str, stop: threading.Event) -> None:
        """Keep the lease alive between batches (a slow batch must not lose it; a dead process does)."""
        interval = max(0.2, self.options.lease_ttl / 3)
        while not stop.wait(interval):
            try:
                rt.store.heartbeat_lease(name, holder, self.options.lease_ttl)
            except Exception as exc:  # the engine notices a lost lease at its next batch
                log.warning("lease heartbeat of job %s failed: %s", name, exc)

    def _overdue(self, name: str, job: Any, sent: threading.Event) -> None:
        sent.set()
        summary = f"job {name} is still running after {job.expected_duration_seconds} s (its expected duration)"
        log.warning(summary)
        self.notifier.notify("run_overdue", job=name, run_id=None, summary=summary,
                             details={"expected_duration_seconds": job.expected_duration_seconds, "finished": False})


def job_status(rt: Any) -> list[dict[str, Any]]:
    """Each configured job's schedule, next run, last run and lease holder (``crmbridge scheduler status``)."""
    with rt.store.transaction(refuse_writes=True) as tx:
        next_runs = tx.scheduled_jobs(JOB_ID_PREFIX)
    out = []
    for name, job in sorted(rt.config.jobs.items()):
        with rt.store.transaction(refuse_writes=True) as tx:
            last = next(iter(tx.list_runs(name, limit=1)), None)
        lease = rt.store.lease_holder(name)
        nxt = next_runs.get(name)
        out.append({
            "job": name, "schedule": job.schedule, "enabled": job.enabled,
            "next_run": datetime.fromtimestamp(nxt, UTC).isoformat(timespec="seconds") if nxt else None,
            "last_run": None if last is None else {
                "id": last["id"], "status": last["status"],
                "started_at": _iso(last.get("started_at")), "finished_at": _iso(last.get("finished_at")),
                "counts": last.get("counts") or {}, "error": last.get("error_summary")},
            "lease_holder": None if lease is None else {"holder": lease["holder"],
                                                        "expires_at": _iso(lease["expires_at"])},
        })
    return out


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).isoformat(timespec="seconds")

