"""The scheduler service in-process: a stored crontab schedule firing through APScheduler's SQLAlchemy store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from scheduler_support import JOB, demo, wait_for

from crmbridge.config import load_config
from crmbridge.sync.runners.scheduler import JOB_ID_PREFIX, SchedulerOptions, SchedulerService
from crmbridge.sync.state.store import StateStore


def test_a_stored_schedule_fires_the_job(tmp_path: Path) -> None:
    with demo(tmp_path / "demo", customers=12) as env:
        service = SchedulerService(env.config_path, SchedulerOptions(lease_ttl=5, poll_interval=0.2))
        service.start()
        try:
            [stored] = service.scheduler.get_jobs(jobstore="default")
            assert stored.id == JOB_ID_PREFIX + JOB and str(stored.trigger).startswith("cron[")
            assert stored.func_ref == "crmbridge.sync.runners.scheduler:fire"   # what another process unpickles
            assert (stored.coalesce, stored.max_instances, stored.misfire_grace_time) == (True, 1, 300)
            # the crontab's next fire, brought forward: APScheduler fires it from the shared store
            service.scheduler.modify_job(stored.id, jobstore="default", next_run_time=datetime.now(UTC))
            url = load_config(env.config_path).state.url

            def finished() -> bool:
                store = StateStore.from_url(url)
                try:
                    with store.transaction() as tx:
                        return any(r["status"] == "succeeded" for r in tx.list_runs(JOB))
                finally:
                    store.dispose()

            wait_for(lambda: finished() and service.metrics.sample(
                "crmbridge_runs_total", {"job": JOB, "status": "succeeded"}), 30, "the fired run to finish")
            again = service.scheduler.get_job(stored.id, jobstore="default")
            assert again.next_run_time.hour == 3 and again.next_run_time.minute == 0   # back on the crontab
            assert service.metrics.sample("crmbridge_runs_total", {"job": JOB, "status": "succeeded"}) == 1
            assert service.sync_jobs() == {"added": [], "removed": [], "rescheduled": []}   # idempotent
        finally:
            service.shutdown()
        assert not service.scheduler.running
