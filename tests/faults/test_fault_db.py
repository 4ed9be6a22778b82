"""State database faults in the middle of a run (issue 9): SQLite locked by another process for longer than the
busy timeout, PostgreSQL connections dropped mid-transaction. The run fails cleanly (a failed run with a clear
error, no traceback escaping) or gets through; nothing is half-written (the invariants of fault_helpers hold right
after), and the next run completes the work exactly once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from fault_helpers import check_final, check_progress, truth
from sqlalchemy import create_engine, text

from crmbridge.core.errors import FatalSyncError
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.report import COMPLETED, RunReport

pytestmark = pytest.mark.slow   # slow tier: state database locked and dropped mid-run

BAD = 0.1
DATA_SEED = 11
CUSTOMERS = 150


def _upserts(env: DemoEnvironment) -> int:
    return env.zoho.requests_seen["POST /crm/v8/Contacts/upsert"]


def _when(cond, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.002)
    return True


def test_sqlite_locked_longer_than_the_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    t = truth(CUSTOMERS, DATA_SEED, BAD, "core_to_zoho")
    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=BAD, seed=DATA_SEED,
                         state_url=f"sqlite:///{db}?timeout=0.3") as env:
        rt = bootstrap(env.config_path)
        held = threading.Event()
        # Zoho answers slowly, so the lock below is surely held before the engine records the batch it is writing
        env.zoho.knobs.latency_ms = 400

        def lock_it() -> None:
            if not _when(lambda: _upserts(env) >= 2):
                return
            other = sqlite3.connect(db, timeout=10, isolation_level=None)
            try:
                other.execute("BEGIN EXCLUSIVE")   # another process holding the write lock
                held.set()
                time.sleep(2.0)
                other.execute("COMMIT")
            finally:
                other.close()

        locker = threading.Thread(target=lock_it)
        try:
            locker.start()
            report = run_job(rt, "core_to_zoho")
            locker.join()
            assert held.is_set(), "the lock was never taken: the test proves nothing"
            assert report.status == "failed", "a run that could not record its work must not succeed"
            assert report.error and "locked" in report.error.lower(), report.error
            check_progress(env, rt, "core_to_zoho", t)       # nothing half-written
            again = run_job(rt, "core_to_zoho")
            assert again.status in COMPLETED, again.error
            check_final(env, rt, "core_to_zoho", t)
        finally:
            locker.join()
            rt.close()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("job", ["core_to_zoho", "core_fxiaoke"])
def test_postgresql_connections_dropped_mid_transaction(tmp_path: Path, pg_url: str, job: str) -> None:
    t = truth(CUSTOMERS, DATA_SEED, BAD, job)
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=BAD, seed=DATA_SEED,
                         state_url=pg_url) as env:
        # each write call takes a while, so a run spends its time between transactions as well as in them, on a
        # fast machine too (the killer must find runs mid-work, not only runs already done)
        env.zoho.knobs.latency_ms = env.fxiaoke.knobs.latency_ms = 20
        rt = bootstrap(env.config_path)
        killed: list[int] = []
        stop = threading.Event()
        armed = threading.Event()   # set while a run is going: the test's own checks are not the target
        arming = threading.Lock()

        def terminate() -> None:
            """Terminate every other backend of the database whenever one is inside a transaction."""
            with admin.connect() as conn:
                while not stop.is_set() and len(killed) < 5:
                    with arming:
                        rows = conn.execute(text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND pid <> pg_backend_pid() AND state IN ('active', "
                            "'idle in transaction') AND xact_start IS NOT NULL")).all() if armed.is_set() else []
                    if rows:
                        killed.append(len(rows))
                        time.sleep(0.5)
                    time.sleep(0.001)

        killer = threading.Thread(target=terminate)
        try:
            reports = []
            killer.start()
            for _ in range(8):
                armed.set()
                try:
                    reports.append(run_job(rt, job))
                except FatalSyncError as exc:   # the drop hit the run's own start: a clean, one-line error
                    assert "state database unavailable" in str(exc)
                    reports.append(RunReport(run_id="-", job=job, status="failed", error=str(exc)))
                finally:
                    with arming:
                        armed.clear()
                if reports[-1].status in COMPLETED and (len(killed) >= 5 or not killer.is_alive()):
                    break
                check_progress(env, rt, job, t)   # after each run, failed or not: nothing half-written
            stop.set()
            killer.join()
            assert killed, "no connection was dropped: the test proves nothing"
            failed = [r for r in reports if r.status == "failed"]
            assert all(r.error for r in failed)
            print(f"\n[fault] pg drops {job}: terminated={killed} runs={[r.status for r in reports]}")
            final = run_job(rt, job)
            assert final.status in COMPLETED, final.error
            check_final(env, rt, job, t)
        finally:
            stop.set()
            killer.join()
            rt.close()
            admin.dispose()
