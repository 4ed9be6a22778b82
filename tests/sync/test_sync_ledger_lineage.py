"""Lineage of the engine's own ledger entries on real runs against the simulators: every action kind labelled with
the source and target system, object and id of its direction (checked against the cross-references), the payload
recorded exactly as the simulator received it (compared masked), the vendor's answer and a correlation id, only the
fields the written side receives."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from sync_helpers import CUSTOMERS, custno, expected_in_zoho, synthetic

from crmbridge.adapters.base import WriteItem
from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import load_mapping
from crmbridge.cli.main import main
from crmbridge.config import resolve_mapping_path
from crmbridge.sync.engine import run_job
from crmbridge.sync.resolution import resolve_conflict
from crmbridge.sync.state.ledger import Action, decode_entry
from crmbridge.sync.state.lineage import masked_payload

ONE_WAY, TWO_WAY = "core_to_zoho", "core_fxiaoke"
CORE = ("corebank", "Customer")
ZOHO = ("zoho_cn", "Contacts")
FX = ("fxiaoke", "AccountObj")
#: canonical fields the core knows and no CRM mapping sends
NEVER_SENT = {"date_of_birth", "kyc.risk_rating", "aum.amount"}


def entries(rt: Any, job: str, since: int = 0) -> list[dict[str, Any]]:
    with rt.store.transaction(read_only=True) as tx:
        return [decode_entry(e) for e in tx.ledger().iter_entries(job=job) if e["seq"] > since]


def head(rt: Any) -> int:
    with rt.store.transaction(read_only=True) as tx:
        return tx.ledger().head()[0]


def party_of(rt: Any, side: tuple[str, str], external_id: str) -> str | None:
    with rt.store.transaction(read_only=True) as tx:
        return tx.get_xref(*side, external_id)


def id_at(rt: Any, pid: str, side: tuple[str, str]) -> str:
    with rt.store.transaction(read_only=True) as tx:
        return tx.xrefs_for_party(pid, *side)[0][2]


def assert_labelled(rt: Any, e: dict[str, Any], source: tuple[str, str], target: tuple[str, str], *,
                    source_id: str | None = None, target_id: str | None = None) -> None:
    """``e`` runs from ``source`` to ``target``, and each id it names is that party's record on its side."""
    assert (e["source_system"], e["source_object"]) == source, e
    assert (e["target_system"], e["target_object"]) == target, e
    if source_id is not None:
        assert e["source_id"] == source_id, e
    if target_id is not None:
        assert e["target_id"] == target_id, e
    if e["party_id"]:
        for side, ext in ((source, e["source_id"]), (target, e["target_id"])):
            if ext is not None:
                assert party_of(rt, side, ext) == e["party_id"], (e["action"], side, ext)


def one(found: list[dict[str, Any]], action: str, **where: Any) -> dict[str, Any]:
    hits = [e for e in found if e["action"] == action and all(e[k] == v for k, v in where.items())]
    assert len(hits) == 1, (action, where, Counter(e["action"] for e in found))
    return hits[0]


def rm_edit(rt: Any, fx_id: str, **fields: Any) -> None:
    """A relationship manager's edit in Fxiaoke, through Fxiaoke's API."""
    (r,) = rt.adapter("fxiaoke").write("AccountObj", [WriteItem(key="rm", payload=fields, external_id=fx_id)])
    assert r.status.value == "updated"


def job_mapping(env: Any, job: str, side: str) -> Any:
    """The mapping a job writes its ``side`` (``source``/``target``) with, loaded as the engine loads it."""
    cfg = env.config()["jobs"][job]
    return load_mapping(resolve_mapping_path(cfg[f"{side}_mapping"], env.config_path.parent), profile=target_profile)


def cli(*argv: str) -> int:
    try:
        main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def assert_lineage(e: dict[str, Any], status: str) -> None:
    """A write's entry: the vendor's answer, the call's correlation id, both mappings, only fields sent."""
    assert e["answer"]["status"] == status, e["answer"]
    if status != "failed":
        assert e["answer"]["id"] == e["target_id"]
    assert e["correlation_id"] and len(e["correlation_id"]) >= 16
    assert len(e["mapping_versions"]) == 2
    assert not NEVER_SENT & set(e["changed_fields"]), e["changed_fields"]
    assert set(e["masked_after"]) <= set(e["changed_fields"])


# ------------------------------------------------------------------------------------------------ one-way


