"""The dashboard: each job's last run, its status and its lag behind its source (the cursor against now), open
dead letters and conflicts, and charts drawn on the server (:mod:`crmbridge.console.charts`): records and refusals
per run, API calls per system per run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from crmbridge.console.charts import Series, bar_chart
from crmbridge.console.pages._view import duration, when
from crmbridge.console.web import ConsoleRequest, endpoint, render, route
from crmbridge.sync.state.console_views import ConsoleViews

__all__ = ["routes"]

#: runs drawn per chart
CHART_RUNS = 30
_WRITES = ("created", "updated", "deleted")


def _n(counts: dict[str, Any], key: str) -> int:
    v = counts.get(key)
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def _refused(counts: dict[str, Any]) -> int:
    refusals = counts.get("refusals")
    if isinstance(refusals, dict) and refusals:
        return sum(int(v) for v in refusals.values() if isinstance(v, int | float))
    return _n(counts, "failed")


def _cursor_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _charts(job: str, series: list[dict[str, Any]]) -> dict[str, Any]:
    labels = [f"#{r['id']}" for r in series]
    counts = [dict(r["counts"] or {}) for r in series]
    records = bar_chart(f"{job}: records per run", labels, [
        Series("read", [_n(c, "read") for c in counts]),
        Series("written", [sum(_n(c, k) for k in _WRITES) for c in counts]),
        Series("refused", [_refused(c) for c in counts], "#c62828"),
    ])
    systems: list[str] = sorted({s for c in counts for s in (c.get("api_calls_by_system") or {})})
    per_system = [Series(s, [_n(c.get("api_calls_by_system") or {}, s) for c in counts]) for s in systems]
    untold = [_n(c, "api_calls") if not c.get("api_calls_by_system") else 0 for c in counts]
    if any(untold):   # runs recorded before the runs table kept calls per system
        per_system.append(Series("(runs before per-system counts)", untold, "#6b7785"))
    calls = bar_chart(f"{job}: API calls per system per run", labels, per_system, stacked=True)
    return {"records": records, "calls": calls}


@endpoint("view")
def dashboard(req: ConsoleRequest) -> Response:
    runtime = req.state.runtime
    jobs = sorted(runtime.config.jobs)
    now = runtime.store.clock()
    rows = []
    with runtime.store.transaction(read_only=True, refuse_writes=True) as tx:
        views = ConsoleViews(tx)
        for job in jobs:
            last = tx.list_runs(job, limit=1)
            run = last[0] if last else None
            cfg = runtime.config.jobs[job]
            source_key = f"{cfg.source_system}.{cfg.source_object}"
            sides = []
            for c in views.cursors_of(job):
                at = _cursor_time(c["value"])
                if at is not None:
                    sides.append({"object": c["object"], "at": at.strftime("%Y-%m-%d %H:%M:%S"),
                                  "lag": duration(max(0.0, (now - at).total_seconds())),
                                  "source": c["object"] == source_key})
            head = next((x for x in sides if x["source"]), sides[0] if sides else None)
            letters, waiting = tx.open_counts(job)
            rows.append({
                "job": job, "route": f"{cfg.source_system}.{cfg.source_object} → "
                                     f"{cfg.target_system}.{cfg.target_object}",
                "two_way": cfg.direction == "two_way",
                "run": run, "started": when(run["started_at"]) if run else None,
                "took": duration((run["finished_at"] - run["started_at"]).total_seconds())
                if run and run["finished_at"] else "—",
                "lag": head["lag"] if head else "no cursor yet", "cursor": head["at"] if head else None,
                "other_sides": [x for x in sides if x is not head],
                "letters": letters, "conflicts": waiting,
                "charts": _charts(job, views.recent_runs(job, limit=CHART_RUNS)),
            })
    return render(req, "dashboard.html", rows=rows, now=when(now))


def routes() -> list[Route]:
    return [route("/", dashboard)]
