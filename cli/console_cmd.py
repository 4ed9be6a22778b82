"""``crmbridge console`` (the web console) and ``crmbridge users`` (its local users).

The console reads the same configuration and state database as every other command::

    crmbridge users add alice --role auditor          # asks for the password twice
    crmbridge users add bot --role operator --password-file -   # automation: the password on stdin
    crmbridge users passwd|disable|enable|unlock alice
    crmbridge users list
    crmbridge console --host 127.0.0.1 --port 8470

A password is never an argument (it would sit in the shell history and the process list): it is asked twice at a
prompt, or read from ``--password-file`` (``-``: standard input, its first line). Every change is ledgered
(``user-changed``) with the operating-system user and host as actor, like every command; disabling a user or
changing their password ends their console sessions at once.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from crmbridge.cli._common import ConfigOption, console, runtime
from crmbridge.cli.actor import ActorOption, cli_actor
from crmbridge.core.errors import ConfigurationError

__all__ = ["USERNAME", "register"]

users_app = typer.Typer(help="The console's local users: add, change a password, disable, enable, unlock, list.",
                        no_args_is_help=True)

#: a console user name: a word of letters, digits, dot, dash, underscore (it is the ledger's ``name@console``)
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

PasswordFileOption = Annotated[Path | None, typer.Option(
    "--password-file", help="Read the password from this file's first line ('-': standard input) instead of "
                            "asking for it twice; never give it as an argument.", dir_okay=False,
    allow_dash=True)]


def _needs_console() -> None:
    from crmbridge.core.extras import require_extra

    require_extra("console", purpose="the console")


def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8470,
) -> None:
    """Serve the web console (operations, data stewards, auditors) until interrupted."""
    _needs_console()
    import uvicorn

    from crmbridge.console.app import create_app

    rt = runtime(config)
    app = create_app(rt)
    console.print(f"crmbridge console on http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        rt.close()


def _name(username: str) -> str:
    if not USERNAME.fullmatch(username):
        raise ConfigurationError("a user name is 1 to 64 letters, digits, '.', '-' or '_', starting with a letter "
                                 "or digit", where="USERNAME")
    return username


def _roles(roles: list[str]) -> list[str]:
    from crmbridge.console.auth import ROLES

    if not roles:
        raise ConfigurationError(f"give at least one --role ({', '.join(ROLES)})", where="--role")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ConfigurationError(f"unknown role {', '.join(unknown)}; known: {', '.join(ROLES)}", where="--role")
    return sorted(set(roles))


def _password(password_file: Path | None, *, username: str) -> str:
    """The new password: from the file or stdin (first line), or asked twice at a prompt; strength-checked."""
    from crmbridge.console.passwords import check_strength

    if password_file is not None:
        if str(password_file) == "-":
            text = sys.stdin.readline()
        else:
            try:
                text = password_file.read_text(encoding="utf-8").splitlines()[0] if password_file.stat().st_size \
                    else ""
            except OSError as exc:
                raise ConfigurationError(f"cannot read the password file: {exc.strerror}",
                                         where=str(password_file)) from exc
        password = text.rstrip("\r\n")
    else:
        password = typer.prompt(f"Password for {username}", hide_input=True, confirmation_prompt=True)
    why = check_strength(password, username=username)
    if why:
        raise ConfigurationError(f"password refused: {why}", where="--password-file" if password_file else "password")
    return password


def _change(config: Path | None, username: str, what: str, note: str | None, fn: Any) -> Any:
    """Run ``fn(repo, now)`` in one transaction with a ``user-changed`` ledger entry (the OS actor) and a signed
    head; ``fn`` returns a result or raises."""
    from crmbridge.console.actions import publish
    from crmbridge.sync.state.console import ConsoleRepository
    from crmbridge.sync.state.ledger import Action, LedgerEntryIn

    rt = runtime(config)
    try:
        with rt.store.transaction() as tx:
            out = fn(ConsoleRepository(tx), rt.store.clock())
            ledger = tx.ledger(rt.signer, cipher=rt.cipher)
            ledger.append([LedgerEntryIn(action=Action.USER_CHANGED, actor=cli_actor(note), source_system="console",
                                         source_object="user", source_id=username,
                                         reason=f"console user {username}: {what}")])
            ledger.checkpoint()
        publish(rt)
        return out
    finally:
        rt.close()


def _existing(repo: Any, username: str) -> Any:
    user = repo.user(username)
    if user is None:
        raise ConfigurationError(f"no console user {username!r} (crmbridge users list)", where="USERNAME")
    return user


UserArg = Annotated[str, typer.Argument(help="The user name.")]
RoleOption = Annotated[list[str], typer.Option("--role", "-r", help="A role (repeatable): auditor, operator, "
                                                                     "steward, admin.")]


@users_app.command("add")
def users_add(username: UserArg, role: RoleOption, password_file: PasswordFileOption = None,
              actor: ActorOption = None, config: ConfigOption = None) -> None:
    """Add a console user with one or more roles (the password asked twice, or --password-file)."""
    _needs_console()
    from crmbridge.console.passwords import hash_password

    name, roles = _name(username), _roles(role)
    password = _password(password_file, username=name)

    def add(repo: Any, now: datetime) -> None:
        if repo.user(name) is not None:
            raise ConfigurationError(f"console user {name!r} exists already (crmbridge users passwd, enable)",
                                     where="USERNAME")
        repo.add_user(name, hash_password(password), roles, created_by=cli_actor(), now=now)

    _change(config, name, f"added with roles {', '.join(roles)}", actor, add)
    console.print(f"console user {name} added: {', '.join(roles)}", highlight=False)


@users_app.command("passwd")
def users_passwd(username: UserArg, password_file: PasswordFileOption = None, actor: ActorOption = None,
                 config: ConfigOption = None) -> None:
    """Set a user's password (asked twice, or --password-file); their console sessions end."""
    _needs_console()
    from crmbridge.console.passwords import hash_password

    name = _name(username)
    password = _password(password_file, username=name)

    def passwd(repo: Any, now: datetime) -> int:
        _existing(repo, name)
        repo.update_user(name, password_hash=hash_password(password), password_changed_at=now)
        return int(repo.end_sessions_of(name))

    ended = _change(config, name, "password changed; sessions ended", actor, passwd)
    console.print(f"password of {name} changed; {ended} session(s) ended", highlight=False)


