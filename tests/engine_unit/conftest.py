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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_world import CORE, CRM, OBJECT, SECRET, SECRET_ENV, InProcessTransport, World, _config

from crmbridge.adapters.registry import simulator_class
from crmbridge.adapters.simulator import Knobs
from crmbridge.canonical.mapping import load_mapping
from crmbridge.sync import bootstrap as bootstrap_module
from crmbridge.sync.bootstrap import bootstrap
from crmbridge.sync.state.ledger import generate_signing_key


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
