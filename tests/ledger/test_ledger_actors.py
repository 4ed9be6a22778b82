"""Accountable actors: the operating-system user and host behind every command, ``--actor``/``--reason`` an
annotation beside them; every ``--reveal`` ledgered (who, which fields of which party, why), refused without a
reason or when the configuration forbids reveals."""

from __future__ import annotations

import getpass
import json
import socket
from typing import Any

import yaml
from ledger_helpers import NOTE, cli

from crmbridge.sync.state.ledger import Action, Ledger, LedgerEntryIn, decode_entry

ME = f"{getpass.getuser()}@{socket.gethostname()}"
MOBILE = "+8613812345678"


def _entries(rt: Any, **filters: Any) -> list[dict[str, Any]]:
    with rt.store.transaction(read_only=True) as tx:
        return [decode_entry(e) for e in Ledger(tx.connection).iter_entries(**filters)]


def _revealed(rt: Any) -> list[dict[str, Any]]:
    return [e for e in _entries(rt) if e["action"] == Action.REVEALED]


def test_a_run_records_the_operating_system_user_with_the_actor_option_beside_it(synced) -> None:
    _, rt = synced
    entries = _entries(rt, job="core_to_zoho")
    assert entries and {(e["actor"], e["actor_note"]) for e in entries} == {(ME, NOTE)}
    with rt.store.transaction(read_only=True) as tx:
        run = tx.connection.exec_driver_sql("SELECT actor FROM runs ORDER BY id LIMIT 1").scalar()
    assert run == f"{ME} [{NOTE}]"


def test_an_actor_string_with_an_annotation_is_stored_as_actor_and_note() -> None:
    e = LedgerEntryIn(action=Action.UPDATED, actor="alice@ops-01 [on behalf of compliance]")
    assert (e.actor, e.actor_note) == ("alice@ops-01", "on behalf of compliance")
    plain = LedgerEntryIn(action=Action.UPDATED, actor="scheduler")
    assert (plain.actor, plain.actor_note) == ("scheduler", None)


def _record(tmp_path) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "zoho_record.json"
    path.write_text(json.dumps({"id": "42", "Last_Name": "张三", "Mobile": MOBILE,
                                "Modified_Time": "2026-01-01T00:00:00+08:00"}, ensure_ascii=False), encoding="utf-8")
    return str(path)


def _zoho_mapping(env: Any) -> str:
    from crmbridge.config import resolve_mapping_path

    return str(resolve_mapping_path(env.config()["jobs"]["core_to_zoho"]["target_mapping"], env.config_path.parent))


def test_a_reveal_is_ledgered_before_it_is_shown_and_needs_a_reason(synced, tmp_path, capsys) -> None:
    env, rt = synced
    cfg, before = str(env.config_path), len(_revealed(rt))
    code, out = cli(capsys, "mapping", "preview", _zoho_mapping(env), "-r", _record(tmp_path), "--reveal", "-c", cfg)
    assert code == 2 and "--reason" in out and MOBILE not in out
    assert len(_revealed(rt)) == before
    code, out = cli(capsys, "mapping", "preview", _zoho_mapping(env), "-r", _record(tmp_path), "--reveal", "-c", cfg,
                    "--reason", "complaint 88: check the mobile", "--actor", "for the DPO")
    assert code == 0 and MOBILE in out
    (rev,) = _revealed(rt)[before:]
    assert rev["actor"] == ME and rev["actor_note"] == "for the DPO"
    assert "complaint 88: check the mobile" in rev["reason"] and rev["reason"].startswith("mapping preview")
    assert "contact_points[type=MOBILE].value" in rev["changed_fields"] and "name.legal_zh" in rev["changed_fields"]
    assert (rev["source_system"], rev["source_object"], rev["source_id"]) == ("zoho", "Contacts", "42")
    # without --reveal nothing is ledgered and the mobile stays masked
    code, out = cli(capsys, "mapping", "preview", _zoho_mapping(env), "-r", _record(tmp_path))
    assert code == 0 and MOBILE not in out and len(_revealed(rt)) == before + 1