def test_one_way_entries_are_labelled_core_to_zoho_and_carry_what_was_sent(env, rt) -> None:  # type: ignore
    first = run_job(rt, ONE_WAY)
    assert first.actions[Action.CREATED] and first.actions[Action.FAILED]
    found = entries(rt, ONE_WAY)
    zoho_m = job_mapping(env, ONE_WAY, "target")
    created = [e for e in found if e["action"] == "created"]
    assert len(created) == len(expected_in_zoho())
    calls = Counter(e["correlation_id"] for e in created)
    assert len(calls) == 1   # one upsert call carried the batch: its entries share its id
    for e in created:
        assert_labelled(rt, e, CORE, ZOHO)
        assert e["source_id"] in expected_in_zoho()
        assert_lineage(e, "created")
        # the payload exactly as the simulator holds it, compared masked
        rec = env.zoho.record("Contacts", e["target_id"])
        assert rec is not None and e["payload"]
        assert e["payload"] == masked_payload({k: rec.get(k) for k in e["payload"]}, zoho_m)
        assert e["payload"]["Party_ID"] == e["party_id"]
    for e in (x for x in found if x["action"] == "failed"):   # refused before any write: no lineage
        assert_labelled(rt, e, CORE, ZOHO)
        assert e["source_id"] in {custno(i) for i in range(CUSTOMERS) if not synthetic(i).should_validate}
        assert e["payload"] is None and e["answer"] is None and e["target_id"] is None

    upd, same, closed = sorted(expected_in_zoho())[:3]
    rec = env.core.store.get(upd)
    env.core.store.touch(upd, segment="PRIVATE" if rec["segment"] != "PRIVATE" else "MASS")
    env.core.store.touch(same)          # nothing Zoho receives changes
    env.core.store.close(closed)        # deactivated at the target (the job's delete policy)
    mark = head(rt)
    second = run_job(rt, ONE_WAY)
    assert second.actions[Action.UPDATED] == 1 and second.actions[Action.SKIPPED_UNCHANGED] == 1
    assert second.actions[Action.DELETED] == 1
    now = entries(rt, ONE_WAY, mark)
    e = one(now, "updated")
    assert_labelled(rt, e, CORE, ZOHO, source_id=upd)
    assert_lineage(e, "updated")
    assert e["changed_fields"] == ["segment.code"]
    zoho_rec = env.zoho.record("Contacts", e["target_id"])
    assert e["payload"]["Customer_Segment"] == zoho_rec["Customer_Segment"]
    e = one(now, "skipped-unchanged")
    assert_labelled(rt, e, CORE, ZOHO, source_id=same)
    assert e["target_id"] and e["payload"] is None and e["answer"] is None
    e = one(now, "deleted")
    assert_labelled(rt, e, CORE, ZOHO, source_id=closed)
    assert_lineage(e, "updated")   # a deactivation: the closed record written over the old one
    assert e["payload"]["Lifecycle_Stage"] == "CLOSED" == env.zoho.record("Contacts", e["target_id"])[
        "Lifecycle_Stage"]


# ------------------------------------------------------------------------------------------------ two-way


