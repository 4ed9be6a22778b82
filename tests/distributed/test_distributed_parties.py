"""Distributed mode without a broker: party locks, batches of one person run side by side, refusals.

Here the dispatcher's tasks run on two in-process worker threads, each with its own runtime (as two worker
processes would have): the code under test is crmbridge's own; only Celery's transport is left out. The broker
tier (test_distributed_workers.py) runs the same code in real ``crmbridge worker`` processes.
"""

from __future__ import annotations

import queue
import threading
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from crmbridge.adapters.corebank_soap.simulator import CustomerStore
from crmbridge.core.errors import ConfigurationError
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.report import COMPLETED
from crmbridge.sync.runners import distributed
from crmbridge.sync.runners.distributed import dispatch, dist_batches, process_batch
from crmbridge.sync.state.ledger import Ledger
from crmbridge.sync.state.locks import lock_id
from crmbridge.sync.state.store import StateStore

JOB = "core_to_zoho"
PERSONAL = ("name", "id_number", "mobile", "email", "street")
BOOKKEEPING = {"custno", "modno", "stamp", "maker", "maker_stamp", "checker", "record_stat", "auth_stat", "created"}


class ThreadWorkers:
    """Stands in for Celery: ``send_task`` queues a batch id; N threads, each with its own runtime, run them."""

    def __init__(self, config_path: Path, n: int = 2, *, hold_until: int = 0) -> None:
        self.conf = types.SimpleNamespace(crmbridge_queue="in-process")
        self.hold_until = hold_until    # the workers start once this many batches are queued (a backlog)
        self.go = threading.Event()
        self.queue: queue.Queue[int | None] = queue.Queue()
        self.outcomes: list[tuple[str, int, str]] = []
        self.errors: list[BaseException] = []
        self.staged: list[bytes] = []
        self.runtimes = [bootstrap(config_path, migrate=False) for _ in range(n)]
        self.threads = [threading.Thread(target=self._work, args=(f"t{i}", rt), daemon=True)
                        for i, rt in enumerate(self.runtimes)]
        for t in self.threads:
            t.start()

    def send_task(self, name: str, args: list[Any], **_: Any) -> None:
        assert name == distributed.TASK_NAME and len(args) == 1 and isinstance(args[0], int)  # ids only
        with self.runtimes[0].store.transaction() as tx:
            self.staged.append(tx.connection.execute(
                select(dist_batches.c.payload).where(dist_batches.c.id == args[0])).scalar_one())
        self.queue.put(args[0])
        if len(self.staged) >= self.hold_until:
            self.go.set()

    def _work(self, name: str, rt: Runtime) -> None:
        self.go.wait(timeout=60)
        while (batch_id := self.queue.get()) is not None:
            try:
                self.outcomes.append((name, batch_id, process_batch(rt, batch_id, worker=name)))
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)

    def close(self) -> None:
        self.go.set()
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join(timeout=30)
        for rt in self.runtimes:
            rt.close()


def _add_distributed(config_path: Path, *, batch_size: int) -> None:
    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    data["jobs"][JOB]["batch_size"] = batch_size
    data["distributed"] = {"broker_url": "redis://127.0.0.1:6379/15", "batch_timeout_seconds": 5,
                           "lock_timeout_seconds": 30, "wait_timeout_seconds": 60}
    config_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _make_duplicates(env: DemoEnvironment, pairs: list[tuple[int, int]]) -> None:
    """Customer b becomes a second core record (CIF) of customer a's person: same data, another number."""
    from datetime import datetime

    # a fixed core clock in the past: each touch is stamped a second after the last, never in the future (a
    # consent captured in the future is not in force yet)
    env.core.store.clock = lambda: datetime(2025, 7, 1, 9, 0, 0)
    for a, b in pairs:
        ra = env.core.store.get(CustomerStore.custno(a))
        env.core.store.touch(CustomerStore.custno(a))   # a then b: neighbours in extraction order
        env.core.store.touch(CustomerStore.custno(b), **{k: v for k, v in ra.items() if k not in BOOKKEEPING})


