"""Prometheus metrics of the scheduler and workers: every definition in this one module.

The engine knows nothing of Prometheus. Whoever runs a job (the scheduler, a worker) feeds :class:`SyncMetrics`
once per run from what the run already produces: the :class:`~crmbridge.sync.report.RunReport`, the adapters'
:class:`~crmbridge.adapters.base.AdapterStats` (before/after deltas) and the state store (open dead letters,
open conflicts, cursors)::

    metrics = SyncMetrics()                      # its own registry; serve it with metrics.serve(host, port)
    before = snapshot_stats(adapters)
    report = runner.run()
    metrics.observe_run(report, stats_delta(before, snapshot_stats(adapters)))
    metrics.observe_state(rt.store, job_name, job_config)

One-shot runs (``crmbridge run``/``dispatch``) feed a fresh :class:`SyncMetrics` the same way and write it to
``metrics.textfile`` (:func:`crmbridge.sync.observe.write_textfile`).

Names and meanings (README "Operations" lists them for operators):

=============================================  =========================================================
crmbridge_runs_total{job,status}               runs finished, by final status (succeeded, partial, failed,
                                               crashed, stopped, suspicious)
crmbridge_run_duration_seconds{job}            histogram of run durations
crmbridge_records_total{job,action}            records read (action="read") and each decision taken
crmbridge_api_calls_total{system,status}       vendor calls by HTTP status (or SOAP outcome)
crmbridge_retries_total{system}                calls retried (transient errors, throttling)
crmbridge_throttled_total{system}              calls the vendor throttled (429, rate-limit codes)
crmbridge_dead_letters{job}                    open dead letters (records waiting to be retried)
crmbridge_conflicts_waiting{job}               conflicts waiting for review
crmbridge_cursor_lag_seconds{job,cursor}       now minus the cursor's watermark (how far behind)
crmbridge_last_success_timestamp_seconds{job}  when the job last finished successfully (epoch)
crmbridge_job_running{job}                     1 while this process runs the job
crmbridge_lease_skips_total{job}               fires skipped because another process held the job's lease
crmbridge_notifications_total{event,outcome}   webhook notifications sent / failed
=============================================  =========================================================
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from crmbridge.adapters.base import Adapter
from crmbridge.config import JobConfig
from crmbridge.sync.report import RunReport
from crmbridge.sync.state.store import StateStore

__all__ = ["SyncMetrics", "snapshot_stats", "stats_delta"]

_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, float("inf"))


def snapshot_stats(adapters: Mapping[str, Adapter]) -> dict[str, dict[str, Any]]:
    """A copy of each adapter's counters, keyed by system name."""
    return {name: a.stats.as_dict() for name, a in adapters.items()}


