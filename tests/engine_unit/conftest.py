"""The engine unit tier: the sync engine through its public entry points (``bootstrap`` → ``Runtime`` →
``run_job``), on two systems of the ``memory`` adapter and a SQLite state file copied from a template migrated once
per session.

No socket is opened: the adapters' ``requests.Session`` carries a transport that hands each request straight to the
memory simulator's dispatch in this thread (the simulator is never started; ``sim.inject(Fault...)`` still works).
A test costs tens of milliseconds; the integration tier (tests/sync, tests/faults...) keeps the real HTTP simulators.
"""

from __future__ import annotations

import base64
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from crmbridge.adapters.registry import simulator_class
from crmbridge.adapters.simulator import Knobs, Request, Simulator
from crmbridge.canonical.mapping import load_mapping
from crmbridge.canonical.synthetic import customer_at
from crmbridge.sync import bootstrap as bootstrap_module
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.engine import run_job
from crmbridge.sync.report import RunReport
from crmbridge.sync.state.ledger import generate_signing_key

HERE = Path(__file__).resolve().parent
SECRET_ENV = "CRMBRIDGE_UNIT_MEMORY_SECRET"
SECRET = "unit-secret"   # noqa: S105 - the in-process store's test credential
CORE, CRM = "core", "crm"
HOSTS = {CORE: "http://core.memory.invalid", CRM: "http://crm.memory.invalid"}
OBJECT = "Contact"


class InProcessTransport(BaseAdapter):
    """A requests transport that answers from a simulator's handler, in the calling thread, with no socket."""

    def __init__(self, sim: Simulator) -> None:
        super().__init__()
        self.sim = sim
        self.calls: list[str] = []

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,  # noqa: ARG002
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:  # noqa: ARG002
        parts = urlsplit(request.url or "")
        body = request.body or b""
        req = Request(request.method or "GET", parts.path, parse_qs(parts.query, keep_blank_values=True),
                      {k.lower(): v for k, v in request.headers.items()},
                      body.encode() if isinstance(body, str) else bytes(body), "127.0.0.1")
        self.calls.append(f"{req.method} {req.path}")
        answer = self.sim._dispatch(req)   # noqa: SLF001 - the simulator's own dispatch: injected faults apply
        if answer is None:                 # Fault.DROP: the connection closed without an answer
            raise requests.ConnectionError(f"{self.sim.vendor} dropped {req.method} {req.path}", request=request)
        resp = requests.Response()
        resp.status_code = answer.status
        resp._content = answer.body                      # noqa: SLF001 - how a transport fills a Response
        resp.headers = CaseInsensitiveDict(answer.headers)
        resp.url = request.url or ""
        resp.request = request
        resp.encoding = "utf-8"
        resp.reason = "OK" if answer.status < 400 else "ERROR"
        return resp

    def close(self) -> None:
        pass


def person(i: int, **fields: Any) -> dict[str, Any]:
    """A valid source record for customer ``i`` (a real, checksum-valid resident ID from the synthetic generator)."""
    c = customer_at(i, seed=3)
    while not c.is_individual:       # the generator mixes organisations in: take the next individual
        i += 1000
        c = customer_at(i, seed=3)
    return {"external_key": f"cust-{i:05d}", "name": c.name, "ric": c.id_number, "segment": "MASS",
            "branch": "110105001", "lifecycle": "ACTIVE", **fields}


