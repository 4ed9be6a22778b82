"""Metrics, JSON logs and webhooks of a real scheduler process (and, in-process, of a failing run)."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from scheduler_support import JOB, WebhookReceiver, demo, edit_config, free_port, one_way_job, schedulers, wait_for

from crmbridge.config import load_config
from crmbridge.core.logsafe import unconfigure_logging
from crmbridge.sync.notify import EVENT_HEADER, SIGNATURE_HEADER, verify
from crmbridge.sync.runners.scheduler import SchedulerOptions, SchedulerService
from crmbridge.sync.state.store import StateStore

HOOK_SECRET = "hook-secret-for-tests-0123456789"
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
RIC = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{16}[\dXx](?![0-9A-Za-z])")


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _value(samples: dict, name: str, **labels: str) -> float | None:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))))


def _observability_config(d: dict[str, Any], *, log_file: Path, port: int, hook: str, dead_port: int) -> None:
    d["logging"] = {"level": "INFO", "format": "json", "file": str(log_file)}
    d["metrics"] = {"host": "127.0.0.1", "port": port}
    d["notifications"] = {"webhooks": [
        {"url": hook, "events": ["run_failed", "run_partial", "run_overdue", "dead_letter"],
         "secret": "env:CRMBRIDGE_TEST_HOOK_SECRET", "timeout": 2},
        {"url": f"http://127.0.0.1:{dead_port}/down", "events": ["dead_letter"], "timeout": 1},
    ]}
    d["jobs"][JOB]["expected_duration_seconds"] = 1


@pytest.mark.slow   # slow tier: a scheduler process
def test_scheduler_process_metrics_json_logs_and_webhooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMBRIDGE_TEST_HOOK_SECRET", HOOK_SECRET)
    port, dead_port, log_file = free_port(), free_port(), tmp_path / "scheduler.jsonl"
    # the run must outlast its expected duration (1 s) on a fast idle machine too: ~5 vendor calls at 300 ms each
    # a quarter of the records are bad: the run ends partial (within this job's max_failed_ratio of 50 %)
    with WebhookReceiver() as hooks, demo(tmp_path / "demo", customers=40, bad_fraction=0.25, latency_ms=300,
                                          jobs={JOB: {**one_way_job(), "max_failed_ratio": 0.5}}) as env, \
            schedulers() as start:
        edit_config(env, lambda d: _observability_config(d, log_file=log_file, port=port, hook=hooks.url,
                                                         dead_port=dead_port))
        url = load_config(env.config_path).state.url
        sched = start(env.config_path, tmp_path / "stdout.log", "--run-now", "--lease-ttl", "5")
        wait_for(lambda: log_file.exists() and f"run 1 of job {JOB} partial" in log_file.read_text(), 60,
                 f"the run's end in the JSON log\n{sched.output}")
        wait_for(lambda: {"run_overdue", "dead_letter"} <= {e["event"] for e in hooks.events()}, 10, "webhooks")

        store = StateStore.from_url(url)
        try:
            with store.transaction() as tx:
                [run] = tx.list_runs(JOB)
                open_letters = len(tx.list_dead_letters(JOB, status=["open", "retrying"], limit=1000))
        finally:
            store.dispose()
        counts = run["counts"]
        assert open_letters > 0 and counts["failed"] > 0

        # --- metrics, as Prometheus scrapes them
        m = _scrape(port)
        assert _value(m, "crmbridge_runs_total", job=JOB, status="partial") == 1
        assert _value(m, "crmbridge_run_duration_seconds_count", job=JOB) == 1
        assert _value(m, "crmbridge_records_total", job=JOB, action="read") == counts["read"]
        assert _value(m, "crmbridge_records_total", job=JOB, action="created") == counts["created"]
        assert _value(m, "crmbridge_records_total", job=JOB, action="failed") == counts["failed"]
        calls = sum(v for (name, _), v in m.items() if name == "crmbridge_api_calls_total")
        assert calls == counts["api_calls"]
        assert (_value(m, "crmbridge_api_calls_total", system="zoho_cn", status="200") or 0) > 0
        assert _value(m, "crmbridge_dead_letters", job=JOB) == open_letters
        assert _value(m, "crmbridge_conflicts_waiting", job=JOB) == 0
        lag = _value(m, "crmbridge_cursor_lag_seconds", job=JOB, cursor="corebank.Customer")
        assert lag is not None and lag >= 0
        assert _value(m, "crmbridge_job_running", job=JOB) == 0
        assert _value(m, "crmbridge_notifications_total", event="dead_letter", outcome="failed") == 1
        assert _value(m, "crmbridge_notifications_total", event="dead_letter", outcome="sent") == 1

        # --- webhooks: signed, the overdue one sent while the run was still going
        for body, headers in hooks.received:
            assert verify(body, HOOK_SECRET, headers.get(SIGNATURE_HEADER)), headers
            assert headers[EVENT_HEADER] == json.loads(body)["event"]
            assert not verify(body + b" ", HOOK_SECRET, headers.get(SIGNATURE_HEADER))
        events = {e["event"]: e for e in hooks.events()}
        assert events["run_overdue"]["details"]["finished"] is False
        assert events["dead_letter"]["details"] == {"before": 0, "after": open_letters}
        assert events["dead_letter"]["run_id"] == "1"
        assert "run_failed" not in events

        # --- JSON logs: one event per line, ids on the run's lines, nothing personal, no secret
        text = log_file.read_text(encoding="utf-8")
        lines = [json.loads(line) for line in text.splitlines()]
        assert all({"ts", "level", "logger", "msg"} <= set(e) for e in lines)
        run_lines = [e for e in lines if e["logger"].startswith("crmbridge.sync") or "run 1 " in e["msg"]]
        assert run_lines and all(e.get("job") == JOB and e.get("run_id") == "1" for e in run_lines)
        assert any("notification dead_letter" in e["msg"] and "failed" in e["msg"] for e in lines)
        assert not MOBILE.search(text) and not RIC.search(text)
        for secret in [*env.secrets().values(), HOOK_SECRET]:
            assert secret not in text

        sched.signal(signal.SIGTERM)
        assert sched.wait(20) == 0


def test_a_refused_credential_fails_the_run_and_notifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMBRIDGE_TEST_HOOK_SECRET", HOOK_SECRET)
    with WebhookReceiver() as hooks, demo(tmp_path / "demo", customers=10, jobs={JOB: one_way_job()}) as env:
        edit_config(env, lambda d: d.update(notifications={"webhooks": [
            {"url": hooks.url, "events": ["run_failed", "credential_expiring"],
             "secret": "env:CRMBRIDGE_TEST_HOOK_SECRET"}]}))
        monkeypatch.setenv("CRMBRIDGE_DEMO_ZOHO_REFRESH_TOKEN", "1000.revoked-refresh-token-000000")
        service = SchedulerService(env.config_path, SchedulerOptions(lease_ttl=5))
        service.start()
        try:
            report = service.run_job(JOB)
        finally:
            service.shutdown()
            unconfigure_logging()
        assert report is not None and report.status == "failed"
        assert report.error.startswith("AuthenticationError")
        events = {e["event"]: e for e in hooks.events()}
        assert set(events) == {"run_failed", "credential_expiring"}
        assert events["run_failed"]["run_id"] == report.run_id
        assert "revoked-refresh-token" not in json.dumps(list(events.values()))
        assert all(verify(body, HOOK_SECRET, h.get(SIGNATURE_HEADER)) for body, h in hooks.received)
        assert service.metrics.sample("crmbridge_runs_total", {"job": JOB, "status": "failed"}) == 1


def test_a_metrics_port_in_use_is_a_clear_configuration_error(tmp_path: Path) -> None:
    import socket

    from crmbridge.core.errors import ConfigurationError

    with socket.socket() as busy, demo(tmp_path / "demo", customers=1) as env:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        edit_config(env, lambda d: d.update(metrics={"host": "127.0.0.1", "port": port}))
        service = SchedulerService(env.config_path)
        try:
            with pytest.raises(ConfigurationError, match=rf"metrics: cannot serve on 127.0.0.1:{port}"):
                service.start()
        finally:
            service.shutdown()