def stats_delta(before: Mapping[str, Mapping[str, Any]],
                after: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """What each system's counters grew by between two :func:`snapshot_stats`."""
    out: dict[str, dict[str, Any]] = {}
    for system, now in after.items():
        was = before.get(system, {})
        out[system] = {
            "by_status": {k: v - (was.get("by_status") or {}).get(k, 0) for k, v in (now.get("by_status") or {}).items()
                          if v - (was.get("by_status") or {}).get(k, 0) > 0},
            **{k: int(now.get(k) or 0) - int(was.get(k) or 0) for k in ("api_calls", "retries", "throttled")},
        }
    return out


class SyncMetrics:
    """The metric families, on their own registry (one per process; tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter("crmbridge_runs", "Runs finished, by final status", ["job", "status"], registry=r)
        self.run_duration = Histogram("crmbridge_run_duration_seconds", "Duration of runs", ["job"],
                                      buckets=_DURATION_BUCKETS, registry=r)
        self.records = Counter("crmbridge_records", "Records read and decisions taken", ["job", "action"],
                               registry=r)
        self.api_calls = Counter("crmbridge_api_calls", "Vendor API calls by status", ["system", "status"],
                                 registry=r)
        self.retries = Counter("crmbridge_retries", "Vendor calls retried", ["system"], registry=r)
        self.throttled = Counter("crmbridge_throttled", "Vendor calls throttled", ["system"], registry=r)
        self.dead_letters = Gauge("crmbridge_dead_letters", "Open dead letters", ["job"], registry=r)
        self.conflicts = Gauge("crmbridge_conflicts_waiting", "Conflicts waiting for review", ["job"], registry=r)
        self.cursor_lag = Gauge("crmbridge_cursor_lag_seconds", "Now minus the cursor watermark",
                                ["job", "cursor"], registry=r)
        self.last_success = Gauge("crmbridge_last_success_timestamp_seconds",
                                  "When the job last finished successfully", ["job"], registry=r)
        self.running = Gauge("crmbridge_job_running", "1 while this process runs the job", ["job"], registry=r)
        self.lease_skips = Counter("crmbridge_lease_skips", "Fires skipped: another process held the lease",
                                   ["job"], registry=r)
        self.notifications = Counter("crmbridge_notifications", "Webhook notifications", ["event", "outcome"],
                                     registry=r)
        self._server: Any = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------- feeding
    def observe_run(self, report: RunReport, adapter_delta: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Count one finished run: its status, duration, records, and the vendor calls it cost."""
        job = report.job
        self.runs.labels(job, report.status).inc()
        self.run_duration.labels(job).observe(report.duration_seconds)
        if report.read:
            self.records.labels(job, "read").inc(report.read)
        for action, n in report.actions.items():
            if n:
                self.records.labels(job, str(action)).inc(n)
        if report.status == "succeeded":
            self.last_success.labels(job).set(datetime.now(UTC).timestamp())
        for system, delta in (adapter_delta or {}).items():
            for status, n in (delta.get("by_status") or {}).items():
                self.api_calls.labels(system, str(status)).inc(n)
            if delta.get("retries"):
                self.retries.labels(system).inc(delta["retries"])
            if delta.get("throttled"):
                self.throttled.labels(system).inc(delta["throttled"])

    def observe_crash(self, job: str, duration_seconds: float) -> None:
        """Count a run that raised instead of returning a report (status ``crashed``)."""
        self.runs.labels(job, "crashed").inc()
        self.run_duration.labels(job).observe(duration_seconds)

    def observe_state(self, store: StateStore, job: str, config: JobConfig) -> dict[str, int]:
        """Set the gauges read from the state store; returns ``{"dead_letters": n, "conflicts": m}``."""
        open_letters, open_conflicts = self.state_counts(store, job)
        self.dead_letters.labels(job).set(open_letters)
        self.conflicts.labels(job).set(open_conflicts)
        now = datetime.now(UTC)
        sides = [f"{config.source_system}.{config.source_object}"]
        if config.direction == "two_way":
            sides.append(f"{config.target_system}.{config.target_object}")
        with store.transaction(refuse_writes=True) as tx:
            for key in sides:
                cur = tx.get_cursor(job, key)
                if cur is not None and cur.value:
                    try:
                        mark = datetime.fromisoformat(cur.value.replace("Z", "+00:00"))
                    except ValueError:
                        continue
                    if mark.tzinfo is None:
                        mark = mark.replace(tzinfo=UTC)
                    self.cursor_lag.labels(job, key).set(max(0.0, (now - mark).total_seconds()))
        return {"dead_letters": open_letters, "conflicts": open_conflicts}

    @staticmethod
    def state_counts(store: StateStore, job: str) -> tuple[int, int]:
        """Open dead letters and open conflicts of ``job``."""
        with store.transaction(refuse_writes=True) as tx:
            return tx.open_counts(job)

    # ---------------------------------------------------------------------------------- serving
    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread (once)."""
        with self._lock:
            if self._server is None:
                self._server, _thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The current value of one sample (``crmbridge_records_total`` with labels), for tests and status."""
        return self.registry.get_sample_value(name, dict(labels or {}))

