"""Helpers of the scheduler and observability tests: a demo environment with one slow-enough job, scheduler
subprocesses (always terminated), polling, a loopback webhook receiver."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from crmbridge.demo import DemoEnvironment

JOB = "core_to_zoho"
NEVER = "0 3 * * *"  # a fire that does not happen during a test; runs come from --run-now


def one_way_job(**overrides: Any) -> dict[str, Any]:
    return {"source": "corebank.Customer", "target": "zoho_cn.Contacts",
            "source_mapping": "corebank_soap_customer.yaml", "target_mapping": "zoho_contacts.yaml",
            "consent_purpose": "SHARE_WITH_CRM_VENDOR", "match_rules": [["CN_RIC"], ["CN_USCC"]],
            "batch_size": 10, "schedule": NEVER, **overrides}


def demo(workdir: Path, *, customers: int = 60, latency_ms: float = 0.0, bad_fraction: float = 0.0,
         state_url: str | None = None, jobs: dict[str, Any] | None = None) -> DemoEnvironment:
    return DemoEnvironment(workdir, customers=customers, bad_fraction=bad_fraction, seed=5, latency_ms=latency_ms,
                           state_url=state_url, jobs=jobs or {JOB: one_way_job()})


def edit_config(env: DemoEnvironment, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(env.config_path.read_text(encoding="utf-8"))
    change(data)
    env.config_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class SchedulerProcess:
    """``crmbridge scheduler start`` in a child process; its output goes to a file."""

    def __init__(self, config: Path, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._out = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "crmbridge", "scheduler", "start", "--config", str(config), *args]
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=dict(os.environ),
                                     cwd=str(config.parent))

    @property
    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_output(self, text: str, timeout: float) -> None:
        wait_for(lambda: text in self.output or self.proc.poll() is not None, timeout, f"{text!r} in the log")
        assert text in self.output, f"process ended (rc {self.proc.returncode}) before {text!r}:\n{self.output}"

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Always called: SIGTERM, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._out.close()


@contextmanager
def schedulers() -> Iterator[Callable[..., SchedulerProcess]]:
    """Start scheduler processes with ``start(config, log, *args)``; every one is stopped at the end."""
    started: list[SchedulerProcess] = []

    def start(config: Path, log_path: Path, *args: str) -> SchedulerProcess:
        p = SchedulerProcess(config, log_path, *args)
        started.append(p)
        return p

    try:
        yield start
    finally:
        for p in started:
            p.stop()


class WebhookReceiver:
    """A loopback HTTP server recording every POST (body bytes and headers); answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append((body, {k: v for k, v in self.headers.items()}))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/crmbridge"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in list(self.received)]

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