@dataclass
class World:
    """Two memory systems, the runtime over them and helpers to act on either side directly."""

    tmp: Path
    core: Simulator
    crm: Simulator
    transports: dict[str, InProcessTransport]
    _write_config: Callable[..., Path]
    _rt: Runtime | None = None

    def configure(self, **job: Any) -> World:
        """Rewrite the job ``sync`` (core → crm) with these settings; the next :attr:`rt` is built from them."""
        self.close()
        self._write_config(**job)
        return self

    @property
    def rt(self) -> Runtime:
        if self._rt is None:
            session = requests.Session()
            for system, host in HOSTS.items():
                session.mount(host + "/", self.transports[system])
            self._rt = bootstrap(self.tmp / "crmbridge.yaml", session_factory=lambda: session, migrate=False)
        return self._rt

    def run(self, *, dry_run: bool = False) -> RunReport:
        return run_job(self.rt, "sync", dry_run=dry_run)

    def add(self, side: Simulator, *records: dict[str, Any]) -> list[str]:
        """Create records on a side as its own users would (not through crmbridge); their ids."""
        ids = []
        for r in records:
            with side.lock:
                out = side._upsert_one(OBJECT, None, {"fields": dict(r)})   # noqa: SLF001 - the store's write path
            assert out["status"] == "created", out
            ids.append(out["id"])
        return ids

    def edit(self, side: Simulator, rid: str, **fields: Any) -> None:
        """Change a record on a side as its own users would: a new version and modification time."""
        with side.lock:
            out = side._upsert_one(OBJECT, None, {"id": rid, "fields": fields})   # noqa: SLF001
        assert out["status"] == "updated", out

    def delete(self, side: Simulator, rid: str) -> None:
        """Delete a record on a side as its own users would (it leaves a tombstone)."""
        with side.lock:
            assert side._delete(OBJECT, rid).status == 204   # noqa: SLF001 - the store's own delete path

    def writes(self, system: str) -> int:
        """Write calls crmbridge made to a system so far."""
        return sum(1 for c in self.transports[system].calls if not c.startswith("GET ") and c != "POST /token")

    def close(self) -> None:
        if self._rt is not None:
            self._rt.close()
            self._rt = None


def _config(state_url: str, job: dict[str, Any]) -> dict[str, Any]:
    system = {"adapter": "memory", "client_id": "unit", "client_secret": f"env:{SECRET_ENV}",
              "retry": {"max_attempts": 2, "initial_wait": 0.001, "max_wait": 0.002, "jitter": 0.0}}
    base_job = {"source": f"{CORE}.{OBJECT}", "target": f"{CRM}.{OBJECT}",
                "source_mapping": str(HERE / "mappings" / "unit_core.yaml"),
                "target_mapping": str(HERE / "mappings" / "unit_crm.yaml"), "overlap_seconds": 0}
    return {"state": {"url": state_url},
            "keys": {"master_key": "file:master.key", "signing_key": "file:ledger-signing.pem"},
            "systems": {name: {**system, "base_url": HOSTS[name]} for name in (CORE, CRM)},
            "jobs": {"sync": {**base_job, **job}}}


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key, a signing key and a state database migrated to head, made once and copied by each test."""
    d = tmp_path_factory.mktemp("engine-unit-template")
    (d / "master.key").write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    (d / "master.key").chmod(0o600)
    generate_signing_key(d / "ledger-signing.pem")
    (d / "crmbridge.yaml").write_text(yaml.safe_dump(_config(f"sqlite:///{d / 'state.db'}", {})))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SECRET_ENV, SECRET)
        bootstrap(d / "crmbridge.yaml").close()   # migrates, and stores the wrapped data keys
    return d


_MAPPINGS = functools.cache(load_mapping)


@pytest.fixture
def world(_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    # the two mapping files are parsed and checked once per session, not once per runtime (the real Mapping)
    monkeypatch.setattr(bootstrap_module, "load_mapping", _MAPPINGS)
    for name in ("master.key", "ledger-signing.pem", "state.db"):
        shutil.copy2(_template / name, tmp_path / name)
    sims = {}
    for system in (CORE, CRM):
        sims[system] = simulator_class("memory")(Knobs(seed=1, records=0, extra={
            "objects": [OBJECT], "client_id": "unit", "client_secret": SECRET}))

    def write_config(**job: Any) -> Path:
        path = tmp_path / "crmbridge.yaml"
        path.write_text(yaml.safe_dump(_config(f"sqlite:///{tmp_path / 'state.db'}", job)))
        return path

    write_config()
    w = World(tmp_path, sims[CORE], sims[CRM], {s: InProcessTransport(sims[s]) for s in (CORE, CRM)}, write_config)
    yield w
    w.close()