def test_two_way_entries_are_labelled_by_their_direction(env, rt) -> None:  # type: ignore[no-untyped-def]
    first = run_job(rt, TWO_WAY)
    assert first.actions[Action.CREATED]
    fx_m = job_mapping(env, TWO_WAY, "target")
    created = [e for e in entries(rt, TWO_WAY) if e["action"] == "created"]
    for e in created:
        assert_labelled(rt, e, CORE, FX)
        assert_lineage(e, "created")
        rec = next(r for r in env.fxiaoke.records("AccountObj") if r["_id"] == e["target_id"])
        assert e["payload"] == masked_payload({k: rec.get(k) for k in e["payload"]}, fx_m)
        assert e["payload"]["party_id__c"] == e["party_id"]
        # the correlation id is Fxiaoke's own trace id of the create call: its support can look the request up
        assert e["correlation_id"].startswith("E-O."), e["correlation_id"]
        # only what this record was sent: an organisation gets no mobile, a field left out for want of consent
        # was not received
        if e["payload"]["party_type__c"] == "ORGANISATION":
            assert "contact_points[type=MOBILE].value" not in e["changed_fields"]
        assert ("contact_points[type=EMAIL].value" in e["changed_fields"]) == ("email" in e["payload"])

    # the CRM reports its new records back: each an echo, read from Fxiaoke, nothing carried to the core
    mark = head(rt)
    run_job(rt, TWO_WAY)
    echoes = [e for e in entries(rt, TWO_WAY, mark) if e["action"] == "skipped-echo"]
    assert len(echoes) == len(created)
    for e in echoes:
        assert_labelled(rt, e, FX, CORE)
        assert e["source_id"] in {c["target_id"] for c in created}
        assert e["target_id"] == id_at(rt, e["party_id"], CORE)

    people = [r for r in env.fxiaoke.records("AccountObj")
              if r.get("party_type__c") == "INDIVIDUAL" and r.get("email")]
    back, out, golden, bad, quiet = (p["_id"] for p in people[:5])
    cust = {x: id_at(rt, party_of(rt, FX, x) or "", CORE) for x in (back, out, golden, bad, quiet)}
    rm_edit(rt, back, email="corrected.by.rm@example.com")   # Fxiaoke → core
    rec = env.core.store.get(cust[out])
    env.core.store.touch(cust[out], segment="PRIVATE" if rec["segment"] != "PRIVATE" else "MASS")   # core → Fxiaoke
    rm_edit(rt, golden, name="张三丰")                        # a golden field edited in the CRM: a conflict
    env.core.store.touch(cust[quiet])                         # read again, nothing to carry
    table = env.fxiaoke.tables["AccountObj"]                  # a value the CRM's validation let through
    with env.fxiaoke._data_lock:
        row = dict(table.rows[bad])
        old = row["last_modified_time"]
        row.update(email="not-an-email-address", last_modified_time=int(time.time() * 1000))
        table.put(row, old)
    mark = head(rt)
    report = run_job(rt, TWO_WAY)
    assert report.actions[Action.UPDATED] == 2 and report.actions[Action.CONFLICT] == 1
    now = entries(rt, TWO_WAY, mark)

    e = one(now, "updated", target_system="corebank")
    assert_labelled(rt, e, FX, CORE, source_id=back, target_id=cust[back])
    assert_lineage(e, "updated")
    assert e["changed_fields"] == ["contact_points[type=EMAIL].value"]
    assert e["payload"] and "corrected.by.rm@example.com" not in str(e)   # the core's payload, masked too

    e = one(now, "updated", target_system="fxiaoke")
    assert_labelled(rt, e, CORE, FX, source_id=cust[out], target_id=out)
    assert_lineage(e, "updated")
    assert e["changed_fields"] == ["segment.code"]
    rec = next(r for r in env.fxiaoke.records("AccountObj") if r["_id"] == out)
    assert e["payload"] == masked_payload({k: rec.get(k) for k in e["payload"]}, fx_m)

    e = one(now, "conflict")
    assert_labelled(rt, e, CORE, FX, source_id=cust[golden], target_id=golden)
    assert e["changed_fields"] == ["name.legal_zh"] and "张三丰" not in str(e)

    # the reviewer keeps the core's name: written to Fxiaoke, the decision ledgered with what was sent
    with rt.store.transaction(read_only=True) as tx:
        (conflict,) = tx.list_conflicts(TWO_WAY)
    mark2 = head(rt)
    assert resolve_conflict(rt, conflict["id"], take="source", actor="user:reviewer").wrote_to == ["fxiaoke"]
    e = one(entries(rt, TWO_WAY, mark2), "conflict-resolved")
    assert_labelled(rt, e, CORE, FX, source_id=cust[golden], target_id=golden)
    assert_lineage(e, "updated")
    assert e["changed_fields"] == ["name.legal_zh"] and "张三丰" not in str(e)
    rec = next(r for r in env.fxiaoke.records("AccountObj") if r["_id"] == golden)
    assert e["payload"] == masked_payload({k: rec.get(k) for k in e["payload"]}, fx_m)

    e = one(now, "failed")   # dead-lettered: the record read was Fxiaoke's
    assert_labelled(rt, e, FX, CORE, source_id=bad, target_id=cust[bad])
    assert "not-an-email-address" not in str(e)

    e = one(now, "skipped-unchanged")
    assert_labelled(rt, e, CORE, FX, source_id=cust[quiet], target_id=quiet)

    # an erasure carried out at the CRM: a deletion entry naming the Fxiaoke record, with what was sent
    pid = party_of(rt, FX, out) or ""
    assert cli("erase", pid, "-y", "-c", str(env.config_path), "--reason", "customer request",
               "--actor", "user:dpo") == 0
    mark = head(rt)
    run_job(rt, TWO_WAY)
    e = one(entries(rt, TWO_WAY, mark), "deleted", party_id=pid)
    assert (e["target_system"], e["target_object"], e["target_id"]) == (*FX, out)
    assert e["source_system"] is None and e["answer"]["id"] == out
    assert e["correlation_id"] and e["mapping_versions"]
    if e["payload"] is not None:   # anonymised in place (delete policy deactivate)
        rec = next(r for r in env.fxiaoke.records("AccountObj") if r["_id"] == out)
        assert e["payload"] == masked_payload({k: rec.get(k) for k in e["payload"]}, fx_m)
    # the core changes the erased customer: suppressed, labelled with the core record read
    env.core.store.touch(cust[out], segment="PRIVATE")
    mark = head(rt)
    run_job(rt, TWO_WAY)
    e = one(entries(rt, TWO_WAY, mark), "suppressed-erased")
    assert (e["source_system"], e["source_object"], e["source_id"]) == (*CORE, cust[out])
    assert (e["target_system"], e["target_object"]) == FX and e["party_id"] == pid


