"""Console test helpers: a demo environment (simulators on loopback, SQLite or PostgreSQL state), a synced
runtime, users of every role, and the console served by a real uvicorn on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

pytest.importorskip("starlette", reason="the console extra is installed by make")

from crmbridge.console.app import create_app  # noqa: E402
from crmbridge.console.passwords import hash_password  # noqa: E402
from crmbridge.console.settings import ConsoleSettings  # noqa: E402
from crmbridge.demo import DemoEnvironment  # noqa: E402
from crmbridge.sync.bootstrap import Runtime  # noqa: E402
from crmbridge.sync.state.console import ConsoleRepository  # noqa: E402

#: one user per role, and one holding two roles; every password is PASSWORD
USERS = {"audrey": ["auditor"], "oscar": ["operator"], "stella": ["steward"], "steve": ["steward"],
         "ada": ["admin"], "olga": ["operator", "auditor"]}
PASSWORD = "correct horse battery"


def add_users(rt: Runtime, users: dict[str, list[str]] = USERS, password: str = PASSWORD) -> None:
    h = hash_password(password)
    with rt.store.transaction() as tx:
        repo = ConsoleRepository(tx)
        for name, roles in users.items():
            repo.add_user(name, h, roles, created_by="test", now=rt.store.clock())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    runtime: Runtime
    env: DemoEnvironment

    def session(self, username: str, password: str = PASSWORD) -> requests.Session:
        """A signed-in HTTP session (the sign-in form, its CSRF cookie and token, as a browser does)."""
        s = requests.Session()
        page = s.get(f"{self.url}/login")
        token = _hidden(page.text, "csrf_token")
        r = s.post(f"{self.url}/login", data={"username": username, "password": password, "csrf_token": token,
                                              "next": "/"}, allow_redirects=False)
        assert r.status_code == 303, (r.status_code, r.text[:300])
        return s


def _hidden(html: str, name: str) -> str:
    import re

    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no hidden field {name!r} in the page"
    return m.group(1)


def csrf_of(html: str) -> str:
    return _hidden(html, "csrf_token")


def serve(rt: Runtime, settings: ConsoleSettings | None = None) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(rt, settings), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the console did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


