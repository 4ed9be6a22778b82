"""The auditors' queries on a small real sync: history by party, identifier (blind index) or a system's record id,
with a date window and JSON; a whole run; exports filtered by job, action and date, as JSONL and CSV. Tables fit
100 columns, one line per entry."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger_helpers import cli

from crmbridge.sync.state.ledger import Ledger, decode_entry

TODAY = datetime.now(UTC).date()


def _entries(rt: Any, **filters: Any) -> list[dict[str, Any]]:
    with rt.store.transaction(read_only=True) as tx:
        return [decode_entry(e) for e in Ledger(tx.connection).iter_entries(**filters)]


def _created(rt: Any) -> dict[str, Any]:
    return next(e for e in _entries(rt, job="core_to_zoho") if e["action"] == "created")


def _table_rows(out: str) -> list[str]:
    """The lines of a table that are entries (they start with a seq)."""
    return [line for line in out.splitlines() if line.split(" ", 1)[0].isdigit()]


def _fits(out: str) -> None:
    assert max(len(line) for line in out.splitlines()) <= 100, out


def test_history_by_party_by_identifier_and_by_system_id_agree(synced, capsys) -> None:
    env, rt = synced
    e = _created(rt)
    pid, cfg = e["party_id"], str(env.config_path)
    expected = [x["seq"] for x in _entries(rt, party_ids=[pid])]
    code, by_party = cli(capsys, "ledger", "history", "--party", pid, "-c", cfg)
    assert code == 0
    _fits(by_party)
    rows = _table_rows(by_party)
    assert [int(r.split()[0]) for r in rows] == expected          # one line per entry
    assert all(pid[:7] in r and pid not in r for r in rows)       # the id shortened
    ric = env.core.store.get(e["source_id"])["id_number"]
    code, by_ident = cli(capsys, "ledger", "history", "--identifier", f"CN_RIC:{ric}", "-c", cfg)
    assert code == 0 and _table_rows(by_ident) == rows and ric not in by_ident, by_ident
    for argv in (("--system", "zoho_cn", "--object", "Contacts", "--id", e["target_id"]),
                 ("--system", "corebank", "--id", e["source_id"])):
        code, by_id = cli(capsys, "ledger", "history", *argv, "-c", cfg)
        assert code == 0 and _table_rows(by_id) == rows, argv


def test_history_with_a_date_window_and_as_json(synced, capsys) -> None:
    env, rt = synced
    pid, cfg = _created(rt)["party_id"], str(env.config_path)
    code, out = cli(capsys, "ledger", "history", pid, "-c", cfg, "--json", "--since", TODAY.isoformat(),
                    "--until", TODAY.isoformat())
    assert code == 0
    data = json.loads(out)
    assert data and {d["party_id"] for d in data} == {pid} and all("diff_enc" not in d for d in data)
    assert data[0]["actor_note"] and isinstance(data[0]["masked_after"], dict)
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    code, out = cli(capsys, "ledger", "history", pid, "-c", cfg, "--until", yesterday)
    assert code == 1 and "no ledger entries" in out
    code, out = cli(capsys, "ledger", "history", pid, "-c", cfg, "--json", "--since",
                    (TODAY + timedelta(days=1)).isoformat())
    assert code == 1 and json.loads(out) == []
    code, out = cli(capsys, "ledger", "history", pid, "-c", cfg, "--since", "yesterday")
    assert code == 2 and "ISO date" in out


def test_show_a_whole_run_and_one_entry_in_detail(synced, capsys) -> None:
    env, rt = synced
    cfg = str(env.config_path)
    run = _created(rt)["run_id"]
    expected = [x["seq"] for x in _entries(rt, run_id=run)]
    code, out = cli(capsys, "ledger", "show", "--run", run, "-c", cfg)
    assert code == 0
    _fits(out)
    assert [int(r.split()[0]) for r in _table_rows(out)] == expected
    e = _created(rt)
    code, out = cli(capsys, "ledger", "show", "--seq", str(e["seq"]), "-c", cfg)
    assert code == 0 and f"party: {e['party_id']}" in out and f"target: zoho_cn/Contacts/{e['target_id']}" in out
    assert "by: " in out and "[ticket 4711]" in out
    code, out = cli(capsys, "ledger", "show", "--run", "no-such-run", "-c", cfg)
    assert code == 1


def test_exports_filtered_by_job_action_and_date_as_jsonl_and_csv(synced, capsys) -> None:
    env, rt = synced
    cfg = str(env.config_path)
    failed = [x["seq"] for x in _entries(rt, actions=["failed"])]
    assert failed
    code, out = cli(capsys, "ledger", "export", "--format", "csv", "--action", "failed", "-c", cfg)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["seq"]) for r in rows] == failed and {r["action"] for r in rows} == {"failed"}
    assert {"payload", "answer", "correlation_id", "mapping_versions", "actor_note"} <= set(rows[0])
    code, out = cli(capsys, "ledger", "export", "--job", "core_to_zoho", "--action", "created", "--action",
                    "failed", "--since", TODAY.isoformat(), "-c", cfg)
    assert code == 0
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    got = {x["action"] for x in lines if x["type"] == "entry"}
    assert got == {"created", "failed"}
    code, out = cli(capsys, "ledger", "export", "--until", (TODAY - timedelta(days=1)).isoformat(), "-c", cfg)
    assert code == 0 and not [x for x in out.splitlines() if '"type":"entry"' in x]
    code, out = cli(capsys, "ledger", "export", "--action", "nonsense", "-c", cfg)
    assert code == 2 and "unknown action" in out
