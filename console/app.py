"""The console application: ``create_app(runtime)`` builds the Starlette app over a bootstrapped runtime (the
same configuration and state database as the CLI; SQLite or PostgreSQL). ``crmbridge console`` serves it with
uvicorn.

Pages live in :mod:`crmbridge.console.pages`, one module per page group, each exposing ``routes()``;
:data:`PAGE_MODULES` lists them.
"""

from __future__ import annotations

import hmac
import importlib
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from crmbridge.console.actions import console_actor, make_audit
from crmbridge.console.auth import SessionService
from crmbridge.console.settings import ConsoleSettings
from crmbridge.console.web import COOKIE, ConsoleState, endpoint, render, route

__all__ = ["PAGE_MODULES", "create_app"]

#: the page groups; each module has ``routes() -> list[Route]``
PAGE_MODULES = [
    "crmbridge.console.pages.dashboard",
    "crmbridge.console.pages.trigger",          # /runs/trigger before /runs/{run_id}
    "crmbridge.console.pages.runs",
    "crmbridge.console.pages.customers",
    "crmbridge.console.pages.conflicts",
    "crmbridge.console.pages.dead_letters",
    "crmbridge.console.pages.ledger",
    "crmbridge.console.pages.mappings",
    "crmbridge.console.pages.requests",
    "crmbridge.console.pages.users",
]

_PRE_CSRF = "crmbridge_signin_csrf"
_HERE = Path(__file__).resolve().parent


def _safe_next(value: str | None) -> str:
    """Only a path on this server (no open redirect)."""
    if not value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value


async def sign_in_page(request: Request) -> Response:
    state: ConsoleState = request.app.state.console
    if request.method == "GET":
        token = secrets.token_urlsafe(32)
        resp = render(request, "login.html", next=_safe_next(request.query_params.get("next")), error=None,
                      signin_csrf=token)
        resp.set_cookie(_PRE_CSRF, token, httponly=True, samesite="strict", secure=state.settings.secure_cookies,
                        path="/login")
        return resp
    form = await request.form()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    nxt = _safe_next(str(form.get("next", "/")))
    sent = str(form.get("csrf_token", ""))
    if not sent or not hmac.compare_digest(sent, request.cookies.get(_PRE_CSRF, "")):
        return Response("CSRF token missing or wrong: reload the sign-in page", status_code=403)
    result = await run_in_threadpool(state.sessions.sign_in, username, password)
    if state.audit is not None:
        who = console_actor(username)
        await run_in_threadpool(state.audit, "signed-in" if result.token else "sign-in-refused", who,
                                why=result.refusal)
        if result.locked_now:
            await run_in_threadpool(state.audit, "locked-out", who, why=str(state.settings.lockout_threshold))
    if result.token is None:
        message = {"locked": "This user is locked after repeated failures; try again later or ask an administrator.",
                   "disabled": "This user is disabled."}.get(result.refusal or "", "Wrong user name or password.")
        token = secrets.token_urlsafe(32)
        resp = render(request, "login.html", status_code=401, next=nxt, error=message, signin_csrf=token)
        resp.set_cookie(_PRE_CSRF, token, httponly=True, samesite="strict", secure=state.settings.secure_cookies,
                        path="/login")
        return resp
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(COOKIE, result.token, httponly=True, samesite="strict", secure=state.settings.secure_cookies,
                    path="/", max_age=int(state.settings.session_hours * 3600))
    resp.delete_cookie(_PRE_CSRF, path="/login")
    return resp


@endpoint("view", methods=["POST"])
def sign_out(req: Any) -> Response:
    req.state.sessions.sign_out(req.principal)
    if req.state.audit is not None:
        req.state.audit("signed-out", req.principal.actor)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


def create_app(runtime: Any, settings: ConsoleSettings | None = None) -> Starlette:
    """The console over ``runtime`` (:func:`crmbridge.sync.bootstrap.bootstrap`)."""
    settings = settings or ConsoleSettings()
    state = ConsoleState(runtime=runtime, settings=settings, sessions=SessionService(runtime.store, settings),
                         audit=make_audit(runtime))
    routes: list[Route | Mount] = [
        Route("/login", sign_in_page, methods=["GET", "POST"]),
        route("/logout", sign_out),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
    for name in PAGE_MODULES:
        routes.extend(importlib.import_module(name).routes())
    app = Starlette(routes=routes)
    app.state.console = state
    return app
