"""Ledger encoding 4 and snapshots (issue 19, migration 0018): the set of mapping versions ({mapping name: content
hash}) is stored once in ``mapping_version_sets`` and entries and snapshots hold its key. Every display reads the
same set as before, the hash chain covers the key, both verifiers verify old (encoding 3) and new entries, an
export carries the sets and verifies offline (``crmbridge ledger verify --file``), an edited set is refused, and
rows written before (full sets) keep reading as they were."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
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
    LedgerError,
    LedgerHead,
    LedgerSigner,
    _push_leaf,
    canonical_json,
    decode_entry,
    export_ledger,
    read_export,
)
from crmbridge.sync.state.store import StateStore
from crmbridge.sync.state.verify_ledger import load_export
from crmbridge.sync.state.verify_ledger import verify as offline_verify
from crmbridge.sync.state.version_sets import mapping_version_sets, set_key

M_SRC, M_TGT = "a" * 64, "b" * 64
VERSIONS = {"corebank_soap_customer.yaml": M_SRC, "zoho_contacts.yaml": M_TGT}
PARTY = "f030765c-8a48-4a1c-b819-4bae90c57354"


def _entry(**over: Any) -> LedgerEntryIn:
    base: dict[str, Any] = dict(
        action=Action.CREATED, run_id="1", job="core_to_zoho", source_system="corebank", source_object="Customer",
        source_id="000000001", target_system="zoho_cn", target_object="Contacts", target_id="5725767000000500001",
        party_id=PARTY, mapping_version=M_TGT, changed_fields=["segment.code"], after={"segment.code": "MASS"},
        payload={"Customer_Segment": "Mass", "Party_ID": PARTY}, answer={"id": "5725767000000500001",
                                                                         "status": "created"},
        correlation_id="c-1", mapping_versions=VERSIONS)
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
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    yield eng, cipher, LedgerSigner(Ed25519PrivateKey.generate())
    eng.dispose()


def _write_encoding_3(conn: Any, seqs: tuple[int, ...]) -> None:
    """Entries exactly as encoding 3 wrote them before this change (mapping_versions a dict, "" for the entry's
    mapping_version), with the chain head."""
    frontier: list[tuple[int, bytes]] = []
    prev = GENESIS
    for seq in seqs:
        body = {"seq": seq, "prev_hash": prev, "hash_alg": "sha256",
                "recorded_at": f"2026-01-0{seq}T00:00:00.000000Z", "run_id": "0", "job": "core_to_zoho",
                "source_system": "corebank", "source_object": "Customer", "source_id": f"{seq}",
                "target_system": "zoho_cn", "target_object": "Contacts", "target_id": f"t{seq}",
                "party_id": PARTY, "action": "created", "changed_fields": ["segment.code"],
                "masked_before": [], "masked_after": [0], "diff_enc": None, "mapping_version": M_TGT,
                "actor": "scheduler", "reason": None, "enc": 3, "payload": {"Customer_Segment": "Mass"},
                "answer": {"id": True, "status": "created"}, "correlation_id": "c",
                "mapping_versions": {"corebank_soap_customer.yaml": M_SRC, "zoho_contacts.yaml": ""},
                "actor_note": None}
        data = canonical_json(body).encode()
        h = hashlib.sha256(data).hexdigest()
        _push_leaf(frontier, hashlib.sha256(b"\x00" + data).digest(), "sha256")
        row = dict(body, entry_hash=h)
        for k in ("changed_fields", "masked_before", "masked_after", "payload", "answer", "mapping_versions"):
            row[k] = canonical_json(row[k])
        conn.execute(insert(LedgerEntry.__table__).values(**row))
        prev = h
    conn.execute(insert(LedgerHead.__table__).values(id=1, seq=len(seqs), entry_hash=prev, hash_alg="sha256",
                                                     frontier=json.dumps([[x, b.hex()] for x, b in frontier])))


def test_the_set_is_stored_once_and_every_entry_reads_it_whole(env) -> None:  # type: ignore[no-untyped-def]
    eng, cipher, signer = env
    other = {"corebank_soap_customer.yaml": M_SRC, "zoho_contacts.yaml": "c" * 64}
    with eng.begin() as conn:
        ledger = Ledger(conn, signer, cipher=cipher)
        ledger.append([_entry(source_id=str(i)) for i in range(5)])
        Ledger(conn, signer, cipher=cipher).append([_entry(source_id="9", mapping_versions=other,
                                                           mapping_version="c" * 64)])
        ledger.checkpoint(run_id="1")
        sets = conn.execute(text("SELECT ref, versions FROM mapping_version_sets ORDER BY ref")).all()
        raw = [r[0] for r in conn.execute(text("SELECT mapping_versions FROM ledger_entries ORDER BY seq"))]
        assert ledger.verify(signer.public_key).ok
        stored = list(ledger.iter_entries())
    assert sorted(r for r, _ in sets) == sorted([set_key(VERSIONS), set_key(other)])   # each set once
    assert raw[0] == canonical_json([set_key(VERSIONS)]) and len(raw[0]) == 26 and raw[5] == canonical_json(
        [set_key(other)])
    assert len(raw[0]) + 90 < len(canonical_json({"corebank_soap_customer.yaml": M_SRC, "zoho_contacts.yaml": ""}))
    assert [decode_entry(e)["mapping_versions"] for e in stored] == [VERSIONS] * 5 + [other]
    assert all(decode_entry(e)["enc"] == 4 for e in stored)


def test_encoding_3_entries_beside_encoding_4_verify_in_both_verifiers_and_offline(  # type: ignore[no-untyped-def]
        env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eng, cipher, signer = env
    with eng.begin() as conn:
        _write_encoding_3(conn, (1, 2))
        ledger = Ledger(conn, signer, cipher=cipher)
        ledger.append([_entry(), _entry(source_id="2")])
        ledger.checkpoint(run_id="1")
        assert ledger.verify(signer.public_key, require_signed=True).ok
        stored = list(ledger.iter_entries())
        shown = ledger.decode(stored)
        buf, csv_buf = io.StringIO(), io.StringIO()
        export_ledger(ledger, buf)
        export_ledger(ledger, csv_buf, fmt="csv")
    assert [e["enc"] for e in shown] == [3, 3, 4, 4]
    assert all(e["mapping_versions"] == VERSIONS for e in shown)   # old and new read the same
    assert not offline_verify(stored, ledger_cps(eng), public_keys=[signer.public_key]).problems
    # the export: the set once, at the end; verifies offline, in the library and through the CLI
    path = tmp_path / "ledger.jsonl"
    path.write_text(buf.getvalue(), encoding="utf-8")
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert [x["type"] for x in lines] == ["entry"] * 4 + ["checkpoint", "mapping_version_set"]
    assert lines[-1] == {"type": "mapping_version_set", "ref": set_key(VERSIONS), "versions": VERSIONS}
    entries, cps = read_export(path)
    assert not offline_verify(entries, cps, public_keys=[signer.public_key]).problems
    assert [decode_entry(e)["mapping_versions"] for e in entries] == [VERSIONS] * 4
    loaded, lcps, _anchor = load_export(path)
    assert not offline_verify(loaded, lcps, public_keys=[signer.public_key], require_signed=True).problems
    rows = list(__import__("csv").DictReader(io.StringIO(csv_buf.getvalue())))
    assert [json.loads(r["mapping_versions"]) for r in rows] == [VERSIONS] * 4   # the CSV shows the set itself
    from cryptography.hazmat.primitives import serialization

    from crmbridge.cli.main import app

    pub = tmp_path / "ledger.pub"
    pub.write_bytes(signer.public_key.public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    app(["ledger", "verify", "--file", str(path), "--public-key", str(pub), "--require-signed"],
        standalone_mode=False)
    assert "OK: 4 entries" in capsys.readouterr().out
    # the standalone script, as an auditor runs it (no crmbridge import, no database)
    import subprocess

    script = Path(__file__).resolve().parents[2] / "sync" / "state" / "verify_ledger.py"
    ok = subprocess.run([sys.executable, "-I", str(script), str(path), "--public-key", str(pub),
                         "--require-signed"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def ledger_cps(eng: Any) -> list[dict[str, Any]]:
    with eng.connect() as conn:
        return Ledger(conn).checkpoints()


def test_an_edited_set_or_reference_is_caught(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    eng, cipher, signer = env
    with eng.begin() as conn:
        ledger = Ledger(conn, signer, cipher=cipher)
        ledger.append([_entry()])
        ledger.checkpoint(run_id="1")
        buf = io.StringIO()
        export_ledger(ledger, buf)
    # an export whose set was edited: refused by both readers
    lines = buf.getvalue().splitlines()
    edited = json.loads(lines[-1])
    edited["versions"]["zoho_contacts.yaml"] = "d" * 64
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*lines[:-1], canonical_json(edited)]) + "\n", encoding="utf-8")
    with pytest.raises(LedgerError, match="does not match its content"):
        read_export(bad)
    with pytest.raises(ValueError, match="does not match its content"):
        load_export(bad)
    # the set row edited in the database: shown as unresolved, never as the edited set
    fresh = {"corebank_soap_customer.yaml": M_SRC, "zoho_contacts.yaml": "e" * 64}
    with eng.begin() as conn:
        Ledger(conn, signer, cipher=cipher).append([_entry(mapping_versions=fresh, source_id="2")])
        key = set_key(fresh)
        conn.execute(update(mapping_version_sets).where(mapping_version_sets.c.ref == key)
                     .values(versions=canonical_json(dict(fresh, x="y"))))
    from crmbridge.sync.state import version_sets

    version_sets._SEEN.pop(key, None)   # as a new process reads it
    with eng.connect() as conn:
        shown = Ledger(conn).decode(list(Ledger(conn).iter_entries()))
    assert shown[1]["mapping_versions"] == {"unresolved set": key}
    # the entry's reference edited: the chain breaks at it
    with eng.begin() as conn:
        conn.execute(update(LedgerEntry.__table__).where(LedgerEntry.__table__.c.seq == 1)
                     .values(mapping_versions=canonical_json([key])))
        res = Ledger(conn, signer, cipher=cipher).verify(signer.public_key)
    assert not res.ok and res.first_bad_seq == 1


def test_snapshots_store_the_key_and_read_old_and_new_rows_whole(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    import_models()
    Base.metadata.create_all(eng)
    try:
        with eng.begin() as conn:   # a snapshot as written before 0018: the whole set
            conn.execute(text("INSERT INTO snapshots (party_id, system, object, content_hash, blob, synced_at, "
                              "mapping_versions) VALUES ('p-old', 'zoho_cn', 'Contacts', 'h', :b, "
                              "'2026-12-01 08:00:00.000000', :v)"), {"b": b"sealed", "v": json.dumps(VERSIONS)})
        store = StateStore(eng)
        with store.transaction() as tx:
            for pid in ("p-1", "p-2"):
                tx.put_snapshot(pid, "zoho_cn", "Contacts", content_hash="h2", blob=b"x", mapping_versions=VERSIONS)
        with eng.connect() as conn:
            raw = dict(conn.execute(text("SELECT party_id, mapping_versions FROM snapshots")).all())
            assert conn.execute(text("SELECT count(*) FROM mapping_version_sets")).scalar() == 1
        assert json.loads(raw["p-1"]) == [set_key(VERSIONS)] and json.loads(raw["p-old"]) == VERSIONS
        with store.transaction(read_only=True) as tx:
            for pid in ("p-old", "p-1", "p-2"):
                snap = tx.get_snapshot(pid, "zoho_cn", "Contacts")
                assert snap is not None and snap.mapping_versions == VERSIONS
            tx.prefetch_parties(["p-1", "p-old"], snapshots_of=[("zoho_cn", "Contacts")])
            assert tx.get_snapshot("p-1", "zoho_cn", "Contacts").mapping_versions == VERSIONS  # type: ignore[union-attr]
            assert [s["mapping_versions"] for s in tx.snapshots_of_party("p-2")] == [VERSIONS]
            assert [s["mapping_versions"] for s in tx.snapshots_of_party("p-old")] == [VERSIONS]
    finally:
        eng.dispose()
