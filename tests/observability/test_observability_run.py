"""A one-shot ``crmbridge run`` (as cron or Control-M start it) observes like the scheduler: the configured JSON
log file (kept through logrotate), a Prometheus textfile, signed webhooks at the run's end."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families
from scheduler_support import JOB, WebhookReceiver, demo, edit_config, one_way_job, wait_for

from crmbridge.core.logsafe import configure_service_logging, unconfigure_logging
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.notify import EVENT_HEADER, SIGNATURE_HEADER, verify
from crmbridge.sync.observe import observe_run, write_textfile
from crmbridge.sync.state.store import StateStore

HOOK_SECRET = "hook-secret-for-run-tests-0123456789"
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
RIC = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{16}[\dXx](?![0-9A-Za-z])")


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(path.read_text(encoding="utf-8")) for s in fam.samples}


def _value(samples: dict, name: str, **labels: str) -> float | None:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_service_logging replaces the root's handlers (pytest's capture among them): put them back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            if h not in handlers:
                h.close()
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
        unconfigure_logging()


def _observed_config(d: dict[str, Any], *, log_file: Path, textfile: str, hook: str) -> None:
    d["logging"] = {"level": "INFO", "format": "json", "file": str(log_file)}
    d["metrics"] = {"textfile": textfile}
    d["notifications"] = {"webhooks": [
        {"url": hook, "events": ["run_failed", "run_partial", "run_crashed", "dead_letter"],
         "secret": "env:CRMBRIDGE_TEST_HOOK_SECRET", "timeout": 2}]}


def _run(config: Path, stdout: Path) -> subprocess.Popen[bytes]:
    with open(stdout, "wb") as out:   # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "crmbridge", "run", JOB, "--config", str(config), "--json"],
                                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ), cwd=str(config.parent))


@pytest.mark.slow   # slow tier: cron runs as processes, logrotate
def test_a_cron_run_logs_through_logrotate_writes_the_textfile_and_notifies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMBRIDGE_TEST_HOOK_SECRET", HOOK_SECRET)
    log_file, prom_dir = tmp_path / "logs" / "crmbridge.jsonl", tmp_path / "textfile"
    with WebhookReceiver() as hooks, demo(tmp_path / "demo", customers=40, bad_fraction=0.25, latency_ms=150,
                                          jobs={JOB: {**one_way_job(), "max_failed_ratio": 0.5}}) as env:
        edit_config(env, lambda d: _observed_config(d, log_file=log_file, hook=hooks.url,
                                                    textfile=str(prom_dir / "crmbridge_{job}.prom")))
        proc = _run(env.config_path, tmp_path / "run1.out")
        try:
            wait_for(lambda: log_file.exists() and f"run of job {JOB} starting" in log_file.read_text(), 60,
                     "the run's first log line")
            log_file.rename(log_file.with_name("crmbridge.jsonl.1"))   # what logrotate does
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        out = (tmp_path / "run1.out").read_text()
        assert rc == 3, out   # the records it could not sync make it partial (exit 3)
        report = json.loads(out[out.index("{"):])

        # --- the JSON log: the lines after the rename are in a new file of the configured name
        assert log_file.exists(), "the log file was not reopened after logrotate moved it"
        rotated = log_file.with_name("crmbridge.jsonl.1").read_text(encoding="utf-8")
        text = log_file.read_text(encoding="utf-8")
        lines = [json.loads(line) for line in text.splitlines()]
        assert all({"ts", "level", "logger", "msg"} <= set(e) for e in lines)
        [end] = [e for e in lines if e["msg"].startswith(f"run {report['run_id']} of job {JOB} ")]
        assert end["job"] == JOB and end["run_id"] == report["run_id"]
        assert any("notification run_partial" in e["msg"] for e in lines)
        for body in (text, rotated):
            assert not MOBILE.search(body) and not RIC.search(body)
            for secret in [*env.secrets().values(), HOOK_SECRET]:
                assert secret not in body

        # --- the textfile: the scheduler's metric names, written whole (no temporary file left, readable)
        prom = prom_dir / f"crmbridge_{JOB}.prom"
        assert sorted(p.name for p in prom_dir.iterdir() if not p.name.endswith(".lock")) == [prom.name]
        assert stat.S_IMODE(prom.stat().st_mode) == 0o644
        m = _samples(prom)
        status = report["status"]
        assert _value(m, "crmbridge_runs_total", job=JOB, status=status) == 1
        assert _value(m, "crmbridge_run_duration_seconds_count", job=JOB) == 1
        assert _value(m, "crmbridge_records_total", job=JOB, action="read") == report["read"]
        assert _value(m, "crmbridge_records_total", job=JOB, action="failed") == report["actions"]["failed"] > 0
        assert sum(v for (n, _), v in m.items() if n == "crmbridge_api_calls_total") == sum(
            report["api_calls"].values())
        store = StateStore.from_url(_state_url(env.config_path))
        try:
            with store.transaction() as tx:
                open_letters = len(tx.list_dead_letters(JOB, status=["open", "retrying"], limit=1000))
        finally:
            store.dispose()
        assert _value(m, "crmbridge_dead_letters", job=JOB) == open_letters > 0
        assert _value(m, "crmbridge_notifications_total", event="run_partial", outcome="sent") == 1
        assert not any(n.endswith("_created") for n, _ in m)

        # --- webhooks: the partial end and the dead letters, signed
        events = {e["event"]: e for e in hooks.events()}
        assert {"run_partial", "dead_letter"} <= set(events) and "run_failed" not in events
        assert events["run_partial"]["run_id"] == report["run_id"]
        for body, headers in hooks.received:
            assert verify(body, HOOK_SECRET, headers.get(SIGNATURE_HEADER)) and headers[EVENT_HEADER]
            assert not MOBILE.search(body.decode()) and not RIC.search(body.decode())

        # --- a second run finds core banking down: it fails (unreachable), says so by webhook, the counters add up
        env.core.stop()
        proc = _run(env.config_path, tmp_path / "run2.out")
        assert proc.wait(timeout=120) == 4, (tmp_path / "run2.out").read_text()   # 4: a system unreachable
        failed = [e for e in hooks.events() if e["event"] == "run_failed"]
        assert len(failed) == 1 and "SystemUnavailableError" in failed[0]["summary"]
        m = _samples(prom)
        assert _value(m, "crmbridge_runs_total", job=JOB, status="failed") == 1
        assert _value(m, "crmbridge_runs_total", job=JOB, status=status) == 1
        assert _value(m, "crmbridge_run_duration_seconds_count", job=JOB) == 2
        assert "run 2 of job core_to_zoho failed" in log_file.read_text(encoding="utf-8")


def _state_url(config: Path) -> str:
    from crmbridge.config import load_config

    return load_config(config).state.url


def test_the_log_file_is_reopened_when_logrotate_renames_it(tmp_path: Path, root_logging: None) -> None:
    path = tmp_path / "crmbridge.log"
    configure_service_logging("INFO", fmt="json", file=str(path))
    log = logging.getLogger("crmbridge.test.rotate")
    log.info("before the rotation, mobile 13812345678")
    path.rename(tmp_path / "crmbridge.log.1")
    log.info("after the rotation")
    assert "before the rotation" in (tmp_path / "crmbridge.log.1").read_text()
    [line] = path.read_text().splitlines()
    assert json.loads(line)["msg"] == "after the rotation"
    assert "13812345678" not in (tmp_path / "crmbridge.log.1").read_text()


def test_the_textfile_adds_counters_replaces_gauges_and_keeps_other_series(tmp_path: Path) -> None:
    def registry(job: str, runs: int, letters: int, duration: float) -> CollectorRegistry:
        r = CollectorRegistry()
        Counter("crmbridge_runs", "runs", ["job", "status"], registry=r).labels(job, "succeeded").inc(runs)
        Gauge("crmbridge_dead_letters", "letters", ["job"], registry=r).labels(job).set(letters)
        Histogram("crmbridge_run_duration_seconds", "d", ["job"], buckets=(1, 10, float("inf")),
                  registry=r).labels(job).observe(duration)
        return r

    path = tmp_path / "all.prom"
    write_textfile(path, registry("a", 1, 5, 0.5))
    write_textfile(path, registry("b", 2, 1, 20))
    write_textfile(path, registry("a", 1, 3, 5))
    m = _samples(path)
    assert _value(m, "crmbridge_runs_total", job="a", status="succeeded") == 2
    assert _value(m, "crmbridge_runs_total", job="b", status="succeeded") == 2
    assert _value(m, "crmbridge_dead_letters", job="a") == 3 and _value(m, "crmbridge_dead_letters", job="b") == 1
    assert _value(m, "crmbridge_run_duration_seconds_count", job="a") == 2
    assert _value(m, "crmbridge_run_duration_seconds_sum", job="a") == 5.5
    assert _value(m, "crmbridge_run_duration_seconds_bucket", job="a", le="1.0") == 1
    assert _value(m, "crmbridge_run_duration_seconds_bucket", job="a", le="10.0") == 2
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_a_run_that_raises_is_counted_and_notified_as_crashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              root_logging: None) -> None:
    monkeypatch.setenv("CRMBRIDGE_TEST_HOOK_SECRET", HOOK_SECRET)
    log_file = tmp_path / "run.jsonl"
    with WebhookReceiver() as hooks, demo(tmp_path / "demo", customers=2, jobs={JOB: one_way_job()}) as env:
        edit_config(env, lambda d: _observed_config(d, log_file=log_file, hook=hooks.url,
                                                    textfile=str(tmp_path / "m.prom")))
        rt = bootstrap(env.config_path)
        try:
            with pytest.raises(KeyError), observe_run(rt, JOB):
                raise KeyError("a vendor reply without 'data' for mobile 13812345678")
        finally:
            rt.close()
        [event] = hooks.events()
        assert event["event"] == "run_crashed" and event["details"]["status"] == "crashed"
        assert "KeyError" in event["summary"] and "13812345678" not in json.dumps(event)
        assert _value(_samples(tmp_path / "m.prom"), "crmbridge_runs_total", job=JOB, status="crashed") == 1
        text = log_file.read_text()
        assert f"run of job {JOB} crashed" in text and "13812345678" not in text


def test_a_dry_run_is_logged_but_neither_counted_nor_notified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              root_logging: None) -> None:
    from crmbridge.sync.engine import run_job

    monkeypatch.setenv("CRMBRIDGE_TEST_HOOK_SECRET", HOOK_SECRET)
    with WebhookReceiver() as hooks, demo(tmp_path / "demo", customers=4, bad_fraction=0.5,
                                          jobs={JOB: one_way_job()}) as env:
        edit_config(env, lambda d: _observed_config(d, log_file=Path("logs/run.log"), hook=hooks.url,
                                                    textfile="m.prom"))
        edit_config(env, lambda d: d["logging"].update(format="text", level="ERROR"))
        rt = bootstrap(env.config_path)
        try:
            with observe_run(rt, JOB, dry_run=True, floor=logging.INFO) as obs:   # as `crmbridge -v run --dry-run`
                obs.done(run_job(rt, JOB, dry_run=True))
        finally:
            rt.close()
        log_file = env.config_path.parent / "logs" / "run.log"   # relative to the configuration's folder
        assert f"dry run of job {JOB} starting [job={JOB}]" in log_file.read_text()   # -v beat level: ERROR
        assert hooks.received == [] and not (env.config_path.parent / "m.prom").exists()


def test_an_unwritable_log_file_is_a_configuration_error_naming_it(tmp_path: Path, root_logging: None) -> None:
    from crmbridge.config import load_config
    from crmbridge.core.errors import ConfigurationError
    from crmbridge.sync.observe import apply_logging

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with demo(tmp_path / "demo", customers=1) as env:
        edit_config(env, lambda d: d.update(logging={"file": str(blocker / "run.log")}))
        with pytest.raises(ConfigurationError, match=r"logging\.file: cannot write the log file .*not-a-folder"):
            apply_logging(load_config(env.config_path))
