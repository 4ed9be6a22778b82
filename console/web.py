"""The console's web plumbing: the application object, one decorator every page and action goes through
(sign-in, role, CSRF), and rendering.

Every endpoint is declared with :func:`endpoint`, naming its action in :data:`crmbridge.console.auth.PERMISSIONS`::

    @endpoint("conflict.resolve", methods=["POST"])
    def resolve(req: ConsoleRequest) -> Response: ...

The handler is plain (synchronous) code run in Starlette's thread pool: database work never blocks the event loop.
It receives a :class:`ConsoleRequest` (the request, the signed-in principal, the parsed form, the console's
state). A request without a valid session is sent to the sign-in page (a GET) or refused with 401; a role that
may not take the action gets 403; a POST without the session's CSRF token gets 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from crmbridge.console.auth import Principal, SessionService, allowed
from crmbridge.console.settings import ConsoleSettings

__all__ = ["COOKIE", "ConsoleRequest", "ConsoleState", "endpoint", "render"]

COOKIE = "crmbridge_session"
_HERE = Path(__file__).resolve().parent


@dataclass
class ConsoleState:
    """What every handler may use: the runtime (configuration, state store, cipher, signer), the settings, the
    session service and the template environment."""

    runtime: Any                                  # crmbridge.sync.bootstrap.Runtime
    settings: ConsoleSettings
    sessions: SessionService
    templates: Environment = field(default_factory=lambda: Environment(
        loader=FileSystemLoader(str(_HERE / "templates")), autoescape=select_autoescape(["html", "xml"]),
        trim_blocks=True, lstrip_blocks=True))
    #: called for what the console must ledger (sign-ins, refusals): ``audit(event, actor, **details)``
    audit: Callable[..., None] | None = None
    #: runs triggered from this process (:mod:`crmbridge.console.pages.trigger`)
    triggers: Any = None


@dataclass
class ConsoleRequest:
    request: Request
    principal: Principal
    state: ConsoleState
    form: dict[str, str]

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)


def render(req: ConsoleRequest | Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the principal, the CSRF token and the navigation in its context."""
    if isinstance(req, ConsoleRequest):
        request, state, principal = req.request, req.state, req.principal
    else:
        request, state, principal = req, req.app.state.console, None
    html = state.templates.get_template(template).render(
        request=request, principal=principal, csrf_token=principal.csrf_token if principal else "",
        path=request.url.path, **context)
    return HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)


#: no framing, no sniffing, nothing from anywhere but this server
_SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "Cache-Control": "no-store",
}


def endpoint(action: str, *, methods: list[str] | None = None) -> Callable[[Callable[[ConsoleRequest], Response]],
                                                                          Callable[[Request], Any]]:
    """Wrap a handler: sign-in, the role check of ``action``, CSRF on POST, then the handler in the thread pool."""
    allowed(frozenset(), action)          # an unknown action is a programming error, found at import

    def wrap(handler: Callable[[ConsoleRequest], Response]) -> Callable[[Request], Any]:
        async def asgi(request: Request) -> Response:
            state: ConsoleState = request.app.state.console
            principal = await run_in_threadpool(state.sessions.principal, request.cookies.get(COOKIE))
            if principal is None:
                if request.method == "GET":
                    return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
                return Response("sign in first", status_code=401)
            form: dict[str, str] = {}
            if request.method == "POST":
                raw = await request.form()
                form = {k: v for k, v in raw.items() if isinstance(v, str)}
                if not hmac.compare_digest(form.get("csrf_token", ""), principal.csrf_token):
                    await run_in_threadpool(_audit, state, "refused", principal.actor, action=action, why="csrf",
                                            path=request.url.path)
                    return Response("CSRF token missing or wrong: reload the page and try again", status_code=403)
            creq = ConsoleRequest(request, principal, state, form)
            if not principal.may(action):
                await run_in_threadpool(_audit, state, "refused", principal.actor, action=action, why="role",
                                        path=request.url.path)
                return render(creq, "forbidden.html", status_code=403, action=action)
            return await run_in_threadpool(handler, creq)

        asgi.__name__ = handler.__name__
        asgi.__doc__ = handler.__doc__
        asgi.console_action = action          # type: ignore[attr-defined]
        asgi.console_methods = methods or ["GET"]   # type: ignore[attr-defined]
        return asgi

    return wrap


def _audit(state: ConsoleState, event: str, actor: str, **details: Any) -> None:
    if state.audit is not None:
        state.audit(event, actor, **details)


def route(path: str, fn: Callable[[Request], Any]) -> Route:
    """A Starlette route of an :func:`endpoint`-wrapped handler, with the methods it declared."""
    return Route(path, fn, methods=fn.console_methods)  # type: ignore[attr-defined]
