"""Ledger encoding 3 (issue 19): each masked value stored once. A masked value the masked payload holds is a
reference to it, the target mapping's version is not repeated in ``mapping_versions``, the answer's id is the
entry's target id; auditors read the same entry (decode_entry, exports), hashes cover what is stored, and entries
of encodings 1 and 2 beside them keep verifying."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text, update

from crmbridge.sync.security.crypto import FieldCipher, LocalKeyProvider
from crmbridge.sync.state.db import Base, import_models, make_engine
from crmbridge.sync.state.ledger import (
    GENESIS,
    Action,
    Ledger,
    LedgerEntry,
    LedgerEntryIn,
    LedgerHead,
    LedgerSigner,
    _push_leaf,
    canonical_json,
    decode_entry,
    export_ledger,
    read_export,
    verify_records,
)
from crmbridge.sync.state.verify_ledger import verify as offline_verify
from crmbridge.sync.state.version_sets import set_key

M_SRC, M_TGT = "a" * 64, "b" * 64
PARTY = "f030765c-8a48-4a1c-b819-4bae90c57354"


def _entry(**over: Any) -> LedgerEntryIn:
    base: dict[str, Any] = dict(
        action=Action.CREATED, run_id="1", job="core_to_zoho", source_system="corebank", source_object="Customer",
        source_id="000000001", target_system="zoho_cn", target_object="Contacts", target_id="5725767000000500001",
        party_id=PARTY, mapping_version=M_TGT,
        changed_fields=["aum.band", "contact_points[type=MOBILE].value", "name.legal_zh", "segment.code"],
        after={"aum.band": "50K_500K", "contact_points[type=MOBILE].value": "+86193****7932",
               "name.legal_zh": "叶**", "segment.code": "MASS"},
        diff={"aum.band": [None, "50K_500K"], "segment.code": [None, "MASS"]},
        payload={"AUM_Band": "50K_500K", "Last_Name": "叶**", "Mobile": "+86193****7932", "Customer_Segment": "Mass",
                 "Party_ID": PARTY, "SMS_Opt_In": True},
        answer={"id": "5725767000000500001", "status": "created"}, correlation_id="c-1",
        mapping_versions={"corebank_soap_customer.yaml": M_SRC, "zoho_contacts.yaml": M_TGT})
    base.update(over)
    return LedgerEntryIn(**base)


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    import_models()
    Base.metadata.create_all(eng)
    cipher = FieldCipher(LocalKeyProvider(os.urandom(32)))
    with eng.begin() as conn:
        cipher.init(conn)
    signer = LedgerSigner(__import__("cryptography.hazmat.primitives.asymmetric.ed25519", fromlist=["x"])
                          .Ed25519PrivateKey.generate())
    yield eng, cipher, signer
    eng.dispose()


def test_each_masked_value_is_stored_once_and_read_back_whole(env) -> None:  # type: ignore[no-untyped-def]
    eng, cipher, signer = env
    with eng.begin() as conn:
        ledger = Ledger(conn, signer, cipher=cipher)
        ledger.append([_entry(), _entry(action=Action.UPDATED, target_id="other", answer={"status": "updated"},
                                        before={"segment.code": "MASS"}, after={"segment.code": "AFFLUENT"},
                                        changed_fields=["segment.code"], diff=None)])
        ledger.checkpoint(run_id="1")
        raw = conn.execute(text("SELECT masked_after, mapping_versions, answer, enc FROM ledger_entries "
                                "ORDER BY seq")).all()
        stored = list(ledger.iter_entries())
        assert ledger.verify(signer.public_key).ok
        diff = ledger.decrypt_diff(stored[0])
        decoded = ledger.decode(stored)
    after, versions, answer, enc = raw[0]
    assert enc == 4   # encoding 3 and the mapping versions' set stored once (test_ledger_encoding4.py)
    # the payload's keys sorted: AUM_Band 0, Customer_Segment 1, Last_Name 2, Mobile 3, Party_ID 4, SMS_Opt_In 5
    assert json.loads(after) == [0, 3, 2, "MASS"]          # "MASS" is not a payload value ("Mass" is)
    assert "+86193****7932" not in after and json.loads(versions) == [set_key(
        {"corebank_soap_customer.yaml": M_SRC, "zoho_contacts.yaml": M_TGT})]
    assert json.loads(answer) == {"id": True, "status": "created"}
    e = decoded[0]
    assert e["masked_after"] == {"aum.band": "50K_500K", "contact_points[type=MOBILE].value": "+86193****7932",
                                 "name.legal_zh": "叶**", "segment.code": "MASS"}
    assert e["mapping_versions"] == {"corebank_soap_customer.yaml": M_SRC, "zoho_contacts.yaml": M_TGT}
    assert e["answer"] == {"id": "5725767000000500001", "status": "created"}
    assert diff == {"aum.band": [None, "50K_500K"], "segment.code": [None, "MASS"]}
    u = decoded[1]   # no payload value to refer to, no id: stored as given
    assert u["masked_before"] == {"segment.code": "MASS"} and u["masked_after"] == {"segment.code": "AFFLUENT"}
    assert u["answer"] == {"status": "updated"}
    # ~110 bytes smaller than encoding 2 stored the same three columns
    assert len(after) + len(versions) + len(answer) + 100 < (
        len(canonical_json(["50K_500K", "+86193****7932", "叶**", "MASS"])) + len(canonical_json(
            {"corebank_soap_customer.yaml": M_SRC, "zoho_contacts.yaml": M_TGT})) + len(canonical_json(
                {"id": "5725767000000500001", "status": "created"})))


def test_an_edited_reference_is_caught_and_an_export_verifies_offline(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    eng, cipher, signer = env
    with eng.begin() as conn:
        ledger = Ledger(conn, signer, cipher=cipher)
        ledger.append([_entry(), _entry(source_id="000000002")])
        ledger.checkpoint(run_id="1")
        buf = io.StringIO()
        export_ledger(ledger, buf)
    path = tmp_path / "ledger.jsonl"
    path.write_text(buf.getvalue(), encoding="utf-8")
    entries, cps = read_export(path)
    assert not offline_verify(entries, cps, public_keys=[signer.public_key]).problems
    with eng.begin() as conn:   # point the mobile at another payload value (the party id): caught
        conn.execute(update(LedgerEntry.__table__).where(LedgerEntry.__table__.c.seq == 2)
                     .values(masked_after="[0,4,2,\"MASS\"]"))
        res = Ledger(conn, signer, cipher=cipher).verify(signer.public_key)
    assert not res.ok and res.first_bad_seq == 2


def test_encoding_2_entries_keep_verifying_beside_encoding_3(env) -> None:  # type: ignore[no-untyped-def]
    eng, cipher, signer = env
    frontier: list[tuple[int, bytes]] = []
    prev = GENESIS
    with eng.begin() as conn:   # two entries as encoding 2 wrote them (before this change)
        for seq in (1, 2):
            body = {"seq": seq, "prev_hash": prev, "hash_alg": "sha256",
                    "recorded_at": f"2026-01-0{seq}T00:00:00.000000Z", "run_id": "0", "job": "core_to_zoho",
                    "source_system": "corebank", "source_object": "Customer", "source_id": f"{seq}",
                    "target_system": "zoho_cn", "target_object": "Contacts", "target_id": f"t{seq}",
                    "party_id": PARTY, "action": "created", "changed_fields": ["segment.code"],
                    "masked_before": [], "masked_after": ["MASS"], "diff_enc": None, "mapping_version": M_TGT,
                    "actor": "scheduler", "reason": None, "enc": 2, "payload": {"Customer_Segment": "MASS"},
                    "answer": {"id": f"t{seq}", "status": "created"}, "correlation_id": "c",
                    "mapping_versions": {"zoho_contacts.yaml": M_TGT}, "actor_note": None}
            data = canonical_json(body).encode()
            h = hashlib.sha256(data).hexdigest()
            _push_leaf(frontier, hashlib.sha256(b"\x00" + data).digest(), "sha256")
            row = dict(body, entry_hash=h)
            for k in ("changed_fields", "masked_before", "masked_after", "payload", "answer", "mapping_versions"):
                row[k] = canonical_json(row[k])
            conn.execute(insert(LedgerEntry.__table__).values(**row))
            prev = h
        conn.execute(insert(LedgerHead.__table__).values(id=1, seq=2, entry_hash=prev, hash_alg="sha256",
                                                         frontier=json.dumps([[x, b.hex()] for x, b in frontier])))
        ledger = Ledger(conn, signer, cipher=cipher)
        ledger.append([_entry()])
        ledger.checkpoint()
        assert ledger.verify(signer.public_key).ok
        stored = list(ledger.iter_entries())
    old, new = decode_entry(stored[0]), decode_entry(stored[2])
    assert (old["enc"], new["enc"]) == (2, 4)
    assert old["masked_after"] == {"segment.code": "MASS"} and old["answer"]["id"] == "t1"
    assert old["mapping_versions"] == {"zoho_contacts.yaml": M_TGT}
    assert new["masked_after"]["contact_points[type=MOBILE].value"] == "+86193****7932"
    assert verify_records(stored, [], None).ok
