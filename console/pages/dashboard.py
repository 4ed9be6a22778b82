"""The dashboard: each job's last run and its status."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from crmbridge.console.web import ConsoleRequest, endpoint, render, route

__all__ = ["routes"]


@endpoint("view")
def dashboard(req: ConsoleRequest) -> Response:
    runtime = req.state.runtime
    jobs = sorted(runtime.config.jobs)
    last = {}
    with runtime.store.transaction(read_only=True, refuse_writes=True) as tx:
        for job in jobs:
            rows = tx.list_runs(job, limit=1)
            last[job] = rows[0] if rows else None
    return render(req, "dashboard.html", jobs=jobs, last=last)


def routes() -> list[Route]:
    return [route("/", dashboard)]
