"""``crmbridge scheduler start`` as real processes against simulators on loopback and a shared state database.

Every test has a hard timeout and stops its children (SIGTERM, then SIGKILL) whatever happens.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from scheduler_support import JOB, demo, edit_config, one_way_job, schedulers, wait_for
from sqlalchemy.exc import SQLAlchemyError

from crmbridge.config import load_config
from crmbridge.core.errors import FatalSyncError
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.reconcile import reconcile
from crmbridge.sync.runners.scheduler import job_status
from crmbridge.sync.state.store import StateStore

pytestmark = pytest.mark.slow   # slow tier: scheduler processes started, signalled and killed


def _complete_without_duplicates(env) -> int:  # type: ignore[no-untyped-def]
    """Reconciles the job (every source customer that belongs in Zoho is there, nothing extra) and checks no party
    is in Zoho twice; returns the number of Zoho contacts."""
    rt = bootstrap(env.config_path, migrate=False)
    try:
        rep = reconcile(rt, JOB)
    finally:
        rt.close()
    assert rep.complete, (rep.missing, rep.extra, rep.different)
    keys = Counter(str(r.get("Party_ID")) for r in env.zoho.stores["Contacts"].records.values())
    assert [k for k, n in keys.items() if n > 1] == []
    return int(env.zoho.count("Contacts"))


def _runs(url: str) -> list[dict]:  # type: ignore[type-arg]
    store = StateStore.from_url(url)
    try:
        with store.transaction() as tx:
            return list(reversed(tx.list_runs(JOB)))
    finally:
        store.dispose()


def _status(config: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    """``job_status`` read straight from the state database ({} while the scheduler has not created it yet)."""
    cfg = load_config(config)
    store = StateStore.from_url(cfg.state.url)
    try:
        return {r["job"]: r for r in job_status(SimpleNamespace(config=cfg, store=store))}
    except (SQLAlchemyError, FatalSyncError):   # the store's "state database unavailable" while it is migrated
        return {}
    finally:
        store.dispose()


def test_schedules_load_reload_and_survive_a_broken_file(tmp_path: Path) -> None:
    with demo(tmp_path / "demo") as env, schedulers() as start:
        sched = start(env.config_path, tmp_path / "a.log", "--poll-interval", "0.3")
        sched.wait_output("scheduler", 30)
        wait_for(lambda: _status(env.config_path).get(JOB, {}).get("next_run"), 30, "the schedule stored")
        assert _status(env.config_path)[JOB]["next_run"].endswith("T03:00:00+00:00")

        # reschedule one job, add another: picked up without a restart
        edit_config(env, lambda d: (d["jobs"][JOB].update(schedule="30 4 * * *"),
                                    d["jobs"].update(second=one_way_job(schedule="15 5 * * *"))))
        wait_for(lambda: (_status(env.config_path).get("second") or {}).get("next_run"), 20, "job added")
        now = _status(env.config_path)
        assert now[JOB]["next_run"].endswith("T04:30:00+00:00")
        assert now["second"]["next_run"].endswith("T05:15:00+00:00")

        # remove it again; disable the first one
        edit_config(env, lambda d: (d["jobs"].pop("second"), d["jobs"][JOB].update(enabled=False)))
        wait_for(lambda: _status(env.config_path)[JOB]["next_run"] is None, 20, "job unscheduled")
        assert "second" not in _status(env.config_path)

        # a broken file is reported and the schedules in force are kept
        edit_config(env, lambda d: d["jobs"][JOB].update(enabled=True))
        wait_for(lambda: _status(env.config_path)[JOB]["next_run"], 20, "job scheduled again")
        good = env.config_path.read_text(encoding="utf-8")
        env.config_path.write_text(good.replace("30 4 * * *", "99 99 * * *"), encoding="utf-8")
        sched.wait_output("is not valid; keeping the schedules in force", 20)
        assert sched.proc.poll() is None
        env.config_path.write_text(good, encoding="utf-8")

        # the status command shows the rich table
        out = subprocess.run([sys.executable, "-m", "crmbridge", "scheduler", "status", "--config",
                              str(env.config_path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert JOB in out.stdout and "30 4 * * *" in out.stdout and "next run" in out.stdout

        sched.signal(signal.SIGTERM)
        assert sched.wait(20) == 0


def test_sigterm_ends_the_run_after_a_committed_batch(tmp_path: Path) -> None:
    with demo(tmp_path / "demo", latency_ms=150) as env, schedulers() as start:
        url = load_config(env.config_path).state.url
        sched = start(env.config_path, tmp_path / "a.log", "--run-now", "--lease-ttl", "3")
        wait_for(lambda: env.zoho.count("Contacts") >= 10, 40, "a first batch written")
        sched.signal(signal.SIGTERM)
        assert sched.wait(30) == 0, sched.output
        [run] = _runs(url)
        assert run["status"] == "stopped", sched.output       # recorded as the report said it
        written = env.zoho.count("Contacts")
        assert 0 < written and run["counts"]["read"] < 60    # it really stopped midway
        assert "stopped on request after a committed batch" in sched.output
        # the cursor covers exactly what was committed: the next run completes the job, with no duplicate
        rt = bootstrap(env.config_path)
        try:
            report = run_job(rt, JOB)
        finally:
            rt.close()
        assert report.status == "succeeded"
        assert _complete_without_duplicates(env) == written + report.actions["created"]


def _two_schedulers_one_run(tmp_path: Path, state_url: str | None) -> None:
    with demo(tmp_path / "demo", customers=30, latency_ms=40, state_url=state_url) as env, schedulers() as start:
        url = load_config(env.config_path).state.url
        opts = ("--lease-ttl", "2", "--poll-interval", "0.5")
        a, b = start(env.config_path, tmp_path / "a.log", *opts), start(env.config_path, tmp_path / "b.log", *opts)
        for p in (a, b):
            p.wait_output("scheduled job(s)", 60)
        for p in (a, b):                                     # both fire the job at the same moment
            p.signal(signal.SIGUSR1)
        wait_for(lambda: "is running elsewhere" in a.output + b.output, 30, "one of them skipping the fire")
        winner, loser = (a, b) if "is running elsewhere" in b.output else (b, a)
        winner.wait_output(f"run 1 of job {JOB} succeeded", 60)
        loser.wait_output("was served by run 1", 20)
        runs = _runs(url)
        assert [(r["id"], r["status"]) for r in runs] == [(1, "succeeded")], (a.output, b.output)
        assert "run 2 " not in a.output + b.output
        _complete_without_duplicates(env)
        for p in (a, b):
            p.signal(signal.SIGTERM)
            assert p.wait(20) == 0


def test_two_schedulers_on_one_sqlite_file_run_a_job_once(tmp_path: Path) -> None:
    _two_schedulers_one_run(tmp_path, None)


@pytest.mark.postgres
def test_two_schedulers_on_postgresql_run_a_job_once(tmp_path: Path, pg_url: str) -> None:
    _two_schedulers_one_run(tmp_path, pg_url)


def test_a_killed_holder_s_job_resumes_in_another_process(tmp_path: Path) -> None:
    """Same host: the engine sees the holder's process is gone and takes its lease over at once."""
    with demo(tmp_path / "demo", customers=40, latency_ms=100) as env, schedulers() as start:
        url = load_config(env.config_path).state.url
        opts = ("--lease-ttl", "30", "--poll-interval", "0.5")  # a long TTL: the takeover must not wait for it
        a = start(env.config_path, tmp_path / "a.log", "--run-now", *opts)
        b = start(env.config_path, tmp_path / "b.log", *opts)
        b.wait_output("scheduled job(s)", 60)
        wait_for(lambda: env.zoho.count("Contacts") >= 10, 40, "A's first batch written")
        a.proc.kill()                                        # a crash: no release, no cleanup
        a.wait(10)
        assert _status(env.config_path)[JOB]["lease_holder"], "the dead holder's lease is still in force"
        b.signal(signal.SIGUSR1)
        b.wait_output("taking over the lease of", 20)          # the engine: its process is gone
        b.wait_output(f"run 2 of job {JOB} succeeded", 60)
        runs = _runs(url)
        assert [(r["id"], r["status"]) for r in runs] == [(1, "crashed"), (2, "succeeded")]
        assert "resumed by run 2" in (runs[0]["error_summary"] or "")
        _complete_without_duplicates(env)                    # resumed from the cursor: nothing twice, nothing lost
        b.signal(signal.SIGTERM)
        assert b.wait(20) == 0