def test_a_conflict_shown_in_clear_is_ledgered_with_its_party(synced, capsys) -> None:
    env, rt = synced
    pid = next(e["party_id"] for e in _entries(rt, job="core_to_zoho") if e["action"] == "created")
    path = "contact_points[type=MOBILE].value"
    with rt.store.transaction() as tx:
        row = {"job": "core_to_zoho", "party_id": pid}
        seal = {f"{k}_value": tx.seal(rt.cipher, "conflicts", f"{k}_value", row=row, value={path: v})
                for k, v in (("base", "+8613800000001"), ("source", "+8613800000002"), ("target", MOBILE))}
        cid = tx.add_conflict("core_to_zoho", pid, [path], **seal)
    cfg = str(env.config_path)
    code, out = cli(capsys, "conflicts", "show", str(cid), "-c", cfg)
    assert code == 0 and MOBILE not in out
    code, out = cli(capsys, "conflicts", "show", str(cid), "-c", cfg, "--reveal", "--reason", "four eyes later")
    assert code == 0 and MOBILE in out
    rev = _revealed(rt)[-1]
    assert (rev["party_id"], rev["job"], rev["changed_fields"], rev["actor"]) == (pid, "core_to_zoho", [path], ME)
    assert rev["reason"] == f"conflicts show {cid}: four eyes later"


def test_reveals_are_refused_when_the_configuration_forbids_them(synced, tmp_path, capsys) -> None:
    env, rt = synced
    data = env.config()
    data["privacy"] = {"reveal": "deny"}
    deny = env.config_path.parent / "deny.yaml"
    deny.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    before = len(_revealed(rt))
    code, out = cli(capsys, "mapping", "preview", _zoho_mapping(env), "-r", _record(tmp_path), "--reveal",
                    "-c", str(deny), "--reason", "curious")
    assert code == 2 and "privacy.reveal" in out and "refused" in out and MOBILE not in out
    code, out = cli(capsys, "conflicts", "show", "1", "-c", str(deny), "--reveal", "--reason", "curious")
    assert code == 2 and "privacy.reveal" in out
    code, out = cli(capsys, "ledger", "history", "--system", "corebank", "--id", "000000001", "-c", str(deny),
                    "--reveal", "--reason", "curious")
    assert code == 2 and "privacy.reveal" in out
    assert len(_revealed(rt)) == before


def test_ledger_history_reveal_decrypts_the_clear_values_and_is_ledgered(synced, capsys) -> None:
    env, rt = synced
    cfg = str(env.config_path)
    e = next(x for x in _entries(rt, job="core_to_zoho") if x["action"] == "created")
    name = env.core.store.get(e["source_id"])["name"]
    code, out = cli(capsys, "ledger", "history", e["party_id"], "-c", cfg, "--values")
    assert code == 0 and name not in out
    code, out = cli(capsys, "ledger", "history", e["party_id"], "-c", cfg, "--reveal")
    assert code == 2 and name not in out and "--reason" in out
    before = len(_revealed(rt))
    code, out = cli(capsys, "ledger", "history", e["party_id"], "-c", cfg, "--reveal", "--reason", "court order 7")
    assert code == 0 and f"'{name}' (clear)" in out
    (rev,) = _revealed(rt)[before:]
    assert (rev["party_id"], rev["actor"]) == (e["party_id"], ME) and "name.legal_zh" in rev["changed_fields"]
    assert rev["reason"].endswith("court order 7")
    code, out = cli(capsys, "ledger", "show", "--seq", str(e["seq"]), "-c", cfg, "--reveal", "--reason", "again",
                    "--json")
    assert code == 0 and json.loads(out)[0]["clear_diff"]["name.legal_zh"][1] == name
    assert len(_revealed(rt)) == before + 2
