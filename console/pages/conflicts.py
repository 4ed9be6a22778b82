"""The conflicts queue: fields changed on both sides of a two-way job, with the last synced (base), the job's source
and its target values side by side, masked by class; a steward resolves one with a reason (the same path as
``crmbridge conflicts resolve``: the chosen value is written where it is missing and the decision is ledgered,
with the signed-in steward as its actor and the reason beside them)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crmbridge.console.pages._view import int_param, when
from crmbridge.console.web import ConsoleRequest, endpoint, render, route
from crmbridge.core.errors import CrmBridgeError
from crmbridge.core.logsafe import mask_text
from crmbridge.sync.state.console_views import ConsoleViews

__all__ = ["routes"]

_STATUSES = ("open", "resolved", "")


def masked_sides(rt: Any, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Per conflicting field, the base / source / target values masked by the field's class (each value is
    opened only to be masked, here, as ``crmbridge conflicts show`` does: no clear value reaches a template)."""
    from crmbridge.canonical.masking import mask_canonical
    from crmbridge.sync.resolution import conflict_values

    values = conflict_values(rt, row)
    out = []
    for path in row["field_paths"]:
        def masked(side: str, p: str = path) -> str:
            v = values[side].get(p)
            return "∅" if v is None else mask_canonical(p, v, None)

        base = values["base"].get(path)
        out.append({"path": path, "base": masked("base"), "source": masked("source"), "target": masked("target"),
                    # whether each side moved since the last sync (masks of different values can look alike)
                    "source_changed": values["source"].get(path) != base,
                    "target_changed": values["target"].get(path) != base})
    return out


@endpoint("view")
def queue(req: ConsoleRequest) -> Response:
    q = req.query
    status = q.get("status", "open")
    status = status if status in _STATUSES else "open"
    job = q.get("job") or None
    after = int_param(q, "after") or 0
    page = req.state.settings.page_size
    with req.state.runtime.store.transaction(read_only=True, refuse_writes=True) as tx:
        rows = ConsoleViews(tx).conflicts_page(status=status or None, job=job, after_id=after, limit=page)
    more = len(rows) > page
    rows = rows[:page]
    keep = {k: v for k, v in (("status", status), ("job", job)) if v is not None}
    return render(req, "conflicts.html", conflicts=[{
        "id": r["id"], "job": r["job"], "party_id": r["party_id"], "fields": r["field_paths"],
        "raised": when(r["created_at"]), "status": r["status"], "resolution": r["resolution"] or "",
        "actor": r["actor"] or "", "run_id": r["run_id"]} for r in rows],
        status=status, job=job or "", jobs=sorted(req.state.runtime.config.jobs),
        next_page=f"/conflicts?{urlencode({**keep, 'after': rows[-1]['id']})}" if more else None)


def _detail(req: ConsoleRequest, conflict_id: int, *, error: str | None = None, done: str | None = None,
            status_code: int = 200) -> Response:
    rt = req.state.runtime
    with rt.store.transaction(read_only=True, refuse_writes=True) as tx:
        row = tx.get_conflict(conflict_id)
    if row is None:
        return render(req, "not_found.html", status_code=404, what=f"conflict {conflict_id}")
    job = rt.config.jobs.get(row["job"])
    sides = masked_sides(rt, row)
    return render(req, "conflict.html", status_code=status_code, c={
        "id": row["id"], "job": row["job"], "party_id": row["party_id"], "status": row["status"],
        "resolution": row["resolution"], "actor": row["actor"], "raised": when(row["created_at"]),
        "resolved": when(row["resolved_at"]), "run_id": row["run_id"]}, sides=sides,
        source=f"{job.source_system}" if job else "source", target=f"{job.target_system}" if job else "target",
        error=error, done=done, may_resolve=req.principal.may("conflict.resolve"))


@endpoint("view")
def detail(req: ConsoleRequest) -> Response:
    return _detail(req, int(req.request.path_params["conflict_id"]),
                   done=req.query.get("done") and "Resolved; the decision is in the ledger.")


@endpoint("conflict.resolve", methods=["POST"])
def resolve(req: ConsoleRequest) -> Response:
    """Take the source's or the target's value, with a reason (required); the actor is the signed-in steward."""
    from crmbridge.sync.resolution import resolve_conflict
    from crmbridge.sync.state.ledger import format_actor

    conflict_id = int(req.request.path_params["conflict_id"])
    take = req.form.get("take", "")
    reason = " ".join(req.form.get("reason", "").split())
    if take not in ("source", "target"):
        return _detail(req, conflict_id, error="Choose the source's or the target's value.", status_code=400)
    if not reason:
        return _detail(req, conflict_id, error="Give the reason for this decision: it is recorded in the ledger.",
                       status_code=400)
    actor = format_actor(req.principal.actor, f"reason: {reason[:200]}")
    try:
        resolve_conflict(req.state.runtime, conflict_id, take=take, actor=actor)  # type: ignore[arg-type]
    except CrmBridgeError as exc:
        return _detail(req, conflict_id, error=f"Not resolved: {mask_text(str(exc))}", status_code=409)
    return RedirectResponse(f"/conflicts/{conflict_id}?done=1", status_code=303)


def routes() -> list[Route]:
    return [route("/conflicts", queue), route("/conflicts/{conflict_id:int}", detail),
            route("/conflicts/{conflict_id:int}/resolve", resolve)]
