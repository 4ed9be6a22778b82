"""Base of the vendor simulators: real HTTP on loopback, with knobs and injectable faults.

Each vendor's simulator (``crmbridge.adapters.<vendor>.simulator``) subclasses :class:`Simulator` and
implements :meth:`Simulator.handle`, rendering its vendor's paths, status codes, headers and bodies. The
base class owns the server thread, latency, random error rate, dropped connections and a queue of faults a
test injects (``sim.inject(Fault.THROTTLE, times=3)``); the vendor renders each fault in its own shape
through :meth:`Simulator.fault_response`.

Usage::

    with ZohoSimulator(Knobs(seed=7, records=500)) as sim:
        print(sim.url)
"""

from __future__ import annotations

import enum
import json
import random
import socket
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Fault", "Knobs", "Request", "Response", "Simulator"]


class Fault(enum.StrEnum):
    """Faults a test can inject; each vendor renders them in its own shape."""

    SERVER_ERROR = "server_error"        # the vendor's 5xx (or its HTTP-200 system error)
    THROTTLE = "throttle"                # the vendor's rate-limit answer
    TOKEN_EXPIRED = "token_expired"      # the vendor's invalid/expired token answer
    GARBAGE = "garbage"                  # HTTP 200 with a body that is not the vendor's format
    DROP = "drop"                        # connection closed without a response
    TIMEOUT_AFTER_APPLY = "timeout_after_apply"  # the write is applied, then the response is delayed past timeouts
    TRUNCATED = "truncated"              # headers promise more bytes than are sent, then the connection closes


@dataclass
class Knobs:
    """Simulator settings (all have command-line flags in ``crmbridge simulate``)."""

    seed: int = 1
    records: int = 100
    bad_fraction: float = 0.0
    latency_ms: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    token_lifetime: float | None = None
    rate_limit: float | None = None         # requests per second before the vendor's throttle answer
    concurrency_limit: int | None = None    # concurrent requests before the throttle answer
    timeout_delay: float = 5.0              # seconds TIMEOUT_AFTER_APPLY waits before answering
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]   # lower-cased names
    body: bytes
    client: str = ""

    def q(self, name: str, default: str | None = None) -> str | None:
        vals = self.query.get(name)
        return vals[0] if vals else default

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        h = {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}
        return cls(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), h)

    @classmethod
    def empty(cls, status: int) -> Response:
        return cls(status, b"", {})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def setup(self) -> None:   # once per connection
        super().setup()
        with self.server.sim.lock:
            self.server.sim.connections += 1

    def _serve(self) -> None:
        sim = self.server.sim
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                      {k.lower(): v for k, v in self.headers.items()}, body, self.client_address[0])
        resp = sim._dispatch(req)
        if resp is None:  # drop the connection without answering
            self.close_connection = True
            try:
                self.request.shutdown(socket.SHUT_RDWR)  # the client socket (socketserver)
            except OSError:
                pass
            return
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        truncated = resp.headers.pop("X-Sim-Truncate", None) is not None
        self.send_header("Content-Length", str(len(resp.body) * (2 if truncated else 1)))
        self.end_headers()
        if resp.body and self.command != "HEAD":
            self.wfile.write(resp.body)
        if truncated:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client gave up (its timeout, a dropped connection): nothing to report
        super().handle_error(request, client_address)


class Simulator:
    """A vendor simulator serving real HTTP on loopback.

    Subclasses implement :meth:`handle` and :meth:`fault_response`, and may override :meth:`banner`.
    ``requests_seen`` counts requests by ``"METHOD /path"`` so tests can assert call counts.
    """

    vendor: str = "generic"

    def __init__(self, knobs: Knobs | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.knobs = knobs or Knobs()
        self.host = host
        self.port = port
        self.rng = random.Random(self.knobs.seed)
        self.requests_seen: Counter[str] = Counter()
        #: TCP connections accepted (a client that keeps its connections alive opens few)
        self.connections = 0
        self.lock = threading.RLock()
        self._faults: deque[tuple[Fault, str | None]] = deque()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._inflight = 0
        self._window: deque[float] = deque()

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> Simulator:
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.vendor}-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def banner(self) -> list[str]:
        """Lines printed by ``crmbridge simulate`` on start: what URLs are served."""
        return [f"{self.vendor} simulator serving {self.url}"]

    # ---------------------------------------------------------------- faults
    def inject(self, fault: Fault, times: int = 1, *, path: str | None = None) -> None:
        """Make the next ``times`` requests (token calls included) fail with ``fault``; with ``path``, the next
        ``times`` requests whose path starts with it (the others pass, in order)."""
        with self.lock:
            self._faults.extend([(fault, path)] * times)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    # ---------------------------------------------------------------- vendor hooks
    def handle(self, req: Request) -> Response:
        raise NotImplementedError

    def fault_response(self, fault: Fault, req: Request) -> Response:
        """The vendor's shape for SERVER_ERROR, THROTTLE and TOKEN_EXPIRED."""
        status = {Fault.SERVER_ERROR: 500, Fault.THROTTLE: 429, Fault.TOKEN_EXPIRED: 401}[fault]
        return Response.json({"error": fault.value}, status)

    def is_write(self, req: Request) -> bool:
        """Whether a request changes data (TIMEOUT_AFTER_APPLY applies it before stalling)."""
        return req.method in ("POST", "PUT", "PATCH", "DELETE")

    # ---------------------------------------------------------------- dispatch
    def _next_fault(self, path: str) -> Fault | None:
        """The first queued fault meant for ``path`` (callers hold the lock)."""
        for i, (fault, prefix) in enumerate(self._faults):
            if prefix is None or path.startswith(prefix):
                del self._faults[i]
                return fault
        return None

    def _dispatch(self, req: Request) -> Response | None:
        k = self.knobs
        with self.lock:
            self.requests_seen[f"{req.method} {req.path}"] += 1
            fault = self._next_fault(req.path)
            if fault is None and k.drop_rate and self.rng.random() < k.drop_rate:
                fault = Fault.DROP
            if fault is None and k.error_rate and self.rng.random() < k.error_rate:
                fault = Fault.SERVER_ERROR
            if fault is None and self._over_limits():
                fault = Fault.THROTTLE
            self._inflight += 1
        try:
            if k.latency_ms:
                time.sleep(k.latency_ms / 1000.0)
            if fault is Fault.DROP:
                return None
            if fault is Fault.GARBAGE:
                return Response(200, b"<html><body>502 Bad Gateway \xff\xfe</body>",
                                {"Content-Type": "application/json;charset=UTF-8"})
            if fault is Fault.TRUNCATED:
                resp = self.handle(req)
                resp.headers["X-Sim-Truncate"] = "1"
                return resp
            if fault is Fault.TIMEOUT_AFTER_APPLY:
                resp = self.handle(req)
                time.sleep(k.timeout_delay)
                return resp
            if fault is not None:
                return self.fault_response(fault, req)
            try:
                return self.handle(req)
            except Exception as exc:  # a simulator bug must show as a 500, not hang the client
                return Response.json({"error": "simulator internal error", "type": type(exc).__name__}, 500)
        finally:
            with self.lock:
                self._inflight -= 1

    def _over_limits(self) -> bool:
        k = self.knobs
        if k.concurrency_limit is not None and self._inflight >= k.concurrency_limit:
            return True
        if k.rate_limit:
            now = time.monotonic()
            while self._window and now - self._window[0] > 1.0:
                self._window.popleft()
            if len(self._window) >= k.rate_limit:
                return True
            self._window.append(now)
        return False
