"""Lineage in write entries (what was sent, what the vendor answered, which mappings) and compact entries:
encoding 2 stores the field list once, compresses the diff before encrypting it, keeps only the fields the target
receives, and entries written in encoding 1 still verify."""

from __future__ import annotations

import json
import re
import statistics
from typing import Any

from sqlalchemy import insert, update

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import load_mapping
from crmbridge.config import resolve_mapping_path
from crmbridge.core.paths import parse_path
from crmbridge.sync.state.ledger import (
    GENESIS,
    Action,
    Ledger,
    LedgerEntry,
    LedgerEntryIn,
    LedgerHead,
    canonical_json,
    decode_entry,
    read_export,
    verify_records,
)
from crmbridge.sync.state.lineage import masked_payload, only_received, vendor_answer, write_lineage

CID = "6f1c2a7e-3b1d-4c55-9a51-2c1b7e0f4d21"
CLEAR_MOBILE = re.compile(r"(?<!\d)(\+86)?1[3-9]\d{9}(?!\d)")
CLEAR_RIC = re.compile(r"(?<!\d)\d{17}[\dX](?!\d)")


def _mappings(env: Any) -> tuple[Any, Any]:
    """The core → Zoho job's source and target mappings, as the demo configuration names them."""
    cfg = env.config()["jobs"]["core_to_zoho"]
    return tuple(load_mapping(resolve_mapping_path(cfg[k], env.config_path.parent), profile=target_profile)  # type: ignore[return-value]
                 for k in ("source_mapping", "target_mapping"))


def _lineage_entries(env: Any, rt: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[int, Any]]:
    """Write one created and one updated lineage entry per customer the run created in Zoho, as the engine does
    after a write: the payload the simulator received, its answer, the canonical changes. Returns the appended
    entries (as stored), the run's own created entries, and the payload each appended entry was built from."""
    source_m, target_m = _mappings(env)
    sent_fields = set(target_m.vendor_fields("out"))
    new: list[LedgerEntryIn] = []
    payloads: list[dict[str, Any]] = []
    with rt.store.transaction() as tx:
        ledger = Ledger(tx.connection, rt.signer, cipher=rt.cipher)
        created = [e for e in ledger.iter_entries(job="core_to_zoho") if e["action"] == "created"]
        for e in created:
            changes = {p: (b, a) for p, (b, a) in ledger.decrypt_diff(e).items()}
            rec = env.zoho.record("Contacts", e["target_id"])
            payload = {k: v for k, v in rec.items() if k in sent_fields}
            answer = {"external_id": e["target_id"], "status": "created", "version": rec.get("Modified_Time")}
            labels = {k: e[k] for k in ("job", "source_system", "source_object", "source_id",
                                        "target_system", "target_object", "target_id", "party_id")}
            labels["run_id"] = "lineage"   # not the real run: that one is closed by its checkpoint
            new.append(LedgerEntryIn(action=Action.CREATED, actor="alice@host1", **labels, **write_lineage(
                mapping=target_m, payload=payload, result=answer, changed=changes, party_type="INDIVIDUAL",
                correlation_id=CID, mappings=(source_m, target_m))))
            payloads.append(payload)
            # an update: the mobile and the segment change
            mobile = "contact_points[type=MOBILE].value"
            upd = {mobile: (changes.get(mobile, (None, None))[1], "+8613900001111"),
                   "segment.code": (changes.get("segment.code", (None, None))[1], "AFFLUENT"),
                   "date_of_birth": ("1990-01-01", "1990-01-02")}
            upd_payload = dict(payload, Mobile="+8613900001111", Customer_Segment="Affluent")
            new.append(LedgerEntryIn(action=Action.UPDATED, actor="alice@host1", **labels, **write_lineage(
                mapping=target_m, payload=upd_payload, result=dict(answer, status="updated"), changed=upd,
                party_type="INDIVIDUAL", correlation_id=CID, mappings=(source_m, target_m))))
            payloads.append(upd_payload)
        appended = ledger.append(new)
        first = appended[0].seq
        stored = [x for x in ledger.iter_entries() if x["seq"] >= first]
    return stored, created, dict(zip((a.seq for a in appended), payloads, strict=True))


