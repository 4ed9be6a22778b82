"""Runs: the list (filtered by job, status and start date, paginated on the run id: never OFFSET) and one run's
records with their outcome, the masked payload sent and the vendor's answer, as the ledger keeps them (paginated
on the ledger's seq)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from crmbridge.console.pages._view import day, duration, entry_view, int_param, when
from crmbridge.console.web import ConsoleRequest, endpoint, render, route
from crmbridge.core.logsafe import mask_text
from crmbridge.sync.state.console_views import ConsoleViews

__all__ = ["routes"]

_WRITES = ("created", "updated", "deleted")
#: counts that are not record decisions
_NOT_DECISIONS = ("read", "api_calls", "retries", "throttled", "refusals", "outcomes", "api_calls_by_system",
                  "unreachable", "clock_ahead_seconds")


def _n(counts: dict[str, Any], key: str) -> int:
    v = counts.get(key)
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def _row(r: dict[str, Any]) -> dict[str, Any]:
    c = dict(r.get("counts") or {})
    took = (r["finished_at"] - r["started_at"]).total_seconds() if r.get("finished_at") else None
    return {"id": r["id"], "job": r["job"], "status": r["status"], "dry_run": bool(r.get("dry_run")),
            "started": when(r["started_at"]), "finished": when(r.get("finished_at")), "took": duration(took),
            "read": _n(c, "read"), "written": sum(_n(c, k) for k in _WRITES), "failed": _n(c, "failed"),
            "reason": mask_text(r["error_summary"]) if r.get("error_summary") else "",
            "actor": r.get("actor") or "", "host": r.get("host") or "", "pid": r.get("pid"), "counts": c}


@endpoint("view")
def runs_list(req: ConsoleRequest) -> Response:
    q = req.query
    page = req.state.settings.page_size
    job = q.get("job") or None
    status = q.get("status") or None
    since, until = day(q.get("from")), day(q.get("to"), end=True)
    before = int_param(q, "before")
    with req.state.runtime.store.transaction(read_only=True, refuse_writes=True) as tx:
        views = ConsoleViews(tx)
        rows = views.runs_page(job=job, status=status, since=since, until=until, before_id=before, limit=page)
        statuses = views.statuses()
    more = len(rows) > page
    rows = rows[:page]
    keep = {k: v for k, v in (("job", job), ("status", status), ("from", q.get("from")), ("to", q.get("to"))) if v}
    older = f"/runs?{urlencode({**keep, 'before': rows[-1]['id']})}" if more and rows else None
    newest = f"/runs?{urlencode(keep)}" if before is not None else None
    return render(req, "runs.html", runs=[_row(r) for r in rows], jobs=sorted(req.state.runtime.config.jobs),
                  statuses=statuses, f={"job": job or "", "status": status or "", "from": q.get("from", ""),
                                        "to": q.get("to", "")}, older=older, newest=newest)


@endpoint("view")
def run_detail(req: ConsoleRequest) -> Response:
    run_id = int(req.request.path_params["run_id"])
    page = req.state.settings.page_size
    after = int_param(req.query, "after") or 0
    with req.state.runtime.store.transaction(read_only=True, refuse_writes=True) as tx:
        run = tx.get_run(run_id)
        entries = ConsoleViews(tx).entries(run_id=str(run_id), after_seq=after, limit=page) if run else []
    if run is None:
        return render(req, "not_found.html", status_code=404, what=f"run {run_id}")
    more = len(entries) > page
    entries = entries[:page]
    r = _row(run)
    decisions = sorted((k, v) for k, v in r["counts"].items() if k not in _NOT_DECISIONS and not isinstance(v, dict))
    refusals = sorted(((mask_text(str(k)), v) for k, v in (r["counts"].get("refusals") or {}).items()),
                      key=lambda kv: (-(kv[1] if isinstance(kv[1], int) else 0), kv[0]))
    return render(req, "run.html", run=r, decisions=decisions, refusals=refusals,
                  outcomes=sorted((r["counts"].get("outcomes") or {}).items()),
                  calls=sorted((r["counts"].get("api_calls_by_system") or {}).items()),
                  entries=[entry_view(e) for e in entries],
                  next_page=f"/runs/{run_id}?after={entries[-1]['seq']}" if more else None,
                  first_page=f"/runs/{run_id}" if after else None)


def routes() -> list[Route]:
    return [route("/runs", runs_list), route("/runs/{run_id:int}", run_detail)]
