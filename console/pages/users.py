"""Users (admin): the console's users with their roles, disabled and locked state and last sign-in, and disable /
enable / unlock, each ledgered (``user-changed``) with the signed-in administrator as actor. Adding users and
setting passwords stay on the command line (``crmbridge users add|passwd``): a password never travels through a
web form of someone else's."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crmbridge.console.actions import append_entries, publish
from crmbridge.console.web import ConsoleRequest, endpoint, render, route
from crmbridge.sync.state.console import ConsoleRepository
from crmbridge.sync.state.ledger import Action, LedgerEntryIn

__all__ = ["routes"]


@endpoint("users.manage")
def list_users(req: ConsoleRequest) -> Response:
    rt = req.state.runtime
    with rt.store.transaction(read_only=True, refuse_writes=True) as tx:
        users = ConsoleRepository(tx).users()
    return render(req, "users.html", users=users, now=rt.store.clock(), notice=req.query.get("notice"))


_CHANGES = {
    "disable": ("disabled; sessions ended", {"disabled": True}),
    "enable": ("enabled", {"disabled": False}),
    "unlock": ("unlocked", {"failed_attempts": 0, "locked_until": None}),
}


@endpoint("users.manage", methods=["POST"])
def change_user(req: ConsoleRequest) -> Response:
    name = req.request.path_params["username"]
    change = req.request.path_params["change"]
    if change not in _CHANGES:
        return render(req, "foureyes_error.html", status_code=404, message=f"no user action {change!r}")
    what, values = _CHANGES[change]
    if change == "disable" and name == req.principal.username:
        return render(req, "foureyes_error.html", status_code=400,
                      message="you cannot disable yourself: ask another administrator")
    rt = req.state.runtime
    with rt.store.transaction() as tx:
        repo = ConsoleRepository(tx)
        if not repo.update_user(name, **values):
            return render(req, "foureyes_error.html", status_code=404, message=f"no console user {name!r}")
        if change == "disable":
            repo.end_sessions_of(name)
        append_entries(rt, [LedgerEntryIn(action=Action.USER_CHANGED, actor=req.principal.actor,
                                          source_system="console", source_object="user", source_id=name,
                                          reason=f"console user {name}: {what}")], tx=tx)
    publish(rt)
    return RedirectResponse(f"/users?notice={change}d-{name}", status_code=303)


def routes() -> list[Route]:
    return [route("/users", list_users), route("/users/{username}/{change}", change_user)]