def test_a_write_entry_keeps_the_masked_payload_the_answer_and_only_the_fields_sent(synced) -> None:
    env, rt = synced
    stored, created, payloads = _lineage_entries(env, rt)
    assert created and len(stored) == 2 * len(created)
    _, target_m = _mappings(env)
    for raw in stored:
        e = decode_entry(raw)
        # the payload exactly as the simulator received it, compared masked
        assert e["payload"] == masked_payload(payloads[e["seq"]], target_m)
        assert e["payload"]["Party_ID"] == e["party_id"]   # C1 in clear
        assert isinstance(e["payload"]["SMS_Opt_In"], bool)  # C1 keeps its JSON type
        text = canonical_json([raw[k] for k in ("payload", "answer", "masked_before", "masked_after", "reason")])
        assert not CLEAR_MOBILE.search(text) and not CLEAR_RIC.search(text), text
        for clear in (payloads[e["seq"]].get("Mobile"), payloads[e["seq"]].get("Email")):
            assert not clear or "*" in clear or clear not in text
        assert e["answer"]["id"] == e["target_id"] and e["answer"]["status"] in ("created", "updated")
        assert e["correlation_id"] == CID
        assert set(e["mapping_versions"]) == {"corebank_soap_customer.yaml", "zoho_contacts.yaml"}
        assert e["mapping_versions"]["zoho_contacts.yaml"] == target_m.version_hash
        # only the fields Zoho receives: never the date of birth, the KYC rating or the AUM amount
        assert not {"date_of_birth", "kyc.risk_rating", "aum.amount"} & set(e["changed_fields"])
        assert set(e["masked_after"]) <= set(e["changed_fields"])
        assert e["actor"] == "alice@host1"
    with rt.store.transaction(read_only=True) as tx:
        ledger = Ledger(tx.connection, rt.signer, cipher=rt.cipher)
        upd = decode_entry(stored[1])
        assert upd["action"] == "updated"
        assert upd["changed_fields"] == ["contact_points[type=MOBILE].value", "segment.code"]
        assert upd["masked_after"]["contact_points[type=MOBILE].value"] == "+86139****1111"
        # the clear diff, compressed then encrypted under the party key, reads back whole
        diff = ledger.decrypt_diff(stored[1])
        assert diff["contact_points[type=MOBILE].value"][1] == "+8613900001111"
        assert diff["segment.code"][1] == "AFFLUENT" and "date_of_birth" not in diff
        assert ledger.verify(rt.signer.public_key).ok


def test_created_and_updated_entries_are_compact(synced) -> None:
    env, rt = synced
    stored, created, _ = _lineage_entries(env, rt)
    sizes = [len(canonical_json(x).encode("utf-8")) for x in stored]
    assert statistics.median(sizes) <= 2500, sorted(sizes)
    # the field list is stored once: no path appears twice in an entry
    for raw in stored:
        text = canonical_json(list(raw.values()))   # the values, not the column names
        for path in decode_entry(raw)["changed_fields"]:
            assert text.count(json.dumps(path, ensure_ascii=False)) == 1, path
    # the engine's own created entries carry their lineage too, within the same budget
    assert all(x["payload"] and x["answer"] and x["correlation_id"] for x in created)
    assert statistics.median(len(canonical_json(x).encode("utf-8")) for x in created) <= 2500


def test_the_answer_of_a_refused_write_keeps_the_vendor_code_and_a_masked_message() -> None:
    class Err(Exception):
        code = "DUPLICATE_DATA"

    class Result:
        key, status, external_id, version = "k", "failed", None, None
        error = Err("duplicate value 13812345678 in Mobile")

    assert vendor_answer(Result()) == {"status": "failed", "code": "DUPLICATE_DATA",
                                       "message": "duplicate value 138****5678 in Mobile"}


