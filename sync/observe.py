"""Observing a run the same way wherever it runs: the scheduler, ``crmbridge run`` and ``crmbridge dispatch``.

A job started by cron or Control-M must be as visible as one the scheduler fires. Two pieces:

* :func:`apply_logging` applies the configuration's ``logging:`` (level, ``text``/``json``, ``file``) through
  :func:`crmbridge.core.logsafe.configure_service_logging`; a log file is reopened when logrotate moves it.
* :func:`observe_run` wraps one run of one process: it counts the run in the Prometheus metrics (written to
  ``metrics.textfile``, for node_exporter's textfile collector, atomically at the end of the run), logs its
  outcome with the job and run ids, and sends the webhook notifications of its end (``run_failed``,
  ``run_partial``, ``run_crashed``, ``run_overdue``, ``dead_letter``, ``conflict``...)::

      with observe_run(rt, job) as obs:
          report = obs.done(run_job(rt, job))

  A run that raises instead of returning a report is counted and notified as ``crashed`` (and re-raised).
  Dry runs are logged, but neither counted nor notified.

The textfile keeps counters cumulative across runs (and across jobs sharing one file): each write adds this
run's counts to the series already in the file, replaces the gauges this run measured and keeps every other
series as it was; writers of the same file take turns under an ``flock`` on ``<file>.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crmbridge.config import CrmBridgeConfig
from crmbridge.core.errors import ConfigurationError
from crmbridge.core.logsafe import bind_log_context, configure_service_logging, mask_text, reset_log_context

__all__ = ["RunObservation", "apply_logging", "observe_run", "textfile_path", "write_textfile"]

log = logging.getLogger("crmbridge.observe")


def _resolve(path: str, cfg: CrmBridgeConfig) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else cfg.base_dir / p


def apply_logging(cfg: CrmBridgeConfig, *, floor: int | None = None) -> logging.Handler:
    """Apply ``logging:`` of ``cfg`` to this process (one root handler; see ``configure_service_logging``).

    Args:
        cfg: the loaded configuration; a relative ``logging.file`` starts at the configuration's folder.
        floor: log at least this verbosely (``--verbose``/``--debug`` of the command line), whatever the
            configured level.
    """
    level = logging.getLevelName(cfg.logging.level)
    if floor is not None and floor < level:
        level = floor
    file = str(_resolve(cfg.logging.file, cfg)) if cfg.logging.file else None
    try:
        if file:
            Path(file).parent.mkdir(parents=True, exist_ok=True)
        return configure_service_logging(level, fmt=cfg.logging.format, file=file)
    except OSError as exc:
        raise ConfigurationError(f"{cfg.where(('logging', 'file'))}: logging.file: cannot write the log file "
                                 f"{file} ({exc.strerror or exc})") from None


def textfile_path(cfg: CrmBridgeConfig, job: str) -> Path | None:
    """Where ``metrics.textfile`` puts the metrics of ``job`` (``{job}`` replaced), or None when unset."""
    if not cfg.metrics.textfile:
        return None
    return _resolve(cfg.metrics.textfile.replace("{job}", job), cfg)


# ============================================================================ the textfile
_ADDITIVE = ("counter", "histogram", "summary")


def write_textfile(path: Path, registry: Any) -> None:
    """Merge ``registry``'s samples into the Prometheus textfile ``path`` and replace it atomically.

    Counter and histogram samples are added to the file's (cumulative across runs), gauges replace theirs,
    series the registry does not have are kept. The new text is written to a hidden temporary file of the same
    folder (not ``*.prom``, so the collector never reads half a file) and renamed over ``path``.
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            previous = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            previous = ""
        families: dict[str, Any] = {}
        old: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for fam in text_string_to_metric_families(previous):
            families[fam.name] = fam
            for s in fam.samples:
                old[(s.name, tuple(sorted(s.labels.items())))] = s.value
        new_text = generate_latest(registry).decode()
        for fam in text_string_to_metric_families(new_text):
            kept = families.get(fam.name)
            merged: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
            if kept is not None:
                merged = {(s.name, tuple(sorted(s.labels.items()))): s for s in kept.samples}
            for s in fam.samples:
                if s.name.endswith("_created"):
                    continue  # per-process creation times mean nothing in a file many runs write
                key = (s.name, tuple(sorted(s.labels.items())))
                value = s.value + old.get(key, 0.0) if fam.type in _ADDITIVE else s.value
                merged[key] = s._replace(value=value)
            fam.samples = list(merged.values())
            families[fam.name] = fam

        class _Collector:
            def collect(self) -> Iterator[Any]:
                yield from families.values()

        out = CollectorRegistry(auto_describe=False)
        out.register(_Collector())  # type: ignore[arg-type]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(generate_latest(out))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # node_exporter usually runs as another user
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


