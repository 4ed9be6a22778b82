"""Four-eyes pages (:mod:`crmbridge.console.foureyes`): the requests, pending and decided (``/requests``), the
request form (``/requests/new``), filing (``POST /requests/reveal|erasure``), deciding (``POST
/requests/reveal|erasure/{id}/decide``, by a user other than the requester) and a party's revealed values
(``/customers/{party_id}/reveal``: masked, except the fields of the signed-in user's approved, unexpired reveal)."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crmbridge.console.foureyes import (
    FourEyesError,
    decide,
    file_request,
    party_fields,
    party_key,
    revealed_fields,
)
from crmbridge.console.web import ConsoleRequest, endpoint, render, route
from crmbridge.sync.state.console import ConsoleRepository

__all__ = ["routes"]


def _error(req: ConsoleRequest, exc: FourEyesError) -> Response:
    return render(req, "foureyes_error.html", status_code=exc.status, message=str(exc))


@endpoint("view")
def list_requests(req: ConsoleRequest) -> Response:
    rt = req.state.runtime
    size = req.state.settings.page_size
    try:
        before = int(req.query["before"]) if req.query.get("before") else None
    except ValueError:
        before = None
    with rt.store.transaction(read_only=True, refuse_writes=True) as tx:
        repo = ConsoleRepository(tx)
        pending = repo.requests(status="pending", limit=500)
        decided = repo.requests(exclude_status="pending", limit=size + 1, before=before)
    more = len(decided) > size
    decided = decided[:size]
    return render(req, "requests.html", pending=pending, decided=decided, now=rt.store.clock(),
                  next_before=decided[-1]["id"] if more and decided else None, notice=req.query.get("notice"))


@endpoint("view")
def new_request(req: ConsoleRequest) -> Response:
    kind = req.query.get("kind", "reveal")
    party_id = req.query.get("party_id", "").strip()
    fields = []
    if party_id and kind == "reveal":
        try:
            fields = party_fields(req, party_id)
        except FourEyesError as exc:
            return _error(req, exc)
    return render(req, "request_new.html", kind=kind if kind in ("reveal", "erasure") else "reveal",
                  party_id=party_id, fields=fields, may=req.principal.may(f"{kind}.request")
                  if kind in ("reveal", "erasure") else False)


def _file(req: ConsoleRequest, kind: str) -> Response:
    # one checkbox per field (``field:<path>``), and/or paths typed in ``fields`` (comma or line separated)
    fields = [k.removeprefix("field:") for k, v in req.form.items() if k.startswith("field:") and v]
    fields += req.form.get("fields", "").replace(",", "\n").splitlines()
    try:
        rid = file_request(req, req.principal, kind=kind, party_id=req.form.get("party_id", ""), fields=fields,
                           reason=req.form.get("reason"))
    except FourEyesError as exc:
        return _error(req, exc)
    return RedirectResponse(f"/requests?notice=filed-{rid}", status_code=303)


@endpoint("reveal.request", methods=["POST"])
def file_reveal(req: ConsoleRequest) -> Response:
    return _file(req, "reveal")


@endpoint("erasure.request", methods=["POST"])
def file_erasure(req: ConsoleRequest) -> Response:
    return _file(req, "erasure")


def _decide(req: ConsoleRequest, kind: str) -> Response:
    try:
        rid = int(req.request.path_params["request_id"])
    except ValueError:
        return _error(req, FourEyesError("a request id is a number", status=404))
    decision = req.form.get("decision", "")
    if decision not in ("approve", "reject"):
        return _error(req, FourEyesError("decide with approve or reject", where="decision"))
    try:
        decide(req, req.principal, rid, kind=kind, approve=decision == "approve", reason=req.form.get("reason"),
               audit=req.state.audit)
    except FourEyesError as exc:
        return _error(req, exc)
    return RedirectResponse(f"/requests?notice={decision}d-{rid}", status_code=303)


@endpoint("reveal.approve", methods=["POST"])
def decide_reveal(req: ConsoleRequest) -> Response:
    return _decide(req, "reveal")


@endpoint("erasure.approve", methods=["POST"])
def decide_erasure(req: ConsoleRequest) -> Response:
    return _decide(req, "erasure")


@endpoint("view")
def reveal_page(req: ConsoleRequest) -> Response:
    rt = req.state.runtime
    try:
        party_id = party_key(req.request.path_params["party_id"])
        fields = party_fields(req, party_id)
        clear = revealed_fields(req, req.principal, party_id, where=f"page {req.request.url.path}")
    except FourEyesError as exc:
        return _error(req, exc)
    with rt.store.transaction(read_only=True, refuse_writes=True) as tx:
        active = ConsoleRepository(tx).active_reveals(req.principal.username, party_id, rt.store.clock())
    return render(req, "reveal.html", party_id=party_id, fields=fields, clear=clear, active=active,
                  may_request=req.principal.may("reveal.request"))


def routes() -> list[Route]:
    return [
        route("/requests", list_requests),
        route("/requests/new", new_request),
        route("/requests/reveal", file_reveal),
        route("/requests/erasure", file_erasure),
        route("/requests/reveal/{request_id}/decide", decide_reveal),
        route("/requests/erasure/{request_id}/decide", decide_erasure),
        route("/customers/{party_id}/reveal", reveal_page),
    ]
