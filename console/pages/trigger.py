"""Trigger a run or a dry run of a job (action ``run.trigger``, operators).

The run goes in a thread of the console's process through the same :func:`crmbridge.sync.engine.run_job` as
``crmbridge run``, with the signed-in user as its actor (``alice@console [triggered from the console: …]``), so
it takes the job's lease like any run: while the scheduler or another process runs the job, the trigger is recorded
as a refused run and shown here. One triggered run per job at a time in this process. The page lists this
process's recent triggers with their outcome; every run, whoever started it, is on the runs page.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crmbridge.console.actions import actor_for
from crmbridge.console.web import ConsoleRequest, endpoint, render, route

__all__ = ["Trigger", "routes"]

_LOG = logging.getLogger(__name__)
#: triggers shown on the page (this process only)
_KEEP = 20


@dataclass
class Trigger:
    job: str
    dry_run: bool
    by: str
    started_at: datetime
    finished_at: datetime | None = None
    run_id: str | None = None
    status: str = "running"
    summary: str = ""
    done: threading.Event = field(default_factory=threading.Event)


class _Triggers:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.recent: deque[Trigger] = deque(maxlen=_KEEP)

    def running(self, job: str) -> Trigger | None:
        return next((t for t in self.recent if t.job == job and t.status == "running"), None)


def _triggers(req: ConsoleRequest) -> _Triggers:
    state = req.state
    if getattr(state, "triggers", None) is None:
        state.triggers = _Triggers()
    return state.triggers  # type: ignore[no-any-return]


def _summary(report: Any) -> str:
    parts = [f"read {report.read}"]
    parts += [f"{k} {v}" for k, v in sorted(report.actions.items()) if v]
    if report.dry_run:
        parts.append(f"{report.planned_write_calls} write calls planned")
    return ", ".join(parts)


def _run(rt: Any, trigger: Trigger, actor: str) -> None:
    from crmbridge.core.errors import CrmBridgeError
    from crmbridge.sync.engine import run_job

    try:
        report = run_job(rt, trigger.job, dry_run=trigger.dry_run, actor=actor)
        trigger.run_id, trigger.status, trigger.summary = str(report.run_id), report.status, _summary(report)
    except CrmBridgeError as exc:   # refused (lease held), configuration, unreachable: one clear line, masked
        trigger.status, trigger.summary = "refused" if "lease" in type(exc).__name__.lower() else "failed", str(exc)
    except Exception as exc:   # a bug: logged with its type only, the page says where to look
        _LOG.exception("triggered run of %s failed", trigger.job)
        trigger.status, trigger.summary = "failed", f"internal error ({type(exc).__name__}); see the console's log"
    finally:
        trigger.finished_at = datetime.now(UTC)
        trigger.done.set()


@endpoint("view")
def trigger_page(req: ConsoleRequest) -> Response:
    jobs = sorted(req.state.runtime.config.jobs)
    return render(req, "trigger.html", jobs=jobs, recent=list(reversed(_triggers(req).recent)),
                  may_trigger=req.principal.may("run.trigger"), message=req.query.get("message"))


@endpoint("run.trigger", methods=["POST"])
def trigger_run(req: ConsoleRequest) -> Response:
    rt = req.state.runtime
    job = req.form.get("job", "")
    if job not in rt.config.jobs:
        return render(req, "trigger.html", status_code=400, jobs=sorted(rt.config.jobs),
                      recent=list(reversed(_triggers(req).recent)), may_trigger=True,
                      message=f"no job {job[:64]!r} in the configuration")
    dry_run = req.form.get("mode") == "dry-run"
    note = "triggered from the console" + (f": {req.form['reason'].strip()[:200]}"
                                           if req.form.get("reason", "").strip() else "")
    triggers = _triggers(req)
    with triggers.lock:
        if triggers.running(job) is not None:
            return RedirectResponse(f"/runs/trigger?message=a+run+of+{job}+triggered+here+is+still+going",
                                    status_code=303)
        t = Trigger(job=job, dry_run=dry_run, by=req.principal.username, started_at=datetime.now(UTC))
        triggers.recent.append(t)
    threading.Thread(target=_run, args=(rt, t, actor_for(req, note)), name=f"console-run-{job}",
                     daemon=True).start()
    kind = "dry+run" if dry_run else "run"
    return RedirectResponse(f"/runs/trigger?message={kind}+of+{job}+started", status_code=303)


def routes() -> list[Route]:
    return [route("/runs/trigger", trigger_page), route("/runs/trigger", trigger_run)]