# ============================================================================ one observed run
class RunObservation:
    """What :func:`observe_run` yields: hand the run's report to :meth:`done`."""

    def __init__(self) -> None:
        self.report: Any = None

    def done(self, report: Any) -> Any:
        """Record the run's report (returned unchanged)."""
        self.report = report
        return report


def _state_counts(metrics: Any, rt: Any, job: str) -> dict[str, int] | None:
    try:
        return dict(zip(("dead_letters", "conflicts"), metrics.state_counts(rt.store, job), strict=True))
    except Exception as exc:  # the run reports the state database's trouble; observing must not add to it
        log.warning("job %s: open dead letters and conflicts not counted: %s", job,
                    mask_text(f"{type(exc).__name__}: {exc}"))
        return None


@contextlib.contextmanager
def observe_run(rt: Any, job: str, *, dry_run: bool = False, floor: int | None = None,
                session: Any = None) -> Iterator[RunObservation]:
    """Apply ``logging:``, then count, log and notify the run of ``job`` done inside the block.

    Args:
        rt: the runtime the run uses (its configuration, adapters and state store).
        job: the job's name.
        dry_run: a dry run is logged, not counted in metrics nor notified.
        floor: passed to :func:`apply_logging`.
        session: the notifier's HTTP session (default a new ``requests.Session``).
    """
    from crmbridge.sync.metrics import SyncMetrics, snapshot_stats, stats_delta
    from crmbridge.sync.notify import Notifier, events_for_run

    cfg = rt.config
    apply_logging(cfg, floor=floor)
    obs = RunObservation()
    token = bind_log_context(job=job)
    job_cfg = cfg.jobs.get(job)
    if dry_run or job_cfg is None:  # an unknown job is the runner's error to report
        try:
            log.info("%s of job %s starting", "dry run" if dry_run else "run", job)
            yield obs
        finally:
            reset_log_context(token)
        return
    metrics = SyncMetrics()
    notifier = Notifier(cfg.notifications, base_dir=cfg.base_dir, session=session,
                        on_outcome=lambda e, o: metrics.notifications.labels(e, o).inc())
    adapters: dict[str, Any] = {}
    try:
        adapters = {s: rt.adapter(s) for s in {job_cfg.source_system, job_cfg.target_system}}
    except Exception as exc:  # the run itself reports an adapter that cannot be built
        log.warning("job %s: vendor call counts not observed: %s", job, mask_text(f"{type(exc).__name__}: {exc}"))
    before_stats = snapshot_stats(adapters)
    before = _state_counts(metrics, rt, job)
    started = time.monotonic()
    log.info("run of job %s starting", job)
    try:
        try:
            yield obs
        except Exception as exc:
            _crashed(metrics, notifier, job, exc, time.monotonic() - started)
            _write_metrics(cfg, job, metrics)
            raise
        report = obs.report
        if report is None:
            return
        bind_log_context(run_id=report.run_id)
        metrics.observe_run(report, stats_delta(before_stats, snapshot_stats(adapters)))
        after: dict[str, int] | None = None
        try:
            after = metrics.observe_state(rt.store, job, job_cfg)
        except Exception as exc:
            log.warning("job %s: state gauges not read: %s", job, mask_text(f"{type(exc).__name__}: {exc}"))
        log.log(logging.INFO if report.status == "succeeded" else logging.WARNING,
                "run %s of job %s %s: read %d, %s; %.1f s", report.run_id, job, report.status, report.read,
                ", ".join(f"{k} {v}" for k, v in sorted(report.actions.items()) if v) or "no changes",
                report.duration_seconds)
        growth = (before, after) if before is not None and after is not None else ({}, {})
        for event, summary, details in events_for_run(report, job_cfg, before=growth[0], after=growth[1]):
            notifier.notify(event, job=job, run_id=report.run_id, summary=summary, details=details)
        _write_metrics(cfg, job, metrics)
    finally:
        notifier.close()
        reset_log_context(token)


def _crashed(metrics: Any, notifier: Any, job: str, exc: Exception, duration: float) -> None:
    from crmbridge.core.errors import LeaseHeldError

    if isinstance(exc, LeaseHeldError):
        log.warning("job %s not run: %s", job, mask_text(str(exc)))  # another process runs it: not a crash
        return
    error = mask_text(f"{type(exc).__name__}: {exc}")
    log.error("run of job %s crashed: %s", job, error)
    metrics.observe_crash(job, duration)
    notifier.notify("run_crashed", job=job, run_id=None, summary=f"run of {job} crashed: {error}",
                    details={"status": "crashed", "error": error})


def _write_metrics(cfg: CrmBridgeConfig, job: str, metrics: Any) -> None:
    path = textfile_path(cfg, job)
    if path is None:
        return
    try:
        write_textfile(path, metrics.registry)
    except OSError as exc:
        log.error("job %s: metrics textfile %s not written: %s", job, path, exc.strerror or exc)
