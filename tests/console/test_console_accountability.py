"""The console's accountability over real HTTP: sign-ins, refusals, lockouts and sign-outs in the ledger; session
expiry (absolute and idle) under an injected clock; ``crmbridge users`` (a subprocess, as an administrator runs it)
and its effect on sessions; ``crmbridge ledger verify`` afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from console_world import PASSWORD, Served, csrf_of
from security_helpers import cli, clock_of, entries, head, served_world, verify

from crmbridge.console.settings import ConsoleSettings
from crmbridge.sync.state import verify_ledger

SETTINGS = ConsoleSettings(lockout_threshold=3, lockout_minutes=10, session_hours=2, idle_minutes=20)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_world(Path(tmp_path_factory.mktemp("acct")), SETTINGS) as w:
        yield w


def _sign_in(world: Served, username: str, password: str) -> requests.Response:
    s = requests.Session()
    token = csrf_of(s.get(f"{world.url}/login").text)
    return s.post(f"{world.url}/login", data={"username": username, "password": password, "csrf_token": token},
                  allow_redirects=False)


def test_sign_in_and_sign_out_are_ledgered_with_the_user_as_actor(world: Served) -> None:
    before = head(world.runtime)
    s = world.session("audrey")
    token = csrf_of(s.get(f"{world.url}/").text)
    assert s.post(f"{world.url}/logout", data={"csrf_token": token}, allow_redirects=False).status_code == 303
    got = [(e["action"], e["actor"], e["source_system"]) for e in entries(world.runtime, after=before)]
    assert got == [("signed-in", "audrey@console", "console"), ("signed-out", "audrey@console", "console")]


def test_refused_sign_ins_are_ledgered_with_why_and_the_name_as_given(world: Served) -> None:
    before = head(world.runtime)
    assert _sign_in(world, "oscar", PASSWORD + "!").status_code == 401
    long_name = "x" * 100
    assert _sign_in(world, long_name, PASSWORD).status_code == 401
    got = entries(world.runtime, after=before)
    assert [(e["action"], e["actor"], e["reason"]) for e in got] == [
        ("sign-in-refused", "oscar@console", "sign-in refused: invalid"),
        ("sign-in-refused", "x" * 64 + "@console", "sign-in refused: invalid")]
    assert PASSWORD not in json.dumps(got, default=str)


def test_lockout_after_repeated_failures_is_ledgered_listed_and_lifted_by_unlock(world: Served) -> None:
    before = head(world.runtime)
    for _ in range(SETTINGS.lockout_threshold):
        r = _sign_in(world, "olga", "not the password at all")
        assert r.status_code == 401
    assert "locked" in r.text
    # now even the right password is refused, saying why
    r = _sign_in(world, "olga", PASSWORD)
    assert r.status_code == 401 and "locked" in r.text
    got = [(e["action"], e["reason"]) for e in entries(world.runtime, after=before)]
    assert got == [("sign-in-refused", "sign-in refused: invalid")] * (SETTINGS.lockout_threshold - 1) + [
        ("sign-in-refused", "sign-in refused: locked"),
        ("locked-out", f"locked out after {SETTINGS.lockout_threshold} failed sign-ins in a row"),
        ("sign-in-refused", "sign-in refused: locked")]
    listed = {u["username"]: u for u in json.loads(cli(world, "users", "list", "--json").stdout)}
    assert listed["olga"]["locked_until"] is not None and listed["audrey"]["locked_until"] is None
    done = cli(world, "users", "unlock", "olga")
    assert done.returncode == 0, done.stderr
    assert _sign_in(world, "olga", PASSWORD).status_code == 303
    (e,) = entries(world.runtime, after=before, actions=("user-changed",))
    assert e["reason"] == "console user olga: unlocked" and not e["actor"].endswith("@console")


def test_a_lockout_ends_by_itself_after_its_time(world: Served) -> None:
    with clock_of(world.runtime) as clock:
        for _ in range(SETTINGS.lockout_threshold):
            _sign_in(world, "steve", "wrong wrong wrong")
        assert _sign_in(world, "steve", PASSWORD).status_code == 401
        clock.advance(minutes=SETTINGS.lockout_minutes - 1)
        assert _sign_in(world, "steve", PASSWORD).status_code == 401
        clock.advance(minutes=2)
        assert _sign_in(world, "steve", PASSWORD).status_code == 303


def test_a_session_ends_after_idle_minutes_without_a_request(world: Served) -> None:
    with clock_of(world.runtime) as clock:
        s = world.session("stella")
        for _ in range(3):   # requests keep it alive past the idle limit in total
            clock.advance(minutes=SETTINGS.idle_minutes - 1)
            assert s.get(f"{world.url}/", allow_redirects=False).status_code == 200
        clock.advance(minutes=SETTINGS.idle_minutes + 1)
        r = s.get(f"{world.url}/", allow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        # the session is gone for good, not merely refused once
        clock.advance(minutes=-SETTINGS.idle_minutes)
        assert s.get(f"{world.url}/", allow_redirects=False).status_code == 303


def test_a_session_ends_at_its_absolute_expiry_however_active(world: Served) -> None:
    with clock_of(world.runtime) as clock:
        s = world.session("stella")
        elapsed = 0.0
        while elapsed + 15 < SETTINGS.session_hours * 60:
            clock.advance(minutes=15)
            elapsed += 15
            assert s.get(f"{world.url}/", allow_redirects=False).status_code == 200, elapsed
        clock.advance(minutes=SETTINGS.session_hours * 60 - elapsed + 1)
        assert s.get(f"{world.url}/", allow_redirects=False).status_code == 303
        # and a POST is refused, not redirected
        assert s.post(f"{world.url}/requests/reveal", data={}, allow_redirects=False).status_code == 401


def test_users_cli_add_list_passwd_disable_enable(world: Served) -> None:
    # a password never as an argument: from stdin here (the prompt asks twice)
    weak = cli(world, "users", "add", "nina", "--role", "steward", "--password-file", "-", stdin="short\n")
    assert weak.returncode != 0 and "password refused" in weak.stdout + weak.stderr
    bad_role = cli(world, "users", "add", "nina", "--role", "superuser", "--password-file", "-",
                   stdin="a good long passphrase\n")
    assert bad_role.returncode != 0 and "unknown role superuser" in bad_role.stdout + bad_role.stderr
    asked = cli(world, "users", "add", "nina", "--role", "steward", "--role", "auditor",
                stdin="a good long passphrase\na good long passphrase\n")
    assert asked.returncode == 0, asked.stdout + asked.stderr
    again = cli(world, "users", "add", "nina", "--role", "steward", "--password-file", "-",
                stdin="a good long passphrase\n")
    assert again.returncode != 0 and "exists already" in again.stdout + again.stderr
    s = world.session("nina", "a good long passphrase")
    listed = {u["username"]: u for u in json.loads(cli(world, "users", "list", "--json").stdout)}
    assert listed["nina"]["roles"] == ["auditor", "steward"] and listed["nina"]["last_sign_in_at"]
    assert listed["nina"]["disabled"] is False
    table = cli(world, "users", "list").stdout
    assert "nina" in table and "last sign-in" in table

    # a password change ends the user's sessions
    before = head(world.runtime)
    done = cli(world, "users", "passwd", "nina", "--password-file", "-", stdin="another long passphrase\n")
    assert done.returncode == 0 and "1 session(s) ended" in done.stdout, done.stdout + done.stderr
    assert s.get(f"{world.url}/", allow_redirects=False).status_code == 303
    assert _sign_in(world, "nina", "a good long passphrase").status_code == 401
    s = world.session("nina", "another long passphrase")

    # disabling ends them too, and sign-in says so; enabling lets the user back
    assert cli(world, "users", "disable", "nina").returncode == 0
    assert s.get(f"{world.url}/", allow_redirects=False).status_code == 303
    r = _sign_in(world, "nina", "another long passphrase")
    assert r.status_code == 401 and "disabled" in r.text
    r = _sign_in(world, "nina", "a wrong guess entirely")          # a guesser is not told the user exists
    assert r.status_code == 401 and "disabled" not in r.text and "Wrong user name or password" in r.text
    listed = {u["username"]: u for u in json.loads(cli(world, "users", "list", "--json").stdout)}
    assert listed["nina"]["disabled"] is True
    assert cli(world, "users", "enable", "nina").returncode == 0
    assert _sign_in(world, "nina", "another long passphrase").status_code == 303
    changes = [e["reason"] for e in entries(world.runtime, after=before, actions=("user-changed",))]
    assert changes == ["console user nina: password changed; sessions ended", "console user nina: disabled; "
                       "sessions ended", "console user nina: enabled"]
    assert "another long passphrase" not in json.dumps(entries(world.runtime, after=before), default=str)


def test_an_admin_disables_a_user_in_the_console_and_their_session_ends(world: Served) -> None:
    victim = world.session("oscar")
    admin = world.session("ada")
    token = csrf_of(admin.get(f"{world.url}/users").text)
    before = head(world.runtime)
    r = admin.post(f"{world.url}/users/oscar/disable", data={"csrf_token": token}, allow_redirects=False)
    assert r.status_code == 303
    assert victim.get(f"{world.url}/", allow_redirects=False).status_code == 303
    (e,) = entries(world.runtime, after=before, actions=("user-changed",))
    assert (e["actor"], e["reason"]) == ("ada@console", "console user oscar: disabled; sessions ended")
    assert admin.post(f"{world.url}/users/oscar/enable", data={"csrf_token": token},
                      allow_redirects=False).status_code == 303
    assert admin.post(f"{world.url}/users/ada/disable", data={"csrf_token": token},
                      allow_redirects=False).status_code == 400


def test_pages_record_entries_with_the_signed_in_user_as_actor(world: Served) -> None:
    """What other pages use (console/actions.py): the actor string for crmbridge's operations, and append()."""
    from crmbridge.console.actions import actor_for, append
    from crmbridge.console.auth import Principal, Role
    from crmbridge.console.web import ConsoleRequest, ConsoleState
    from crmbridge.sync.state.ledger import Action, LedgerEntryIn, split_actor

    state = ConsoleState(runtime=world.runtime, settings=SETTINGS, sessions=None)  # type: ignore[arg-type]
    req = ConsoleRequest(None, Principal("stella", frozenset({Role.STEWARD}), "c", "s"), state, {})  # type: ignore
    assert split_actor(actor_for(req, "ticket [42]")) == ("stella@console", "ticket (42)")
    before = head(world.runtime)
    # whatever actor an entry was built with, the signed-in user is the one recorded
    append(req, LedgerEntryIn(action=Action.CONFLICT_RESOLVED, actor="scheduler", reason="test", party_id=None))
    (e,) = entries(world.runtime, after=before)
    assert (e["action"], e["actor"]) == ("conflict-resolved", "stella@console")
    assert verify(world.runtime).ok


def test_the_ledger_verifies_signed_and_crmbridge_ledger_verify_passes(world: Served, tmp_path: Path) -> None:
    world.session("audrey")
    assert _sign_in(world, "audrey", "not her password").status_code == 401
    result = verify(world.runtime)
    assert result.ok, result.problems[:3]
    done = cli(world, "ledger", "verify", "--require-signed")
    assert done.returncode == 0, done.stdout + done.stderr
    # an export verifies offline with the standalone verifier (standard library + cryptography), console entries
    # and all
    export, pem = tmp_path / "ledger.jsonl", tmp_path / "key.pem"
    assert cli(world, "ledger", "export", "-o", str(export)).returncode == 0
    assert cli(world, "ledger", "public-key", "-o", str(pem)).returncode == 0
    lines = export.read_text(encoding="utf-8")
    for action in ("signed-in", "sign-in-refused"):
        assert f'"action":"{action}"' in lines.replace(": ", ":"), action
    offline = subprocess.run([sys.executable, str(Path(verify_ledger.__file__)), str(export), "--public-key",
                              str(pem), "--require-signed"], capture_output=True, text=True, timeout=120)
    assert offline.returncode == 0, offline.stdout + offline.stderr