# ------------------------------------------------------------------------------------------------ size, export


def test_a_demo_like_run_keeps_entries_compact_and_its_export_verifies_offline(tmp_path, capsys) -> None:  # type: ignore
    """100 customers core → Zoho and core ⇄ Fxiaoke, then a round of changes: created/updated entries have a
    median under 2.5 KB with their payload and answer, and the export passes ``ledger verify`` and the standalone
    verifier with only the public key."""
    import statistics
    import subprocess
    import sys

    from crmbridge.demo import DemoEnvironment
    from crmbridge.sync.bootstrap import bootstrap
    from crmbridge.sync.state.ledger import canonical_json

    with DemoEnvironment(tmp_path / "demo", customers=100, bad_fraction=0.05, seed=7) as env:
        rt = bootstrap(env.config_path)
        try:
            for job in (ONE_WAY, TWO_WAY):
                assert run_job(rt, job).actions[Action.CREATED] > 0
            for n in range(30):   # the core changes a segment and an e-mail address
                env.core.store.touch(custno(n), segment="PRIVATE" if n % 2 else "MASS", email=f"moved{n}@example.com")
            for job in (ONE_WAY, TWO_WAY):
                run_job(rt, job)
            with rt.store.transaction(read_only=True) as tx:
                raw = [e for e in tx.ledger().iter_entries() if e["action"] in ("created", "updated")]
        finally:
            rt.close()
        kinds = Counter((e["job"], e["action"]) for e in raw)
        assert kinds[(ONE_WAY, "updated")] and kinds[(TWO_WAY, "updated")] and kinds[(TWO_WAY, "created")], kinds
        assert all(e["payload"] and e["answer"] for e in raw)
        sizes = [len(canonical_json(e).encode("utf-8")) for e in raw]
        assert statistics.median(sizes) <= 2500, (statistics.median(sizes), max(sizes))

        cfg = str(env.config_path)
        export, pub = tmp_path / "ledger.jsonl", tmp_path / "ledger.pub"
        assert cli("ledger", "export", "-o", str(export), "-c", cfg) == 0
        assert cli("ledger", "public-key", "-o", str(pub), "-c", cfg) == 0
        assert cli("ledger", "verify", "--file", str(export), "--public-key", str(pub), "--require-signed",
                   "-c", cfg) == 0
        script = tmp_path / "verify_ledger.py"
        capsys.readouterr()
        assert cli("ledger", "verifier") == 0
        script.write_text(capsys.readouterr().out, encoding="utf-8")
        ok = subprocess.run([sys.executable, "-I", str(script), str(export), "--public-key", str(pub),
                             "--require-signed"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        # an edited payload is caught
        lines = export.read_text(encoding="utf-8").splitlines()
        i = next(n for n, x in enumerate(lines) if '"payload": {' in x or '"payload":{' in x)
        lines[i] = lines[i].replace("MASS", "PRIVATE", 1) if "MASS" in lines[i] else lines[i].replace(
            '"created"', '"updated"', 1)
        bad = tmp_path / "edited.jsonl"
        bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
        caught = subprocess.run([sys.executable, "-I", str(script), str(bad), "--public-key", str(pub)],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert caught.returncode != 0, caught.stdout



def test_ledger_show_of_a_created_entry_prints_the_payload_sent_and_the_answer(env, rt, capsys) -> None:  # type: ignore
    import re

    run_job(rt, ONE_WAY)
    e = next(x for x in entries(rt, ONE_WAY) if x["action"] == "created")
    rec = env.zoho.record("Contacts", e["target_id"])
    capsys.readouterr()
    assert cli("ledger", "show", "--seq", str(e["seq"]), "-c", str(env.config_path)) == 0
    out = capsys.readouterr().out
    assert f"source: corebank/Customer/{e['source_id']}" in out
    assert f"target: zoho_cn/Contacts/{e['target_id']}" in out
    assert f"sent to zoho_cn/Contacts ({len(e['payload'])} fields, masked):" in out
    for name, value in e["payload"].items():   # every field sent, one a line, as recorded
        assert f"    {name}: {json.dumps(value, ensure_ascii=False)}" in out or isinstance(value, dict | list), name
    assert f'    Party_ID: "{e["party_id"]}"' in out
    assert f"answer: id {e['target_id']}, status created" in out
    assert f"correlation id: {e['correlation_id']}" in out
    assert "zoho_contacts.yaml @ " in out
    assert rec["Mobile"] and rec["Mobile"] not in out   # the clear mobile Zoho holds is never printed
    assert not re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", out)