def test_only_received_keeps_the_target_mappings_fields(synced) -> None:
    env, _ = synced
    _, target_m = _mappings(env)
    changed = {"name.legal_zh": 1, "date_of_birth": 2, "contact_points[type=MOBILE].value": 3,
               "contact_points[type=MOBILE].verified": 4, "aum.amount": 5, "aum.band": 6, "party_id": 7,
               "consents[purpose=MARKETING_SMS].status": 8, "consents[purpose=MARKETING_SMS].channel": 9}
    assert set(only_received(changed, target_m)) == {
        "name.legal_zh", "contact_points[type=MOBILE].value", "aum.band", "party_id",
        "consents[purpose=MARKETING_SMS].status"}
    for p in only_received(changed, target_m):
        parse_path(p)


def _v1_body(seq: int, prev: str) -> dict[str, Any]:
    return {"seq": seq, "prev_hash": prev, "hash_alg": "sha256", "recorded_at": f"2026-01-0{seq}T00:00:00.000000Z",
            "run_id": "1", "job": "core_to_zoho", "source_system": "corebank", "source_object": "Customer",
            "source_id": f"00000000{seq}", "target_system": "zoho_cn", "target_object": "Contacts",
            "target_id": str(seq), "party_id": "p", "action": "updated", "changed_fields": ["segment.code"],
            "masked_before": {}, "masked_after": {"segment.code": "MASS"}, "diff_enc": None,
            "mapping_version": "m", "actor": "scheduler", "reason": None}


def test_entries_written_in_encoding_1_still_verify_beside_new_ones(synced, tmp_path) -> None:
    """A database upgraded in place: its old entries (no ``enc``) keep their hashes; new entries chain on."""
    import hashlib

    from crmbridge.sync.state.ledger import _push_leaf  # the frontier of the head row written by hand

    _, rt = synced
    from crmbridge.sync.state.db import Base, make_engine

    eng = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    Base.metadata.create_all(eng)
    frontier: list[tuple[int, bytes]] = []
    prev = GENESIS
    with eng.begin() as conn:
        for seq in (1, 2):
            body = _v1_body(seq, prev)
            data = canonical_json(body).encode()
            h = hashlib.sha256(data).hexdigest()
            _push_leaf(frontier, hashlib.sha256(b"\x00" + data).digest(), "sha256")
            row = dict(body, entry_hash=h)
            for k in ("changed_fields", "masked_before", "masked_after"):
                row[k] = canonical_json(row[k])
            conn.execute(insert(LedgerEntry.__table__).values(**row))
            prev = h
        conn.execute(insert(LedgerHead.__table__).values(id=1, seq=2, entry_hash=prev, hash_alg="sha256",
                                                         frontier=json.dumps([[x, b.hex()] for x, b in frontier])))
        ledger = Ledger(conn, rt.signer)
        ledger.append([LedgerEntryIn(action=Action.UPDATED, party_id="p", changed_fields=["segment.code"],
                                     after={"segment.code": "AFFLUENT"}, payload={"Customer_Segment": "Affluent"})])
        ledger.checkpoint()
        assert ledger.verify(rt.signer.public_key).ok
        old = decode_entry(next(iter(ledger.iter_entries())))
        assert old["enc"] == 1 and old["masked_after"] == {"segment.code": "MASS"} and old["payload"] is None
        # an edited old entry is still caught
        conn.execute(update(LedgerEntry.__table__).where(LedgerEntry.__table__.c.seq == 1)
                     .values(masked_after='{"segment.code":"PRIVATE"}'))
        res = ledger.verify(rt.signer.public_key)
        assert not res.ok and res.first_bad_seq == 1
    eng.dispose()


def test_an_export_of_lineage_entries_verifies_offline_and_an_edited_payload_is_caught(synced, tmp_path) -> None:
    from crmbridge.sync.state.ledger import export_ledger

    env, rt = synced
    _lineage_entries(env, rt)
    path = tmp_path / "ledger.jsonl"
    with rt.store.transaction() as tx:
        ledger = Ledger(tx.connection, rt.signer, cipher=rt.cipher)
        ledger.checkpoint()
        with path.open("w", encoding="utf-8") as fh:
            export_ledger(ledger, fh)
    entries, cps = read_export(path)
    assert verify_records(entries, cps, rt.signer.public_key).ok
    victim = next(e for e in entries if e.get("payload"))
    victim["payload"]["Customer_Segment"] = "Private"
    res = verify_records(entries, cps, rt.signer.public_key)
    assert not res.ok and res.first_bad_seq == victim["seq"]