def _individuals(env: DemoEnvironment, n: int) -> list[int]:
    out = []
    for i in range(n):
        rec = env.core.store.get(CustomerStore.custno(i))
        if rec["ctype"] == "I" and rec["consent_crm"] == "Y" and not rec.get("bad"):
            out.append(i)
    return out


def _pairs_in_zoho(env: DemoEnvironment, rt: Runtime, pairs: list[tuple[int, int]]) -> list[int]:
    """For each pair: how many Zoho contacts its party has (0: not pushed, e.g. no consent; never 2)."""
    out = []
    with rt.store.transaction() as tx:
        for a, b in pairs:
            pa = tx.get_xref("corebank", "Customer", CustomerStore.custno(a))
            pb = tx.get_xref("corebank", "Customer", CustomerStore.custno(b))
            assert pa is not None and pa == pb, "one person got two parties"
            out.append(len(env.zoho.find("Contacts", "Party_ID", pa)))
    assert max(out) == 1, "a person is in Zoho twice"
    return out


@pytest.mark.slow   # slow tier: distributed: concurrent sessions
@pytest.mark.postgres
def test_party_locks_serialise_overlapping_batches_and_die_with_their_session(pg_url) -> None:  # type: ignore[no-untyped-def]
    a = types.SimpleNamespace(store=StateStore.from_url(pg_url))
    b = types.SimpleNamespace(store=StateStore.from_url(pg_url))
    try:
        with distributed._party_locks(a, {"party|p1", "src|core|C|1"}, 5):
            with pytest.raises(distributed._LocksBusy):
                with distributed._party_locks(b, {"src|core|C|2", "party|p1"}, 0.3):
                    pass
            with distributed._party_locks(b, {"src|core|C|2"}, 0.3):   # disjoint: no wait
                pass
        with distributed._party_locks(b, {"party|p1"}, 0.3):           # released with the block
            pass
        # a worker killed while holding locks: its session ends and its locks go with it
        conn = a.store.engine.connect()
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({lock_id('party|p9')})")
        with pytest.raises(distributed._LocksBusy):
            with distributed._party_locks(b, {"party|p9"}, 0.3):
                pass
        conn.invalidate()
        conn.close()
        a.store.dispose()
        with distributed._party_locks(b, {"party|p9"}, 2):
            pass
    finally:
        a.store.dispose()
        b.store.dispose()


@pytest.mark.slow   # slow tier: distributed: concurrent batches
@pytest.mark.postgres
def test_two_records_of_one_person_in_concurrent_batches_make_one_party(tmp_path, pg_url) -> None:  # type: ignore[no-untyped-def]
    n = 16
    with DemoEnvironment(tmp_path / "demo", customers=n, bad_fraction=0.0, seed=5, state_url=pg_url,
                         latency_ms=80) as env:
        pairs: list[tuple[int, int]] = []
        for i in _individuals(env, n - 1):
            if not pairs or i > pairs[-1][1]:
                pairs.append((i, i + 1))
        assert len(pairs) >= 3
        _make_duplicates(env, pairs)
        _add_distributed(env.config_path, batch_size=1)   # each record its own batch: the pairs run side by side
        rt = bootstrap(env.config_path)
        pool = ThreadWorkers(env.config_path, 2, hold_until=n)
        try:
            report = dispatch(rt, JOB, app=pool, poll_seconds=0.05)
        finally:
            pool.close()
        assert not pool.errors, pool.errors
        assert report.status in COMPLETED, report.error
        assert {who for who, _, what in pool.outcomes if what == "done"} == {"t0", "t1"}   # both worked
        in_zoho = _pairs_in_zoho(env, rt, pairs)
        with rt.store.transaction() as tx:
            ledger = Ledger(tx.connection, rt.signer, cipher=rt.cipher)
            assert ledger.verify(rt.signer.public_key).ok
        party_ids = [r["Party_ID"] for r in env.zoho.stores["Contacts"].records.values()]
        assert len(party_ids) == len(set(party_ids))
        # the same as one process does with the same data
        with DemoEnvironment(tmp_path / "single", customers=n, bad_fraction=0.0, seed=5) as single:
            _make_duplicates(single, pairs)
            rt1 = bootstrap(single.config_path)
            try:
                assert run_job(rt1, JOB).status in COMPLETED
                assert single.zoho.count("Contacts") == env.zoho.count("Contacts")
                assert _pairs_in_zoho(single, rt1, pairs) == in_zoho
            finally:
                rt1.close()
        # staged records were encrypted: no personal value in clear in any payload
        clear = [str(env.core.store.get(CustomerStore.custno(i)).get(k) or "") for i in range(n) for k in PERSONAL]
        # sealed payloads are binary (deflated, then encrypted): no personal value's bytes appear in them
        blob = b"".join(pool.staged)
        assert pool.staged and not [v for v in clear if len(v) >= 4 and v.encode("utf-8") in blob]
        rt.close()