@users_app.command("disable")
def users_disable(username: UserArg, actor: ActorOption = None, config: ConfigOption = None) -> None:
    """Disable a user: no sign-in, and their console sessions end now."""
    _needs_console()
    name = _name(username)

    def disable(repo: Any, now: datetime) -> int:
        _existing(repo, name)
        repo.update_user(name, disabled=True)
        return int(repo.end_sessions_of(name))

    ended = _change(config, name, "disabled; sessions ended", actor, disable)
    console.print(f"{name} disabled; {ended} session(s) ended", highlight=False)


@users_app.command("enable")
def users_enable(username: UserArg, actor: ActorOption = None, config: ConfigOption = None) -> None:
    """Enable a disabled user again."""
    _needs_console()
    name = _name(username)
    _change(config, name, "enabled", actor, lambda repo, now: (_existing(repo, name),
                                                              repo.update_user(name, disabled=False)))
    console.print(f"{name} enabled", highlight=False)


@users_app.command("unlock")
def users_unlock(username: UserArg, actor: ActorOption = None, config: ConfigOption = None) -> None:
    """Lift a lockout after repeated failed sign-ins (and forget the failures)."""
    _needs_console()
    name = _name(username)
    _change(config, name, "unlocked", actor, lambda repo, now: (
        _existing(repo, name), repo.update_user(name, failed_attempts=0, locked_until=None)))
    console.print(f"{name} unlocked", highlight=False)


def _when(at: datetime | None) -> str | None:
    return None if at is None else at.strftime("%Y-%m-%d %H:%M:%S")


@users_app.command("list")
def users_list(as_json: Annotated[bool, typer.Option("--json", help="Print the users as JSON.")] = False,
               config: ConfigOption = None) -> None:
    """Every console user: roles, disabled, locked (until when), failed sign-ins, last sign-in."""
    _needs_console()
    from crmbridge.sync.state.console import ConsoleRepository

    rt = runtime(config)
    try:
        now = rt.store.clock()
        with rt.store.transaction(read_only=True, refuse_writes=True) as tx:
            users = ConsoleRepository(tx).users()
    finally:
        rt.close()
    rows = [{"username": u.username, "roles": list(u.roles), "disabled": u.disabled,
             "locked_until": _when(u.locked_until) if u.locked_until and u.locked_until > now else None,
             "failed_attempts": u.failed_attempts, "last_sign_in_at": _when(u.last_sign_in_at),
             "created_at": _when(u.created_at), "created_by": u.created_by,
             "password_changed_at": _when(u.password_changed_at)} for u in users]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    t = Table(title="crmbridge console users (times UTC)", title_justify="left")
    for col in ("user", "roles", "disabled", "locked until", "failed", "last sign-in", "password changed"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        t.add_row(r["username"], ", ".join(r["roles"]), "yes" if r["disabled"] else "no", r["locked_until"] or "no",
                  str(r["failed_attempts"]), r["last_sign_in_at"] or "never", r["password_changed_at"] or "")
    # piped or captured: wide enough for every column whole (a terminal wraps by its own width)
    (console if console.is_terminal else Console(width=140)).print(t)
    if not rows:
        console.print("no console users yet: crmbridge users add NAME --role ROLE", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("console")(serve)
    app.add_typer(users_app, name="users")