def test_masked_payload_of_each_vendor_shape() -> None:
    """Flat (Fxiaoke) and nested (core banking) payloads keep their shape; values the mapping masked on the way out
    are kept as sent; clear personal values are masked by class; C3 data is never kept, not even masked."""
    import uuid

    from crmbridge.canonical.model import parse_party
    from crmbridge.canonical.synthetic import customer_at

    c = next(x for x in (customer_at(i, 11, 0.0) for i in range(20)) if x.is_individual)
    party = parse_party({**c.to_party_dict(), "party_id": str(uuid.uuid4())})
    fx = load_mapping("mappings/fxiaoke_accountobj.yaml", profile=target_profile)
    sent = fx.map_out(party)
    kept = masked_payload(sent, fx)
    assert set(kept) == set(sent) and kept["mobile_masked__c"] == sent["mobile_masked__c"]
    assert kept["party_id__c"] == str(party.party_id) and kept["email"] != sent["email"] and "***@" in kept["email"]
    core = load_mapping("mappings/corebank_soap_customer.yaml", profile=target_profile)
    sent = core.map_out(party)
    kept = masked_payload({**sent, "CARD_PIN": "1234"}, core)
    mobile = sent["Custpersonal"]["MOBNUM"]
    assert kept["Custpersonal"]["MOBNUM"] == f"{mobile[:3]}****{mobile[-4:]}"
    assert kept["CARD_PIN"] == "[C3 data withheld]" and kept["CTYPE"] == "I"


def test_a_real_write_is_ledgered_with_the_payload_the_simulator_received_and_its_answer(synced) -> None:
    """The engine's path, step by step: map a party out, write it through the Zoho adapter to the simulator, and
    ledger the write with write_lineage: the payload kept equals what the simulator received, masked by class."""
    import uuid

    from crmbridge.adapters.base import WriteItem
    from crmbridge.canonical.model import parse_party
    from crmbridge.canonical.synthetic import customer_at

    env, rt = synced
    source_m, target_m = _mappings(env)
    c = next(x for x in (customer_at(i, 99, 0.0) for i in range(40)) if x.is_individual and x.should_validate)
    party = parse_party({**c.to_party_dict(), "party_id": str(uuid.uuid4())})
    payload = target_m.map_out(party)
    (result,) = rt.adapter("zoho_cn").write("Contacts", [WriteItem(key=str(party.party_id), payload=payload,
                                                                   key_field="Party_ID", known_new=True)])
    assert result.external_id
    received = {k: v for k, v in env.zoho.record("Contacts", result.external_id).items() if k in payload}
    with rt.store.transaction() as tx:
        ledger = Ledger(tx.connection, rt.signer, cipher=rt.cipher)
        (app,) = ledger.append([LedgerEntryIn(
            action=Action.CREATED, run_id="lineage-real", job="core_to_zoho", party_id=str(party.party_id),
            target_system="zoho_cn", target_object="Contacts", target_id=result.external_id, actor="alice@host1",
            **write_lineage(mapping=target_m, payload=payload, result=result, correlation_id=CID,
                            changed={"name.legal_zh": (None, party.name.legal_zh), "date_of_birth": (None, "x")},
                            party_type="INDIVIDUAL", mappings=(source_m, target_m)))])
        (e,) = [decode_entry(x) for x in ledger.iter_entries(after=app.seq - 1, limit=1)]
    assert e["payload"] == masked_payload(received, target_m)
    answer = {"id": result.external_id, "status": "created"}
    if result.version is not None:
        answer["version"] = str(result.version)
    assert e["answer"] == answer
    assert e["changed_fields"] == ["name.legal_zh"]
