"""Helpers of the console's security tests: a served world per module, the app's routes by action, the ledger's
entries, an injectable clock and the ``crmbridge`` command line as a subprocess."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from console_world import Served, add_users, csrf_of, serve

from crmbridge.console.app import create_app
from crmbridge.console.settings import ConsoleSettings
from crmbridge.demo import DemoEnvironment
from crmbridge.sync.bootstrap import Runtime, bootstrap
from crmbridge.sync.state.ledger import Ledger, decode_entry

#: one user per role (console_world.USERS)
ROLE_USER = {"auditor": "audrey", "operator": "oscar", "steward": "stella", "admin": "ada"}


@contextmanager
def served_world(tmp: Path, settings: ConsoleSettings | None = None, *,
                 state_url: str | None = None) -> Iterator[Served]:
    """The console over a demo environment whose two jobs have run once (as conftest's ``served``); SQLite, or the
    database at ``state_url``."""
    from crmbridge.sync.engine import run_job

    with DemoEnvironment(tmp / "demo", customers=30, bad_fraction=0.1, seed=11, state_url=state_url) as env:
        rt = bootstrap(env.config_path)
        try:
            for job in ("core_to_zoho", "core_fxiaoke"):   # the two party jobs of the demo
                run_job(rt, job)
            add_users(rt)
            for url in serve(rt, settings):
                yield Served(url, rt, env)
        finally:
            rt.close()


@dataclass(frozen=True)
class AppRoute:
    path: str
    method: str
    action: str | None       # None: not an endpoint() (sign-in, static files)


def app_routes(rt: Runtime) -> list[AppRoute]:
    """Every route of the console as ``create_app`` builds it, with the action its endpoint names."""
    out = []
    for r in create_app(rt).routes:
        methods = sorted((getattr(r, "methods", None) or set()) - {"HEAD"})
        action = getattr(getattr(r, "endpoint", None), "console_action", None)
        for m in methods:
            out.append(AppRoute(r.path, m, action))
    return out


_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_DUMMY = {"party_id": str(uuid.UUID(int=0)), "username": "nobody", "change": "unlock"}


def fill(path: str) -> str:
    """A path template with a harmless value in each parameter (a request id that does not exist...)."""
    return _PARAM.sub(lambda m: _DUMMY.get(m.group(1), "999999"), path)


def entries(rt: Runtime, *, after: int = 0, actions: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    with rt.store.transaction(read_only=True) as tx:
        return [decode_entry(e) for e in Ledger(tx.connection).iter_entries(after=after, actions=actions)]


def head(rt: Runtime) -> int:
    with rt.store.transaction(read_only=True) as tx:
        return Ledger(tx.connection).head()[0]


def verify(rt: Runtime) -> Any:
    """The ledger verified with every entry required to be under a signed checkpoint."""
    with rt.store.transaction(read_only=True) as tx:
        return Ledger(tx.connection).verify(rt.signer.public_key, require_signed=True)


def csrf(s: requests.Session, url: str) -> str:
    return csrf_of(s.get(f"{url}/requests").text)


class Clock:
    """A settable clock for the state store (``StateStore.clock``)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@contextmanager
def clock_of(rt: Runtime) -> Iterator[Clock]:
    original = rt.store.clock
    clock = Clock(original())
    rt.store.clock = clock
    try:
        yield clock
    finally:
        rt.store.clock = original


def cli(served: Served, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``crmbridge ARGS --config <the world's>`` in a subprocess (the command line a human runs)."""
    return subprocess.run([sys.executable, "-m", "crmbridge", *args, "--config", str(served.env.config_path)],
                          input=stdin, capture_output=True, text=True, timeout=120, cwd=served.env.workdir)
