"""Dead letters grouped by reason, the letters of one reason (masked messages, paginated on their id), and retry
(an operator's action, the same path as ``crmbridge deadletters retry``: records now carrying C3 data are refused,
the others made due and their jobs run at once, the signed-in operator named as the runs' actor)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from crmbridge.console.pages._view import int_param, when
from crmbridge.console.web import ConsoleRequest, endpoint, render, route
from crmbridge.core.errors import CrmBridgeError
from crmbridge.core.logsafe import mask_text
from crmbridge.sync.state.console_views import ConsoleViews

__all__ = ["routes"]

_STATUS = {"open": ["open", "retrying"], "resolved": ["resolved"], "abandoned": ["abandoned"], "all": None}
#: at most this many letters retried by one click (a reason with more is retried a page at a time)
RETRY_MAX = 500


@endpoint("view")
def overview(req: ConsoleRequest) -> Response:
    q = req.query
    status = q.get("status", "open") if q.get("status", "open") in _STATUS else "open"
    job = q.get("job") or None
    reason = q.get("reason") or None
    after = int_param(q, "after") or 0
    page = req.state.settings.page_size
    with req.state.runtime.store.transaction(read_only=True, refuse_writes=True) as tx:
        views = ConsoleViews(tx)
        groups = [g for g in views.dead_letter_reasons(status=_STATUS[status]) if job is None or g["job"] == job]
        rows = views.dead_letters_page(job=job, reason_code=reason, status=_STATUS[status], after_id=after,
                                       limit=page)
    more = len(rows) > page
    rows = rows[:page]
    keep = {k: v for k, v in (("status", status), ("job", job), ("reason", reason)) if v}
    return render(req, "dead_letters.html", status=status, job=job or "", reason=reason or "",
                  jobs=sorted(req.state.runtime.config.jobs),
                  groups=[{**g, "oldest": when(g["oldest"]),
                           "link": "/dead-letters?" + urlencode({"status": status, "job": g["job"],
                                                                  "reason": g["reason_code"]})} for g in groups],
                  letters=[{"id": r["id"], "job": r["job"], "record": "/".join(
                      str(x) for x in (r["source_system"], r["source_object"], r["external_id"]) if x),
                      "stage": r["stage"], "reason": r["reason_code"], "message": mask_text(r["message"]),
                      "attempts": r["attempts"], "next": when(r["next_attempt_at"]), "status": r["status"],
                      "run_id": r["run_id"]} for r in rows],
                  may_retry=req.principal.may("dead_letter.retry"),
                  next_page=f"/dead-letters?{urlencode({**keep, 'after': rows[-1]['id']})}" if more else None)


@endpoint("dead_letter.retry", methods=["POST"])
def retry(req: ConsoleRequest) -> Response:
    """Retry the letters named (``id``, repeatable as ``ids`` comma-separated) or every open letter of one
    ``job`` + ``reason``."""
    from crmbridge.sync.deadletters import retry_dead_letters

    rt = req.state.runtime
    ids = sorted({int(x) for x in req.form.get("ids", "").replace(" ", "").split(",") if x.isdigit()})
    job, reason = req.form.get("job") or None, req.form.get("reason") or None
    with rt.store.transaction() as tx:
        if ids:
            rows = [r for r in (tx.get_dead_letter(i) for i in ids[:RETRY_MAX]) if r is not None]
        elif job and reason:
            rows = ConsoleViews(tx).dead_letters_page(job=job, reason_code=reason, status=["open", "retrying"],
                                                      limit=RETRY_MAX - 1)
        else:
            rows = []
    rows = [r for r in rows if r["status"] in ("open", "retrying")]
    if not rows:
        return render(req, "dead_letters_retried.html", status_code=400, error="No open dead letter to retry.",
                      outcome=None, notes=[])
    notes: list[str] = []
    try:
        outcome = retry_dead_letters(rt, rows, actor=req.principal.actor, say=notes.append)
    except CrmBridgeError as exc:   # the job is running elsewhere, a system is down...: said, nothing hidden
        return render(req, "dead_letters_retried.html", status_code=409, outcome=None, notes=[],
                      error=f"Not retried: {mask_text(str(exc))}")
    reports = [{"run_id": r.run_id, "job": r.job, "status": r.status, "read": r.read,
                "outcomes": sorted((k, v) for k, v in r.outcomes.items() if v)} for r in outcome.reports]
    with rt.store.transaction(read_only=True, refuse_writes=True) as tx:
        after = {r["id"]: tx.get_dead_letter(r["id"]) for r in rows}
    letters = [{"id": i, "status": (a or {}).get("status", "gone"), "attempts": (a or {}).get("attempts")}
               for i, a in sorted(after.items())]
    return render(req, "dead_letters_retried.html", error=None, outcome=outcome, reports=reports, letters=letters,
                  notes=[mask_text(n) for n in notes])


def routes() -> list[Route]:
    return [route("/dead-letters", overview), route("/dead-letters/retry", retry)]
