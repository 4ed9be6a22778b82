"""Sealed values in binary columns are deflated, then stored as raw tokens (issue 19: the state database's size);
rows written before, as ``cb1:`` base64 text in ASCII bytes, still read, re-encrypt and keep their form."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from crmbridge.sync.security._zdict import CANONICAL_PARTY_V1
from crmbridge.sync.security.crypto import (
    FORMAT_DEFLATE,
    RAW_TOKEN_PREFIX,
    DecryptionError,
    FieldCipher,
    LocalKeyProvider,
    is_token,
    parse_header,
)
from crmbridge.sync.security.protect import reencrypt
from crmbridge.sync.state.migrate import upgrade
from crmbridge.sync.state.store import StateStore, snapshots

MASTER_KEY = os.urandom(32)   # one per module: the database (and its data keys) is the module's

#: a canonical party as the engine seals it (made-up values)
PARTY_DOC = {
    "addresses": [{"adcode": None, "adr_lines": [], "city": "太原市", "country": "CN", "district": "迎泽区",
                   "postcode": None, "province": "山西省", "raw": None, "street": "滨江路63号15栋3单元2303室",
                   "type": "RESIDENTIAL", "validated": False}],
    "aum": {"amount": "152672.72", "as_of": None, "band": "50K_500K", "currency": "CNY"},
    "consents": [{"captured_at": "2025-06-02T01:00:00Z", "channel": "BRANCH", "evidence_ref": None,
                  "legal_basis": "PIPL13_1_CONSENT", "notice_version": None, "purpose": p,
                  "separate_consent": False, "status": "GRANTED", "withdrawn_at": None}
                 for p in ("MARKETING_EMAIL", "MARKETING_SMS", "SHARE_WITH_CRM_VENDOR")],
    "contact_points": [{"flags": [], "kind": "MOBILE", "preferred": False, "purposes": [], "type": "MOBILE",
                        "value": "+8619307057932", "verified": False}],
    "identifiers": [{"expires_on": None, "flags": [], "is_primary": True, "issued_on": None, "issuer": None,
                     "issuing_country": "CN", "scheme": "CN_RIC", "value": "140106200502090001", "verified": None}],
    "name": {"aliases": [], "en": None, "family_zh": "叶", "given_zh": "秀佳", "legal_zh": "叶秀佳", "pinyin": None},
    "party_type": "INDIVIDUAL",
}


@pytest.fixture
def store(migrated_url: str) -> Iterator[StateStore]:
    s = StateStore.from_url(migrated_url)
    with s.transaction() as tx:
        tx.connection.execute(snapshots.delete())
    yield s
    s.dispose()


@pytest.fixture
def cipher(store: StateStore) -> FieldCipher:
    c = FieldCipher(LocalKeyProvider(MASTER_KEY))
    with store.transaction() as tx:
        c.init(tx)
    return c


def _row(pid: str) -> dict[str, str]:
    return {"party_id": pid, "system": "zoho_cn", "object": "Contacts"}


def _stored_blob(store: StateStore, pid: str) -> bytes:
    with store.transaction(read_only=True) as tx:
        return bytes(tx.connection.execute(select(snapshots.c.blob).where(snapshots.c.party_id == pid)).scalar_one())


def test_a_sealed_snapshot_is_a_deflated_raw_token_a_fifth_of_the_old_form(store: StateStore,
                                                                           cipher: FieldCipher) -> None:
    pid = str(uuid.uuid4())
    with store.transaction() as tx:
        blob = tx.seal(cipher, "snapshots", "blob", row=_row(pid), value=PARTY_DOC)
        tx.put_snapshot(pid, "zoho_cn", "Contacts", content_hash="h", blob=blob)
        old = cipher.encrypt_json(tx, PARTY_DOC, table="snapshots", column="blob", record="x", compress=False)
    stored = _stored_blob(store, pid)
    assert stored.startswith(RAW_TOKEN_PREFIX) and is_token(stored)
    assert parse_header(stored).format_version == FORMAT_DEFLATE
    assert len(stored) * 3 < len(old), (len(stored), len(old))   # measured: ~0.2 of the old text token
    for clear in (b"8619307057932", b"140106200502090001", "叶秀佳".encode()):
        assert clear not in stored
    with store.transaction(read_only=True) as tx:
        assert tx.unseal(cipher, "snapshots", "blob", row=_row(pid), token=stored) == PARTY_DOC


def test_rows_written_in_the_old_text_form_still_read_and_keep_their_form_on_reencryption(
        store: StateStore, cipher: FieldCipher) -> None:
    pid = str(uuid.uuid4())
    with store.transaction() as tx:   # what seal wrote before: uncompressed cb1: text as ASCII bytes
        old = cipher.encrypt(tx, json.dumps(PARTY_DOC, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
                             table="snapshots", column="blob", record=f"{pid}|zoho_cn|Contacts",
                             party_id=pid).encode("ascii")
        tx.put_snapshot(pid, "zoho_cn", "Contacts", content_hash="h", blob=old)
    assert _stored_blob(store, pid).startswith(b"cb1:") and parse_header(old).format_version == 1
    stored = _stored_blob(store, pid)
    with store.transaction(read_only=True) as tx:
        assert tx.unseal(cipher, "snapshots", "blob", row=_row(pid), token=stored) == PARTY_DOC
    new_pid = str(uuid.uuid4())
    with store.transaction() as tx:
        tx.put_snapshot(new_pid, "zoho_cn", "Contacts", content_hash="h",
                        blob=tx.seal(cipher, "snapshots", "blob", row=_row(new_pid), value=PARTY_DOC))
        cipher.rotate(tx)
    report = reencrypt(store, cipher)
    assert report.complete and not report.failed and report.columns["snapshots.blob"] == 2
    after_old, after_new = _stored_blob(store, pid), _stored_blob(store, new_pid)
    assert after_old.startswith(b"cb1:") and parse_header(after_old).format_version == 1
    assert after_new.startswith(RAW_TOKEN_PREFIX) and parse_header(after_new).format_version == FORMAT_DEFLATE
    assert parse_header(after_new).key_version == 2 == parse_header(after_old).key_version
    with store.transaction(read_only=True) as tx:
        for p, blob in ((pid, after_old), (new_pid, after_new)):
            assert tx.unseal(cipher, "snapshots", "blob", row=_row(p), token=blob) == PARTY_DOC


def test_a_tampered_raw_token_or_format_byte_does_not_decrypt(store: StateStore, cipher: FieldCipher) -> None:
    pid = str(uuid.uuid4())
    with store.transaction() as tx:
        token = tx.seal(cipher, "snapshots", "blob", row=_row(pid), value=PARTY_DOC)
    p = len(RAW_TOKEN_PREFIX)
    for pos in (p, p + 20, len(token) - 1):   # the format byte (bound as associated data), ciphertext, tag
        bad = bytearray(token)
        bad[pos] ^= 0x03
        with store.transaction(read_only=True) as tx, pytest.raises(DecryptionError):
            tx.unseal(cipher, "snapshots", "blob", row=_row(pid), token=bytes(bad))
    with store.transaction(read_only=True) as tx, pytest.raises(DecryptionError, match="truncated"):
        tx.unseal(cipher, "snapshots", "blob", row=_row(pid), token=token[:30])
    with store.transaction(read_only=True) as tx, pytest.raises(DecryptionError, match="does not authenticate"):
        tx.unseal(cipher, "snapshots", "blob", row=_row(str(uuid.uuid4())), token=token)   # another row's


def test_a_value_deflate_would_not_shrink_is_sealed_as_it_is(store: StateStore, cipher: FieldCipher) -> None:
    with store.transaction() as tx:
        noise = os.urandom(64)
        token = cipher.encrypt_raw(tx, noise, table="t", column="c", record="1")
        assert parse_header(token).format_version == 1
        assert cipher.decrypt(tx, token, table="t", column="c", record="1") == noise


def test_the_preset_dictionary_is_frozen() -> None:
    """Tokens name dictionary 1 by number: editing its bytes would make every compressed row unreadable."""
    assert hashlib.sha256(CANONICAL_PARTY_V1).hexdigest()[:16] == DICT_DIGEST


DICT_DIGEST = "7086b3629647b119"


def test_a_new_sqlite_database_has_8_kb_pages_and_an_old_one_keeps_its_own(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    from crmbridge.sync.state.db import SQLITE_PAGE_SIZE, make_engine

    new = tmp_path / "new.db"
    upgrade(f"sqlite:///{new}")
    old = tmp_path / "old.db"
    con = sqlite3.connect(old)   # a database created before this change: 4 KB pages, WAL
    con.execute("PRAGMA page_size=4096")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    eng = make_engine(f"sqlite:///{old}")
    with eng.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    eng.dispose()
    sizes = {p.name: sqlite3.connect(p).execute("PRAGMA page_size").fetchone()[0] for p in (new, old)}
    assert sizes == {"new.db": SQLITE_PAGE_SIZE, "old.db": 4096} and SQLITE_PAGE_SIZE == 8192
