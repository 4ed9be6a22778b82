"""Triggering a run or a dry run from the console (operators): the run is the engine's own, with the signed-in
user as its actor; a dry run writes nothing to any vendor."""

from __future__ import annotations

import time

from console_world import Served, csrf_of


def _writes(served: Served) -> int:
    """Vendor calls that can change a record (token and query calls excluded)."""
    def changing(key: str) -> bool:
        return not key.startswith("GET") and not any(w in key.lower() for w in ("token", "oauth", "query", "find"))
    return sum(n for sim in (served.env.zoho, served.env.fxiaoke) for k, n in sim.requests_seen.items()
               if changing(k))


def _wait_done(served: Served, s, job: str, timeout: float = 60) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = s.get(f"{served.url}/runs/trigger").text
        row = page.split("Triggered here", 1)[1]
        if job in row and "s-running" not in row:
            return row
        time.sleep(0.2)
    raise AssertionError("the triggered run did not finish")


def test_an_operator_triggers_a_dry_run_then_a_run_with_their_name_as_actor(served: Served) -> None:
    rt = served.runtime
    job = "core_to_zoho"
    s = served.session("oscar")
    page = s.get(f"{served.url}/runs/trigger")
    assert page.status_code == 200 and job in page.text and "Dry run" in page.text
    writes_before = _writes(served)
    r = s.post(f"{served.url}/runs/trigger", data={"csrf_token": csrf_of(page.text), "job": job, "mode": "dry-run",
                                                   "reason": "check before the release"}, allow_redirects=False)
    assert r.status_code == 303 and "dry+run" in r.headers["location"]
    row = _wait_done(served, s, job)
    assert "dry run" in row and "oscar" in row and "s-failed" not in row, row[:2000]
    with rt.store.transaction() as tx:
        (last,) = tx.list_runs(job, limit=1)
    assert last["dry_run"] and last["actor"].startswith("oscar@console") and "check before the release" in last["actor"]
    writes_after = _writes(served)
    assert writes_after == writes_before            # a dry run writes nowhere
    page = s.get(f"{served.url}/runs/trigger")
    r = s.post(f"{served.url}/runs/trigger", data={"csrf_token": csrf_of(page.text), "job": job, "mode": "run"},
               allow_redirects=False)
    assert r.status_code == 303
    _wait_done(served, s, job)
    with rt.store.transaction() as tx:
        (last,) = tx.list_runs(job, limit=1)
    assert not last["dry_run"] and last["actor"].startswith("oscar@console") and last["status"] != "running"


def test_an_unknown_job_is_refused_and_an_auditor_may_not_trigger(served: Served) -> None:
    s = served.session("oscar")
    token = csrf_of(s.get(f"{served.url}/runs/trigger").text)
    r = s.post(f"{served.url}/runs/trigger", data={"csrf_token": token, "job": "no_such_job", "mode": "run"})
    assert r.status_code == 400 and "no job" in r.text
    a = served.session("audrey")
    page = a.get(f"{served.url}/runs/trigger")
    assert page.status_code == 200 and "operators trigger runs" in page.text
    r = a.post(f"{served.url}/runs/trigger", data={"csrf_token": csrf_of(page.text), "job": "x", "mode": "run"})
    assert r.status_code == 403
