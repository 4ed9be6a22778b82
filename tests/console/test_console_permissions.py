"""Every role against every action of PERMISSIONS, and CSRF on every POST route, over real HTTP (uvicorn on
loopback). The routes are read from the application itself: a page added later is covered without a change here.
A refusal is a 403 AND a ``refused`` ledger entry naming the user, the action and why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from console_world import Served
from security_helpers import ROLE_USER, app_routes, csrf, entries, fill, head, served_world, verify

from crmbridge.console.auth import PERMISSIONS, Role


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_world(Path(tmp_path_factory.mktemp("perm"))) as w:
        yield w


@pytest.fixture(scope="module")
def sessions(world: Served) -> dict[str, tuple[requests.Session, str]]:
    out = {}
    for user in [*ROLE_USER.values(), "olga"]:
        s = world.session(user)
        out[user] = (s, csrf(s, world.url))
    return out


def test_every_action_is_taken_by_some_route_and_every_route_names_one(world: Served) -> None:
    routes = app_routes(world.runtime)
    unguarded = [r for r in routes if r.action is None and r.path not in ("/login", "/static")]
    assert unguarded == [], f"routes outside endpoint(): {unguarded}"
    assert {r.action for r in routes if r.action} <= set(PERMISSIONS)


@pytest.mark.parametrize("action", sorted(PERMISSIONS))
def test_every_role_against_the_action(world: Served, sessions: dict[str, tuple[requests.Session, str]],
                                       action: str) -> None:
    # signing out is allowed to all and ends the session this module shares (test_console_signin covers it)
    routes = [r for r in app_routes(world.runtime) if r.action == action and r.path != "/logout"]
    if not routes:
        pytest.skip(f"no console route takes {action!r} yet (its page is not in this build)")
    problems = []
    for role, user in ROLE_USER.items():
        s, token = sessions[user]
        allowed = Role(role) in PERMISSIONS[action]
        for r in routes:
            url = f"{world.url}{fill(r.path)}"
            before = head(world.runtime)
            resp = (s.post(url, data={"csrf_token": token}, allow_redirects=False) if r.method == "POST"
                    else s.get(url, allow_redirects=False))
            refused = [e for e in entries(world.runtime, after=before, actions=("refused",))]
            if allowed:
                if resp.status_code in (401, 403) or refused:
                    problems.append(f"{role} {r.method} {r.path}: refused ({resp.status_code}) but allowed")
            else:
                ok = (resp.status_code == 403 and len(refused) == 1 and refused[0]["actor"] == f"{user}@console"
                      and refused[0]["source_object"] == action and "roles may not" in refused[0]["reason"])
                if not ok:
                    problems.append(f"{role} {r.method} {r.path}: {resp.status_code}, ledgered {refused}")
    assert problems == []


def test_a_user_with_two_roles_has_both(world: Served, sessions: dict[str, tuple[requests.Session, str]]) -> None:
    s, _ = sessions["olga"]                                   # operator + auditor
    assert s.get(f"{world.url}/users", allow_redirects=False).status_code == 403     # not admin
    assert s.get(f"{world.url}/requests", allow_redirects=False).status_code == 200


def test_every_post_route_refuses_a_missing_or_wrong_csrf_token_and_ledgers_it(
        world: Served, sessions: dict[str, tuple[requests.Session, str]]) -> None:
    posts = [r for r in app_routes(world.runtime) if r.method == "POST"]
    assert {"/logout", "/requests/reveal", "/requests/erasure"} <= {r.path for r in posts}
    s, token = sessions["olga"]
    for r in posts:
        url = f"{world.url}{fill(r.path)}"
        for sent in ({}, {"csrf_token": token[:-2] + "xx"}, {"csrf_token": ""}):
            before = head(world.runtime)
            resp = s.post(url, data=sent, allow_redirects=False)
            assert resp.status_code == 403, (r.path, sent, resp.status_code)
            if r.action is not None:
                (e,) = entries(world.runtime, after=before)
                assert (e["action"], e["actor"], e["source_object"]) == ("refused", "olga@console", r.action)
                assert "CSRF" in e["reason"]
    # a cross-site form cannot sign anyone out either: the session is still good
    assert s.get(f"{world.url}/requests", allow_redirects=False).status_code == 200


def test_the_ledger_still_verifies_signed_after_all_the_refusals(world: Served) -> None:
    result = verify(world.runtime)
    assert result.ok, result.problems[:3]
