"""Distributed mode end to end: real ``crmbridge worker`` processes over RabbitMQ or Redis, state on PostgreSQL.

A job runs over two workers; one is SIGKILLed in the middle of a batch; the run must still end with exactly the
single-process result: every expected party in Zoho once, the same dead letters, a ledger that verifies, the
cursor at the end of the source.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from dist_helpers import (
    BAD,
    CUSTOMERS,
    RABBITMQ,
    REDIS,
    SEED,
    WORKER_HARD_TIMEOUT,
    add_distributed,
    delete_queue,
    expected_in_zoho,
    rejected,
    require_service,
    wait_ready,
    workers,
    zoho_by_source,
)
from sqlalchemy import select

from crmbridge.adapters.simulator import Fault
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.engine import iso, run_job
from crmbridge.sync.report import COMPLETED, EXIT_CODES
from crmbridge.sync.runners.distributed import BatchStatus, close_celery_app, dispatch, dist_batches, make_celery_app
from crmbridge.sync.state.ledger import Action, Ledger

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.slow]   # slow tier: Celery workers, one killed

JOB = "core_to_zoho"
BATCH = 4


def _single_process_result(tmp_path: Path) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Zoho contents and dead letters of the same job run in one process on a fresh environment."""
    with DemoEnvironment(tmp_path / "single", customers=CUSTOMERS, bad_fraction=BAD, seed=SEED) as env:
        rt = bootstrap(env.config_path)
        try:
            report = run_job(rt, JOB)
            assert report.status in COMPLETED, report.error
            with rt.store.transaction() as tx:
                letters = {d["external_id"] for d in tx.list_dead_letters(JOB, status=["open"], limit=1000)}
            return zoho_by_source(env, rt), letters
        finally:
            rt.close()


def _batches(rt: Any) -> list[dict[str, Any]]:
    b = dist_batches
    with rt.store.transaction() as tx:
        return [dict(r) for r in tx.connection.execute(select(
            b.c.id, b.c.seq, b.c.status, b.c.claimed_by, b.c.attempts, b.c.payload, b.c.counts)
            .order_by(b.c.seq)).mappings()]


