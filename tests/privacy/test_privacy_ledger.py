"""The sync ledger: append inside the caller's transaction, concurrency, signed checkpoints, and tampering of every
kind detected and named by entry seq (database and JSONL export), on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from crmbridge.sync.security.crypto import FieldCipher
from crmbridge.sync.state.ledger import (
    GENESIS,
    Action,
    Ledger,
    LedgerEntry,
    LedgerEntryIn,
    LedgerError,
    LedgerSigner,
    decode_entry,
    export_ledger,
    generate_signing_key,
    load_public_key,
    merkle_root,
    read_export,
    verify_records,
)

PARTY = "123e4567-e89b-12d3-a456-426614174000"


def _entry(i: int, run: str = "1", **kw: object) -> LedgerEntryIn:
    base: dict[str, object] = dict(
        action=Action.UPDATED, run_id=run, job="core_to_zoho", source_system="corebank", source_object="Customer",
        source_id=f"CIF{i:06d}", target_system="zoho_cn", target_object="Contacts", target_id=f"48768760{i:05d}",
        party_id=PARTY, changed_fields=["contact_points[0].value"],
        before={"contact_points[0].value": "+86138****5678"}, after={"contact_points[0].value": "+86139****0000"},
        mapping_version="zoho.contacts@3", actor="scheduler")
    base.update(kw)
    return LedgerEntryIn(**base)  # type: ignore[arg-type]


def _fill(engine: Engine, cipher: FieldCipher, signer: LedgerSigner, n: int = 8, *, close_run: bool = True) -> None:
    with engine.begin() as conn:
        ledger = Ledger(conn, signer, cipher=cipher, checkpoint_every=5)
        for start in range(1, n + 1, 3):  # batches of 3, as an engine would append per batch
            ledger.append([_entry(i, diff={"contact_points[0].value": ["+8613812345678", "+8613900000000"]})
                           for i in range(start, min(start + 3, n + 1))])
        if close_run:
            ledger.checkpoint(run_id="1")


def _verify(engine: Engine, signer: LedgerSigner, **kw: object):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return Ledger(conn).verify(signer.public_key, **kw)  # type: ignore[arg-type]


def test_append_verify_and_read_back(engine: Engine, cipher: FieldCipher, signer: LedgerSigner) -> None:
    _fill(engine, cipher, signer)
    res = _verify(engine, signer)
    assert res.ok, res.problems
    assert res.entries == 8 and res.checkpoints == 2 and res.signed_size == 8 and not res.warnings
    with engine.connect() as conn:
        ledger = Ledger(conn, cipher=cipher)
        entries = list(ledger.iter_entries())
        assert [e["seq"] for e in entries] == list(range(1, 9))
        assert entries[0]["prev_hash"] == GENESIS and entries[1]["prev_hash"] == entries[0]["entry_hash"]
        assert ledger.head() == (8, entries[-1]["entry_hash"])
        # the full diff is stored encrypted under the party key, readable with the cipher
        assert "+8613812345678" not in entries[0]["diff_enc"]
        assert ledger.decrypt_diff(entries[0]) == {"contact_points[0].value": ["+8613812345678", "+8613900000000"]}
        cps = ledger.checkpoints()
        assert [c["tree_size"] for c in cps] == [6, 8] and cps[1]["run_id"] == "1"
        runs = ledger.runs()
    assert runs[0]["run_id"] == "1" and runs[0]["entries"] == 8 and runs[0]["actions"] == {"updated": 8}
    # checkpoint body = C2SP style, Merkle root per RFC 6962 over the entry bodies
    assert cps[1]["body"].startswith("crm-sync-audit\n8\n")
    load_public_key(signer.public_pem()).verify(base64.b64decode(cps[1]["signature"]), cps[1]["body"].encode())


def test_merkle_root_matches_rfc6962_shape() -> None:
    import hashlib

    def h(b: bytes) -> bytes:
        return hashlib.sha256(b).digest()

    leaves = [b"a", b"b", b"c"]
    lh = [h(b"\x00" + x) for x in leaves]
    expected = h(b"\x01" + h(b"\x01" + lh[0] + lh[1]) + lh[2])
    assert merkle_root(leaves) == expected.hex()
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()


def test_masked_values_are_masked_again_and_diff_needs_a_cipher(engine: Engine) -> None:
    with engine.begin() as conn:
        ledger = Ledger(conn)
        ledger.append([_entry(1, before={"x": "11010519491231002X"}, after={"x": "13812345678"},
                              reason="mobile 13812345678 refused")])
        with pytest.raises(LedgerError, match="no cipher"):
            ledger.append([_entry(2, diff={"x": [1, 2]})])
    with engine.connect() as conn:
        (e,) = [decode_entry(x) for x in Ledger(conn).iter_entries()]
    assert e["masked_before"] == {"x": "1*************002X"} and e["masked_after"] == {"x": "138****5678"}
    assert "13812345678" not in e["reason"]


def test_append_joins_the_callers_transaction(engine: Engine, cipher: FieldCipher, signer: LedgerSigner) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), engine.begin() as conn:
        Ledger(conn, signer, cipher=cipher).append([_entry(1, diff={"a": [1, 2]})])
        raise Boom
    with engine.connect() as conn:
        assert Ledger(conn).head() == (0, GENESIS)
        assert conn.execute(select(LedgerEntry.seq)).first() is None
    _fill(engine, cipher, signer, 3)
    assert _verify(engine, signer).ok


def test_concurrent_appenders_serialise(engine: Engine, signer: LedgerSigner) -> None:
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for _ in range(5):
                with engine.connect() as conn:
                    if conn.dialect.name == "sqlite":
                        conn.exec_driver_sql("BEGIN IMMEDIATE")
                    else:
                        conn.begin()
                    Ledger(conn, signer, checkpoint_every=7).append(
                        [_entry(i, run=f"w{w}", actor=f"worker-{w}") for i in range(3)])
                    conn.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    res = _verify(engine, signer)
    assert res.ok, res.problems
    assert res.entries == 4 * 5 * 3


# ------------------------------------------------------------------------------------------------ tampering


def test_flipped_byte_is_named(engine: Engine, cipher: FieldCipher, signer: LedgerSigner, tamper) -> None:  # type: ignore[no-untyped-def]
    _fill(engine, cipher, signer)
    with engine.begin() as conn:
        diff = conn.execute(select(LedgerEntry.diff_enc).where(LedgerEntry.seq == 4)).scalar_one()
        flipped = diff[:-3] + ("A" if diff[-3] != "A" else "B") + diff[-2:]
        tamper(conn, "UPDATE ledger_entries SET diff_enc = :d WHERE seq = 4", d=flipped)
    res = _verify(engine, signer)
    assert not res.ok and res.first_bad_seq == 4
    assert {(p.seq, p.kind) for p in res.problems} >= {(4, "hash-mismatch"), (6, "checkpoint-mismatch")}


def test_edited_field_is_named(engine: Engine, cipher: FieldCipher, signer: LedgerSigner, tamper) -> None:  # type: ignore[no-untyped-def]
    _fill(engine, cipher, signer)
    with engine.begin() as conn:
        tamper(conn, "UPDATE ledger_entries SET action = 'skipped-unchanged' WHERE seq = 6")
    res = _verify(engine, signer)
    assert res.first_bad_seq == 6 and res.problems[0].kind == "hash-mismatch"
    # the rewriter recomputes the entry hash too: the next link and the signed checkpoint catch it
    with engine.begin() as conn:
        row = dict(conn.execute(select(LedgerEntry).where(LedgerEntry.seq == 6)).mappings().one())
        from crmbridge.sync.state.ledger import _body_bytes, _body_from_record

        new_hash = __import__("hashlib").sha256(_body_bytes(_body_from_record(row))).hexdigest()
        tamper(conn, "UPDATE ledger_entries SET entry_hash = :h WHERE seq = 6", h=new_hash)
    res = _verify(engine, signer)
    kinds = {(p.seq, p.kind) for p in res.problems}
    assert (7, "broken-link") in kinds and (6, "checkpoint-mismatch") in kinds and (6, "hash-mismatch") not in kinds
    assert res.first_bad_seq == 6


def test_deleted_row_is_named(engine: Engine, cipher: FieldCipher, signer: LedgerSigner, tamper) -> None:  # type: ignore[no-untyped-def]
    _fill(engine, cipher, signer)
    with engine.begin() as conn:
        tamper(conn, "DELETE FROM ledger_entries WHERE seq = 3")
    res = _verify(engine, signer)
    assert res.first_bad_seq == 3
    kinds = {(p.seq, p.kind) for p in res.problems}
    assert (3, "missing") in kinds and (4, "broken-link") in kinds


def test_swapped_rows_are_named(engine: Engine, cipher: FieldCipher, signer: LedgerSigner, tamper) -> None:  # type: ignore[no-untyped-def]
    _fill(engine, cipher, signer)
    cols = [c.name for c in LedgerEntry.__table__.columns if c.name != "seq"]
    with engine.begin() as conn:
        a = dict(conn.execute(select(LedgerEntry.__table__).where(LedgerEntry.seq == 2)).mappings().one())
        b = dict(conn.execute(select(LedgerEntry.__table__).where(LedgerEntry.seq == 3)).mappings().one())
        sets = ", ".join(f"{c} = :{c}" for c in cols)
        tamper(conn, f"UPDATE ledger_entries SET {sets} WHERE seq = 2", **{c: b[c] for c in cols})
        tamper(conn, f"UPDATE ledger_entries SET {sets} WHERE seq = 3", **{c: a[c] for c in cols})
    res = _verify(engine, signer)
    assert res.first_bad_seq == 2
    assert {(2, "hash-mismatch"), (3, "hash-mismatch")} <= {(p.seq, p.kind) for p in res.problems}


def test_forged_entries_appended(engine: Engine, cipher: FieldCipher, signer: LedgerSigner, tamper) -> None:  # type: ignore[no-untyped-def]
    _fill(engine, cipher, signer)
    # naive forgery: a row inserted with a made-up hash
    with engine.begin() as conn:
        last = dict(conn.execute(select(LedgerEntry.__table__).where(LedgerEntry.seq == 8)).mappings().one())
        forged = dict(last, seq=9, prev_hash=last["entry_hash"], entry_hash="ab" * 32, action="deleted")
        conn.execute(LedgerEntry.__table__.insert().values(**forged))
    res = _verify(engine, signer)
    assert res.first_bad_seq == 9 and res.problems[0].kind == "hash-mismatch"
    with engine.begin() as conn:
        tamper(conn, "DELETE FROM ledger_entries WHERE seq = 9")
    # careful forgery through the ledger API itself (an operator with DB access but without the signing key),
    # for a run whose closing checkpoint is signed: named as forged
    with engine.begin() as conn:
        Ledger(conn, cipher=cipher).append([_entry(9, action=Action.DELETED)])
    res = _verify(engine, signer)
    assert res.first_bad_seq == 9 and res.problems[0].kind == "forged"


def test_unsigned_tail_and_foreign_checkpoint(engine: Engine, cipher: FieldCipher, signer: LedgerSigner) -> None:
    _fill(engine, cipher, signer, close_run=False)  # auto checkpoint at 6; 7 and 8 not signed yet
    with engine.begin() as conn:
        Ledger(conn, cipher=cipher).append([_entry(9, run="other")])  # a forger without the signing key
    res = _verify(engine, signer)
    assert res.ok and res.warnings == ["entries 7..9 are not covered by a signed checkpoint yet"]
    res = _verify(engine, signer, require_signed=True)
    assert res.first_bad_seq == 7 and res.problems[0].kind == "unsigned"
    # a checkpoint signed with another key does not count and is named
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with engine.begin() as conn:
        Ledger(conn, LedgerSigner(Ed25519PrivateKey.generate())).checkpoint()
    res = _verify(engine, signer, require_signed=True)
    assert (9, "bad-signature") in {(p.seq, p.kind) for p in res.problems} and res.signed_size == 6


def test_truncated_tail(engine: Engine, cipher: FieldCipher, signer: LedgerSigner, tamper) -> None:  # type: ignore[no-untyped-def]
    _fill(engine, cipher, signer)
    with engine.connect() as conn:
        head = Ledger(conn).head()
    with engine.begin() as conn:
        tamper(conn, "DELETE FROM ledger_entries WHERE seq >= 7")
    res = _verify(engine, signer)
    assert res.first_bad_seq == 7 and any(p.kind == "truncated" for p in res.problems)
    # also when the checkpoints and the head row are rewritten: the auditor's expected head catches it
    with engine.begin() as conn:
        tamper(conn, "DELETE FROM ledger_checkpoints WHERE tree_size > 6")
        tamper(conn, "DELETE FROM ledger_head")
    assert _verify(engine, signer).ok
    res = _verify(engine, signer, expected_head=head)
    assert res.first_bad_seq == 7 and res.problems[0].kind == "truncated"


def test_export_jsonl_verifies_offline_and_catches_file_tampering(
        engine: Engine, cipher: FieldCipher, signer: LedgerSigner, tmp_path: Path) -> None:
    _fill(engine, cipher, signer)
    buf = io.StringIO()
    with engine.connect() as conn:
        assert export_ledger(Ledger(conn), buf, fmt="jsonl") == 8
    path = tmp_path / "ledger.jsonl"
    path.write_text(buf.getvalue(), encoding="utf-8")
    entries, cps = read_export(path)
    assert verify_records(entries, cps, signer.public_key).ok
    lines = buf.getvalue().splitlines()
    # an edited masked value
    edited = json.loads(lines[4])
    edited["masked_after"][edited["changed_fields"].index("contact_points[0].value")] = "+86139****1111"
    bad = lines[:4] + [json.dumps(edited)] + lines[5:]
    path.write_text("\n".join(bad) + "\n", encoding="utf-8")
    res = verify_records(*read_export(path), signer.public_key)
    assert res.first_bad_seq == 5 and res.problems[0].kind == "hash-mismatch"
    # two lines swapped
    swapped = lines[:2] + [lines[3], lines[2]] + lines[4:]
    path.write_text("\n".join(swapped) + "\n", encoding="utf-8")
    res = verify_records(*read_export(path), signer.public_key)
    assert res.first_bad_seq == 3
    # wrong public key
    other = generate_signing_key(tmp_path / "other.pem")
    res = verify_records(entries, cps, other.public_key)
    assert {p.kind for p in res.problems} == {"bad-signature"}
    # csv: masked values, no ciphertext
    out = io.StringIO()
    with engine.connect() as conn:
        export_ledger(Ledger(conn), out, fmt="csv", job="core_to_zoho")
    text_csv = out.getvalue()
    assert "+86138****5678" in text_csv and "cb1:" not in text_csv and "13812345678" not in text_csv


def test_sm3_ledger(engine: Engine, signer: LedgerSigner) -> None:
    with engine.begin() as conn:
        ledger = Ledger(conn, signer, hash_alg="sm3")
        ledger.append([_entry(i) for i in range(3)])
        ledger.checkpoint()
    with engine.connect() as conn:
        entries = list(Ledger(conn).iter_entries())
    assert {e["hash_alg"] for e in entries} == {"sm3"}
    assert _verify(engine, signer).ok
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))


@pytest.mark.postgres
def test_postgres_refuses_update_and_delete(privacy_pg_url: str, signer: LedgerSigner) -> None:
    """The triggers come with the tables (create_all here; migration 0002 in test_privacy_migrations)."""
    from sqlalchemy.exc import DBAPIError

    from crmbridge.sync.state.db import Base, import_models, make_engine

    engine = make_engine(privacy_pg_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    import_models()
    Base.metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            Ledger(conn, signer).append([_entry(1)])
            Ledger(conn, signer).checkpoint()
        for sql in ("UPDATE ledger_entries SET actor = 'x'", "DELETE FROM ledger_entries",
                    "UPDATE ledger_checkpoints SET signature = 'x'", "DELETE FROM ledger_checkpoints",
                    "TRUNCATE ledger_entries"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(sql))
        assert _verify(engine, signer).ok
    finally:
        engine.dispose()
