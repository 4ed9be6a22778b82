"""The console's actions over real HTTP: who may take each (a refused one changes nothing), what it does, and that
the signed-in user is the accountable actor of what it causes (runs table, conflicts, ledger)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from console_world import csrf_of
from pages_world import World, world

from crmbridge.sync.state.ledger import decode_entry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with world(tmp_path_factory.mktemp("actions")) as wd:
        yield wd


def _post(w: World, s: requests.Session, page: str, action: str, data: dict[str, str]) -> requests.Response:
    token = csrf_of(s.get(w.url + page).text)
    return s.post(w.url + action, data={"csrf_token": token, **data}, allow_redirects=False)


def _conflict(w: World, cid: int) -> dict[str, object]:
    with w.served.runtime.store.transaction(read_only=True) as tx:
        return tx.get_conflict(cid)  # type: ignore[return-value]


def test_an_auditor_or_operator_may_not_resolve_a_conflict(w: World) -> None:
    for user in ("audrey", "oscar"):
        r = _post(w, w.served.session(user), "/conflicts/1", "/conflicts/1/resolve",
                  {"take": "target", "reason": "looks right"})
        assert r.status_code == 403 and "conflict.resolve" in r.text
    assert _conflict(w, 1)["status"] == "open"


def test_a_resolution_needs_the_csrf_token_and_a_reason(w: World) -> None:
    s = w.served.session("stella")
    r = s.post(w.url + "/conflicts/1/resolve", data={"take": "source", "reason": "x"}, allow_redirects=False)
    assert r.status_code == 403
    r = _post(w, s, "/conflicts/1", "/conflicts/1/resolve", {"take": "source", "reason": "  "})
    assert r.status_code == 400 and "Give the reason" in r.text
    r = _post(w, s, "/conflicts/1", "/conflicts/1/resolve", {"take": "everything", "reason": "why not"})
    assert r.status_code == 400
    assert _conflict(w, 1)["status"] == "open"


def test_a_steward_resolves_a_conflict_with_a_reason_and_is_its_actor(w: World) -> None:
    s = w.served.session("stella")
    r = _post(w, s, "/conflicts/1", "/conflicts/1/resolve",
              {"take": "source", "reason": "core banking owns legal names"})
    assert r.status_code == 303 and r.headers["location"] == "/conflicts/1?done=1"
    row = _conflict(w, 1)
    assert row["status"] == "resolved" and row["resolution"] == "source"
    assert str(row["actor"]).startswith("stella@console")
    with w.served.runtime.store.transaction(read_only=True) as tx:
        entries = [decode_entry(e) for e in tx.ledger().iter_entries(actions=["conflict-resolved"])]
    assert len(entries) == 1
    e = entries[0]
    assert e["actor"] == "stella@console" and e["actor_note"] == "reason: core banking owns legal names"
    assert "conflict 1 resolved: took source" in e["reason"]
    # Fxiaoke has the core's name back; the page says resolved, by whom
    page = s.get(w.url + "/conflicts/1").text
    assert "Resolved; the decision is in the ledger." not in page
    assert "stella@console" in page and 'id="resolve"' not in page
    # resolving it again is refused with the reason, nothing written
    r = _post(w, s, "/conflicts/1", "/conflicts/1/resolve", {"take": "target", "reason": "again"})
    assert r.status_code in (403, 409) or "already resolved" in r.text


def test_dead_letter_retry_is_an_operators_action(w: World) -> None:
    with w.served.runtime.store.transaction(read_only=True) as tx:
        letter = tx.list_dead_letters(status=["open"], limit=1)[0]
        runs_before = len(tx.list_runs(limit=100))
    r = _post(w, w.served.session("audrey"), "/dead-letters", "/dead-letters/retry", {"ids": str(letter["id"])})
    assert r.status_code == 403
    r = _post(w, w.served.session("stella"), "/dead-letters", "/dead-letters/retry", {"ids": str(letter["id"])})
    assert r.status_code == 403
    with w.served.runtime.store.transaction(read_only=True) as tx:
        assert len(tx.list_runs(limit=100)) == runs_before
        assert tx.get_dead_letter(letter["id"])["attempts"] == letter["attempts"]  # type: ignore[index]


def test_an_operator_retries_the_dead_letters_of_a_reason_and_the_run_names_them(w: World) -> None:
    with w.served.runtime.store.transaction(read_only=True) as tx:
        letters = [d for d in tx.list_dead_letters(status=["open"], limit=100)
                   if d["job"] == "core_fxiaoke" and d["reason_code"] == "invalid_checksum"]
    assert len(letters) == 2
    r = _post(w, w.served.session("oscar"), "/dead-letters", "/dead-letters/retry",
              {"job": "core_fxiaoke", "reason": "invalid_checksum"})
    assert r.status_code == 200, r.text[:500]
    assert "2 letter(s) made due" in r.text and "oscar@console" in r.text
    run_id = int(re.search(r'href="/runs/(\d+)"', r.text).group(1))  # type: ignore[union-attr]
    with w.served.runtime.store.transaction(read_only=True) as tx:
        run = tx.get_run(run_id)
        after = [tx.get_dead_letter(d["id"]) for d in letters]
    assert run["job"] == "core_fxiaoke" and run["actor"] == "oscar@console"  # type: ignore[index]
    # the records are still bad at the source: read again, dead-lettered again (one more attempt each)
    assert [a["attempts"] for a in after] == [d["attempts"] + 1 for d in letters]  # type: ignore[index]
    assert re.findall(r'<tr data-letter="(\d+)">', r.text) == [str(d["id"]) for d in letters]


def test_only_an_auditor_verifies_the_ledger(w: World) -> None:
    r = _post(w, w.served.session("oscar"), "/ledger", "/ledger/verify", {})
    assert r.status_code == 403
    r = _post(w, w.served.session("audrey"), "/ledger", "/ledger/verify", {})
    assert r.status_code == 200
    verdict = re.search(r'<div class="notice" id="verdict".*?</div>', r.text, re.S).group(0)  # type: ignore[union-attr]
    assert "Verified" in verdict and "OK: " in verdict and "audrey@console" in verdict


def test_an_auditors_export_verifies_offline_with_the_standalone_verifier(w: World, tmp_path: Path) -> None:
    r = _post(w, w.served.session("olga"), "/ledger", "/ledger/export", {})   # operator + auditor
    assert r.status_code == 200
    assert r.headers["content-disposition"].startswith('attachment; filename="crmbridge-ledger-')
    export = tmp_path / "ledger.jsonl"
    export.write_bytes(r.content)
    key = tmp_path / "ledger.pub.pem"
    key.write_text(w.served.session("audrey").get(w.url + "/ledger/public-key.pem").text)
    lines = r.content.decode().splitlines()
    assert any('"type":"checkpoint"' in x for x in lines) and any('"type":"entry"' in x for x in lines)
    assert w.ric not in r.content.decode()
    done = subprocess.run([sys.executable, str(ROOT / "sync/state/verify_ledger.py"), str(export), "--public-key",
                           str(key)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK: ")
    # and a tampered copy does not verify
    bad = tmp_path / "tampered.jsonl"
    bad.write_text("\n".join(x.replace('"action":"created"', '"action":"deleted"', 1) if i == 3 else x
                             for i, x in enumerate(lines)) + "\n")
    done = subprocess.run([sys.executable, str(ROOT / "sync/state/verify_ledger.py"), str(bad), "--public-key",
                           str(key)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "TAMPERED" in done.stdout


def test_a_steward_may_not_export_the_ledger(w: World) -> None:
    r = _post(w, w.served.session("stella"), "/ledger", "/ledger/export", {})
    assert r.status_code == 403 and "ledger.export" in r.text


def test_a_retry_while_the_job_runs_elsewhere_says_so(w: World) -> None:
    store = w.served.runtime.store
    with store.transaction(read_only=True) as tx:
        letter = next(d for d in tx.list_dead_letters(status=["open"], limit=100) if d["job"] == "core_to_zoho")
    assert store.acquire_lease("core_to_zoho", "another-host:4242:cafe", 300)
    try:
        r = _post(w, w.served.session("oscar"), "/dead-letters", "/dead-letters/retry", {"ids": str(letter["id"])})
    finally:
        store.release_lease("core_to_zoho", "another-host:4242:cafe")
    assert r.status_code == 409 and "Not retried" in r.text and "already running" in r.text


def test_the_dashboard_draws_runs_recorded_before_calls_per_system(w: World) -> None:
    store = w.served.runtime.store
    with store.transaction() as tx:   # a run recorded by an earlier crmbridge: API calls as one total
        run_id = tx.start_run("core_to_zoho", actor="ops@test")
        tx.finish_run(run_id, "succeeded", counts={"read": 5, "unchanged": 5, "api_calls": 7})
    html = w.served.session("audrey").get(w.url + "/").text
    calls = next(s for s in re.findall(r"<svg .*?</svg>", html, re.S) if "core_to_zoho: API calls" in s)
    assert f"#{run_id} · (runs before per-system counts): 7<" in calls