def _run_and_kill(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, *, broker_url: str,
                  victim: int, via_cli: bool) -> None:
    queue = f"crmbridge-test-{uuid.uuid4().hex[:10]}"
    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=BAD, seed=SEED, state_url=pg_url,
                         latency_ms=60) as env:
        monkeypatch.setenv("CRMBRIDGE_TEST_BROKER_URL", broker_url)   # the worker processes inherit it
        add_distributed(env.config_path, broker_url="env:CRMBRIDGE_TEST_BROKER_URL", queue=queue, batch_size=BATCH)
        rt = bootstrap(env.config_path)            # migrates the fresh database before any worker starts
        app = make_celery_app(rt.config)
        try:
            with workers(env.config_path, [f"w1-{queue}", f"w2-{queue}"], tmp_path) as ws:
                wait_ready(app, ws)
                outcome: dict[str, Any] = {}

                def coordinator() -> None:
                    try:
                        if via_cli:
                            done = subprocess.run(
                                [sys.executable, "-m", "crmbridge", "dispatch", JOB, "--config", str(env.config_path),
                                 "--json"], capture_output=True, text=True, timeout=WORKER_HARD_TIMEOUT)
                            outcome["exit"], outcome["stderr"] = done.returncode, done.stderr
                            outcome["report"] = json.loads(done.stdout) if done.stdout.strip() else {}
                        else:
                            outcome["report"] = dispatch(rt, JOB).as_dict()
                    except BaseException as exc:  # reported by the main thread
                        outcome["error"] = exc

                thread = threading.Thread(target=coordinator, daemon=True)
                thread.start()
                killed = ws[victim]
                deadline = time.monotonic() + 60
                killed_while: dict[str, Any] | None = None
                while time.monotonic() < deadline and thread.is_alive():
                    rows = _batches(rt)
                    mine = [r for r in rows if r["status"] == BatchStatus.RUNNING.value
                            and (r["claimed_by"] or "").startswith(killed.node + "/")]
                    done = [r for r in rows if r["status"] == BatchStatus.DONE.value]
                    pending = [r for r in rows if r["status"] == BatchStatus.PENDING.value]
                    if mine and done and pending:
                        # freeze first, then confirm the batch is still unfinished: the kill must land mid-batch
                        killed.freeze()
                        still = next(r for r in _batches(rt) if r["id"] == mine[0]["id"])
                        if still["status"] != BatchStatus.RUNNING.value:
                            killed.thaw()   # it finished between the two reads: wait for its next batch
                            continue
                        killed.kill()
                        killed_while = mine[0]
                        env.zoho.inject(Fault.THROTTLE, 2)  # the survivor meets them: retried, as in one process
                        break
                    time.sleep(0.02)
                assert killed_while is not None, "never caught the victim inside a batch with work left"
                thread.join(timeout=WORKER_HARD_TIMEOUT)
                assert not thread.is_alive(), "the dispatcher did not finish"
                survivor = ws[1 - victim]
                assert survivor.alive(), survivor.log()
                if "error" in outcome:
                    raise outcome["error"]
                report = outcome["report"]
                if via_cli:
                    assert outcome["exit"] == EXIT_CODES[report["status"]], outcome["stderr"]
                assert report["status"] in COMPLETED, f"{report.get('error')}\n{survivor.log()}"
                assert report["read"] == CUSTOMERS
                assert report["retries"] >= 1 or report["throttled"] >= 1

                # the killed worker's batch was taken over and finished; every batch is done, its records erased
                rows = _batches(rt)
                assert {r["status"] for r in rows} == {BatchStatus.DONE.value}
                again = next(r for r in rows if r["id"] == killed_while["id"])
                assert again["attempts"] >= 2 and again["claimed_by"].startswith(survivor.node + "/")
                assert all(r["payload"] is None for r in rows)
                assert {r["counts"]["worker"].split("/")[0] for r in rows} <= {survivor.node, killed.node}

                # the same result as one process: Zoho contents, dead letters
                got = zoho_by_source(env, rt)
                assert set(got) == expected_in_zoho()
                with rt.store.transaction() as tx:
                    letters = {d["external_id"] for d in tx.list_dead_letters(JOB, status=["open"], limit=1000)}
                    cursor = tx.get_cursor(JOB, "corebank.Customer")
                    runs = tx.list_runs(JOB)
                assert letters == rejected()
                single_zoho, single_letters = _single_process_result(tmp_path)
                assert got == single_zoho
                assert letters == single_letters

                # one verifying ledger; no party created twice; every expected party recorded
                with rt.store.transaction() as tx:
                    ledger = Ledger(tx.connection, rt.signer, cipher=rt.cipher)
                    assert ledger.verify(rt.signer.public_key).ok
                    entries = list(ledger.iter_entries(job=JOB))
                created = Counter(e["source_id"] for e in entries if e["action"] == Action.CREATED.value)
                assert max(created.values()) == 1
                written = {e["source_id"] for e in entries
                           if e["action"] in (Action.CREATED.value, Action.UPDATED.value)}
                assert written == expected_in_zoho()
                actors = {e["actor"] for e in entries}
                assert any(a.startswith(f"worker:{survivor.node}/") for a in actors)

                # the cursor is at the newest source record, the run closed as succeeded
                newest = max(r.modified_at for p in rt.adapter("corebank").extract("Customer") for r in p.records)
                assert cursor is not None and cursor.value is not None
                assert cursor.value == iso(newest)
                assert [r["status"] for r in runs] in (["succeeded"], ["partial"])

                # a second dispatch finds nothing new: no write at all
                upserts = env.zoho.requests_seen["POST /crm/v8/Contacts/upsert"]
                again_report = dispatch(rt, JOB)
                assert again_report.status in COMPLETED
                assert env.zoho.requests_seen["POST /crm/v8/Contacts/upsert"] == upserts
        finally:
            delete_queue(app, queue)
            close_celery_app(app, connections=True)
            rt.close()


def test_rabbitmq_two_workers_one_killed_mid_batch_matches_single_process(tmp_path, pg_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    require_service(RABBITMQ, "RabbitMQ")
    _run_and_kill(tmp_path, pg_url, monkeypatch, broker_url="amqp://guest:guest@127.0.0.1:5672//", victim=0,
                  via_cli=False)


def test_redis_two_workers_one_killed_mid_batch_matches_single_process(tmp_path, pg_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    require_service(REDIS, "Redis")
    _run_and_kill(tmp_path, pg_url, monkeypatch, broker_url="redis://127.0.0.1:6379/0", victim=1, via_cli=True)
