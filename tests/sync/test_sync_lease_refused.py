"""A run refused because another process holds the job's lease: its own error (LeaseHeldError), its own exit
code (7, not the 1 of a failed run), and a ``refused`` row in the runs table naming the holder; the scheduler
skips such a fire and still takes over a job whose holder died. On SQLite and PostgreSQL, with real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crmbridge.cli.actor import os_actor
from crmbridge.core.errors import FatalSyncError, LeaseHeldError
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import JobRunner, run_job
from crmbridge.sync.report import COMPLETED, EXIT_CODES

pytestmark = pytest.mark.slow   # slow tier: second processes racing for a job's lease

JOB = "core_to_zoho"
#: a holder on another host: never taken over as a dead process of this one
ELSEWHERE = "batch-host-2:4242:feedbeef"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _url(request: pytest.FixtureRequest, backend: str) -> str | None:
    return request.getfixturevalue("pg_url") if backend == "postgresql" else None


def _cli(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "crmbridge", *args, "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                            cwd=str(config.parent))


def _runs(config: Path) -> list[dict[str, Any]]:
    proc = _cli(config, "runs", "list", "--job", JOB, "--json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return list(json.loads(out))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_refused_by_the_lease_exits_7_and_is_recorded_refused(
        tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    with DemoEnvironment(tmp_path / "demo", customers=20, bad_fraction=0.0, seed=3, state_url=_url(request, backend),
                         jobs={JOB: _job()}) as env:
        rt = bootstrap(env.config_path)
        try:
            assert rt.store.acquire_lease(JOB, ELSEWHERE, 300)   # another process is running the job
            proc = _cli(env.config_path, "run", JOB)
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == EXIT_CODES["refused"] == 7, err
            assert "LeaseHeldError" in err and ELSEWHERE in err and "already running" in err
            assert env.zoho.stores["Contacts"].records == {}            # nothing read or written

            [row] = _runs(env.config_path)
            assert row["status"] == "refused" and ELSEWHERE in row["reason"] and row["finished_at"]
            assert row["actor"] == os_actor() and f"recorded as run {row['id']}" in err   # who ran it

            # in-process: the class (still a FatalSyncError for callers that catch those), the holder, the row
            with pytest.raises(LeaseHeldError) as caught:
                JobRunner(rt, JOB, actor="user:ops").run()
            assert isinstance(caught.value, FatalSyncError) and caught.value.holder == ELSEWHERE
            with rt.store.transaction() as tx:
                again = tx.get_run(int(caught.value.run_id or 0))
            assert again is not None and again["status"] == "refused" and again["actor"] == "user:ops"

            # the holder finishes: the next run goes through, and the refused rows stay in the history
            rt.store.release_lease(JOB, ELSEWHERE)
            assert run_job(rt, JOB).status in COMPLETED
            with rt.store.transaction() as tx:
                assert [r["status"] for r in tx.list_runs(JOB)][1:] == ["refused", "refused"]
        finally:
            rt.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_two_processes_one_runs_the_other_is_refused(
        tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    # slow simulators: the first run lasts several seconds, longer than the second process takes to start
    with DemoEnvironment(tmp_path / "demo", customers=30, bad_fraction=0.0, seed=4, state_url=_url(request, backend),
                         latency_ms=400, jobs={JOB: _job(batch_size=2)}) as env:
        rt = bootstrap(env.config_path)
        try:
            first = _cli(env.config_path, "run", JOB)
            deadline = time.monotonic() + 60
            while rt.store.lease_holder(JOB) is None:          # the first process took the lease: it is running
                assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1]
                time.sleep(0.05)
            second = _cli(env.config_path, "run", JOB)
            _, err2 = second.communicate(timeout=120)
            _, err1 = first.communicate(timeout=300)
            assert second.returncode == 7, err2
            assert first.returncode in (EXIT_CODES["succeeded"], EXIT_CODES["partial"]), err1
            rows = _runs(env.config_path)
            assert sorted(r["status"] for r in rows) == sorted(["refused", rows[-1]["status"]])
            assert rows[-1]["status"] in COMPLETED      # the first run, started first
            refused = next(r for r in rows if r["status"] == "refused")
            assert f":{first.pid}:" in refused["reason"]  # the holder named is the first process
        finally:
            rt.close()


def test_the_scheduler_skips_a_refused_fire_and_still_takes_over_a_dead_holder(tmp_path: Path) -> None:
    from crmbridge.sync.runners.scheduler import SchedulerOptions, SchedulerService

    with DemoEnvironment(tmp_path / "demo", customers=12, bad_fraction=0.0, seed=5,
                         jobs={JOB: _job(schedule="0 3 * * *")}) as env:
        service = SchedulerService(env.config_path, SchedulerOptions(lease_ttl=5, poll_interval=0.2))
        service.start()
        try:
            rt = service.rt
            assert rt.store.acquire_lease(JOB, ELSEWHERE, 300)
            fired = datetime.now(UTC)
            assert service.run_job(JOB, fired_at=fired) is None                   # skipped, not crashed
            assert service.metrics.sample("crmbridge_lease_skips_total", {"job": JOB}) == 1
            with rt.store.transaction() as tx:
                assert tx.list_runs(JOB) == []     # a skipped fire is not a run (no row for every HA fire)
            # meanwhile someone runs the job by hand and is refused: that attempt is recorded...
            proc = _cli(env.config_path, "run", JOB)
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 7, err
            # ...the holder dies without finishing a run: the skipped fire is looked at again and served by this
            # process (the refused manual run, finished after the fire, did not serve it)
            rt.store.release_lease(JOB, ELSEWHERE)
            service._check_after_lease(JOB, fired)
            with rt.store.transaction() as tx:
                rows = tx.list_runs(JOB)
            assert [r["status"] for r in rows][1:] == ["refused"] and rows[0]["status"] in COMPLETED, rows
            assert rows[0]["actor"] == "scheduler" and rows[1]["actor"] == os_actor()
        finally:
            service.shutdown()


def _job(**overrides: Any) -> dict[str, Any]:
    return {"source": "corebank.Customer", "target": "zoho_cn.Contacts",
            "source_mapping": "corebank_soap_customer.yaml", "target_mapping": "zoho_contacts.yaml",
            "consent_purpose": "SHARE_WITH_CRM_VENDOR", "match_rules": [["CN_RIC"], ["CN_USCC"]],
            "batch_size": 10, **overrides}


@pytest.mark.postgres
def test_dispatch_refused_by_the_lease_raises_lease_held_and_is_recorded(tmp_path: Path, pg_url: str) -> None:
    """Distributed mode's dispatcher refuses the same way (its own run row, the holder named, exit code 7)."""
    import yaml

    from crmbridge.cli.main import exit_code_for
    from crmbridge.sync.runners.distributed import dispatch

    with DemoEnvironment(tmp_path / "demo", customers=5, bad_fraction=0.0, seed=6, state_url=pg_url,
                         jobs={JOB: _job()}) as env:
        data = yaml.safe_load(env.config_path.read_text(encoding="utf-8"))
        # never reached: the refusal comes before anything is sent
        data["distributed"] = {"broker_url": "redis://127.0.0.1:6379/0", "queue": "lease-refused-test"}
        env.config_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        rt = bootstrap(env.config_path)
        try:
            assert rt.store.acquire_lease(JOB, ELSEWHERE, 300)
            with pytest.raises(LeaseHeldError) as caught:
                dispatch(rt, JOB, actor="dispatcher")
            assert caught.value.holder == ELSEWHERE and exit_code_for(caught.value) == 7
            with rt.store.transaction() as tx:
                [row] = tx.list_runs(JOB)
            assert (row["id"], row["status"], row["actor"]) == (caught.value.run_id, "refused", "dispatcher")
            assert ELSEWHERE in row["error_summary"]
            assert rt.store.lease_holder(JOB)["holder"] == ELSEWHERE   # the holder's lease is left alone
        finally:
            rt.close()