def test_distributed_mode_refuses_sqlite_missing_block_and_two_way_jobs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with DemoEnvironment(tmp_path / "demo", customers=4) as env:
        rt = bootstrap(env.config_path)
        try:
            with pytest.raises(ConfigurationError, match="distributed:"):
                dispatch(rt, JOB)
        finally:
            rt.close()
        _add_distributed(env.config_path, batch_size=10)
        rt = bootstrap(env.config_path)
        try:
            with pytest.raises(ConfigurationError, match="PostgreSQL"):
                dispatch(rt, JOB)
            rt.config.state.url = "postgresql+psycopg://postgres@127.0.0.1:5432/unused"
            with pytest.raises(ConfigurationError, match="two-way"):
                dispatch(rt, "core_fxiaoke")
        finally:
            rt.close()


def test_staged_records_round_trip_with_their_types() -> None:
    from datetime import UTC, date, datetime
    from decimal import Decimal

    from crmbridge.adapters.base import RawRecord

    raw = RawRecord("Customer", "000123", {"a": datetime(2024, 5, 1, 8, tzinfo=UTC), "b": date(1990, 1, 2),
                                           "c": Decimal("12.50"), "d": [{"$t": "x", "e": b"\x00\x01"}], "f": None},
                    modified_at=datetime(2024, 5, 1, 8, 0, 1, tzinfo=UTC), version="7", deleted=True)
    import json

    (back,) = distributed._unpack(json.loads(json.dumps(distributed._pack([raw]))))
    assert back == raw


@pytest.mark.postgres
def test_a_fixed_bad_record_is_retried_from_the_dead_letters_as_in_one_process(tmp_path, pg_url) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from dist_helpers import BAD, CUSTOMERS, SEED, custno, rejected, share_granted, synthetic

    from crmbridge.sync.state.ledger import Action

    with DemoEnvironment(tmp_path / "demo", customers=CUSTOMERS, bad_fraction=BAD, seed=SEED,
                         state_url=pg_url) as env:
        _add_distributed(env.config_path, batch_size=7)
        rt = bootstrap(env.config_path)
        pool = ThreadWorkers(env.config_path, 2)
        try:
            first = dispatch(rt, JOB, app=pool, poll_seconds=0.05)
            assert first.status in COMPLETED, first.error
            with rt.store.transaction() as tx:
                letters = tx.list_dead_letters(JOB, status=["open"], limit=1000)
            assert {d["external_id"] for d in letters} == rejected()
            bad = next(custno(i) for i in range(CUSTOMERS) if synthetic(i).defect == "malformed_mobile"
                       and synthetic(i).is_individual and share_granted(synthetic(i)))
            env.core.store.touch(bad, mobile="13912345678")
            letter = next(d for d in letters if d["external_id"] == bad)
            with rt.store.transaction() as tx:
                tx.mark_dead_letter(letter["id"], "open", next_attempt_at=datetime.now(UTC))
            second = dispatch(rt, JOB, app=pool, poll_seconds=0.05)
        finally:
            pool.close()
        assert not pool.errors, pool.errors
        assert second.status in COMPLETED, second.error
        assert second.actions[Action.CREATED] == 1
        with rt.store.transaction() as tx:
            assert tx.get_dead_letter(letter["id"])["status"] == "resolved"
            pid = tx.get_xref("corebank", "Customer", bad)
            assert Ledger(tx.connection, rt.signer, cipher=rt.cipher).verify(rt.signer.public_key).ok
        assert len(env.zoho.find("Contacts", "Party_ID", pid)) == 1
        rt.close()
