"""Helpers of the distributed-mode tests: real ``crmbridge worker`` processes, brokers, ground truth."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from crmbridge.canonical.synthetic import customer_at

CUSTOMERS = 60
BAD = 0.1
SEED = 11
RABBITMQ = ("127.0.0.1", 5672)
REDIS = ("127.0.0.1", 6379)
#: hard limit for any worker subprocess of a test
WORKER_HARD_TIMEOUT = 150.0
VOLATILE = {"id", "Party_ID", "Created_Time", "Modified_Time", "Last_Activity_Time", "Owner", "Created_By",
            "Modified_By"}


def require_service(address: tuple[str, int], what: str) -> None:
    """Fail (never skip) when a service the tier needs is down: CI starts it, so down means broken."""
    try:
        socket.create_connection(address, timeout=3).close()
    except OSError as exc:
        pytest.fail(f"{what} is not reachable on {address[0]}:{address[1]} ({exc}); the distributed tests need it "
                    "running (CI starts it)", pytrace=False)


# ------------------------------------------------------------------------------------------------ ground truth
def synthetic(i: int):  # type: ignore[no-untyped-def]
    return customer_at(i, SEED, BAD)


def custno(i: int) -> str:
    from crmbridge.adapters.corebank_soap.simulator import CustomerStore

    return CustomerStore.custno(i)


def share_granted(c: Any) -> bool:
    records = sorted((x for x in c.consents if x.purpose == "SHARE_WITH_CRM_VENDOR"), key=lambda x: x.captured_at)
    return bool(records) and records[-1].status == "GRANTED" and records[-1].withdrawn_at is None


def expected_in_zoho() -> set[str]:
    return {custno(i) for i in range(CUSTOMERS)
            if synthetic(i).is_individual and synthetic(i).should_validate and share_granted(synthetic(i))}


def rejected() -> set[str]:
    return {custno(i) for i in range(CUSTOMERS) if not synthetic(i).should_validate}


def zoho_by_source(env: Any, rt: Any) -> dict[str, dict[str, Any]]:
    """Zoho contacts keyed by the core customer number they came from, without volatile fields.

    Fails on a party present twice (a duplicate) or a contact crmbridge cannot trace back.
    """
    out: dict[str, dict[str, Any]] = {}
    with rt.store.transaction() as tx:
        for rec in env.zoho.stores["Contacts"].records.values():
            links = tx.xrefs_for_party(rec["Party_ID"], "corebank", "Customer")
            assert len(links) == 1, f"contact {rec['id']} does not trace back to one core customer"
            key = links[0][2]
            assert key not in out, f"core customer {key} is in Zoho twice"
            out[key] = {k: v for k, v in rec.items() if k not in VOLATILE}
    return out


# ------------------------------------------------------------------------------------------------ config
def add_distributed(config_path: Path, *, broker_url: str, queue: str, batch_size: int) -> None:
    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    data["jobs"]["core_to_zoho"]["batch_size"] = batch_size
    data["distributed"] = {"broker_url": broker_url, "queue": queue, "batch_timeout_seconds": 3,
                           "lock_timeout_seconds": 30, "visibility_timeout_seconds": 5, "wait_timeout_seconds": 120}
    config_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


# ------------------------------------------------------------------------------------------------ processes
class Worker:
    """One ``crmbridge worker`` process (its own process group: a kill takes its pool children too)."""

    def __init__(self, config_path: Path, name: str, log_dir: Path) -> None:
        self.name = name
        self.node = f"{name}@localhost"
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crmbridge", "worker", "--config", str(config_path), "--hostname", self.node,
             "--concurrency", "1", "--loglevel", "INFO"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def freeze(self) -> None:
        """SIGSTOP the worker's whole process group: it stops where it is, mid-batch or not."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the whole process group, no goodbye to the broker."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        finally:
            self._log.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        except OSError:
            return ""


@contextmanager
def workers(config_path: Path, names: list[str], log_dir: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for name in names:
            started.append(Worker(config_path, name, log_dir))
        yield started
    finally:
        for w in started:
            w.kill()


def wait_ready(app: Any, ws: list[Worker], timeout: float = 40.0) -> None:
    """Until every worker answers a ping (it consumes its queue then)."""
    deadline = time.monotonic() + timeout
    want = {w.node for w in ws}
    seen: set[str] = set()
    while time.monotonic() < deadline:
        for w in ws:
            assert w.alive(), f"worker {w.name} exited with {w.proc.returncode}:\n{w.log()}"
        replies = app.control.ping(destination=sorted(want - seen), timeout=1.0) or []
        for reply in replies:
            seen.update(reply)
        if seen >= want:
            return
    pytest.fail("workers not ready: " + "; ".join(f"{w.name}:\n{w.log()}" for w in ws if w.node not in seen))


def delete_queue(app: Any, queue: str) -> None:
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        try:
            channel.queue_purge(queue)
            channel.queue_delete(queue)
        except Exception:  # already gone
            pass