def test_a_remote_holder_s_lease_expires_and_the_job_resumes_here(tmp_path: Path) -> None:
    """Another host's scheduler died mid-run: its lease and its run row stay behind until the lease expires."""
    with demo(tmp_path / "demo", customers=20) as env, schedulers() as start:
        url = load_config(env.config_path).state.url
        sched = start(env.config_path, tmp_path / "a.log", "--lease-ttl", "3", "--poll-interval", "0.5")
        sched.wait_output("scheduled job(s)", 60)
        store = StateStore.from_url(url)                      # the other host's run, and its lease
        try:
            with store.transaction() as tx:
                dead_run = tx.start_run(JOB, actor="scheduler")
            assert store.acquire_lease(JOB, "otherhost:4242:deadbeef", ttl_seconds=3)
        finally:
            store.dispose()
        sched.signal(signal.SIGUSR1)
        sched.wait_output("lease held by otherhost:4242:deadbeef", 20)
        sched.wait_output("taking the job over", 20)
        sched.wait_output(f"run {dead_run + 1} of job {JOB} succeeded", 40)
        runs = _runs(url)
        assert [(r["id"], r["status"]) for r in runs] == [(dead_run, "crashed"), (dead_run + 1, "succeeded")]
        _complete_without_duplicates(env)
        sched.signal(signal.SIGTERM)
        assert sched.wait(20) == 0
