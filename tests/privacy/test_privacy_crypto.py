"""Envelope encryption: round trips on both algorithms, AAD binding, tampering, wrong master key, rotation."""

from __future__ import annotations

import base64
import os

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from crmbridge.core.errors import ConfigurationError, SecretError
from crmbridge.sync.security.crypto import (
    DataKey,
    DecryptionError,
    FieldCipher,
    KeyDestroyedError,
    LocalKeyProvider,
    generate_master_key,
    is_token,
    load_key_provider,
    parse_header,
)

PARTY = "123e4567-e89b-12d3-a456-426614174000"
RIC = "11010519491231002X"


@pytest.fixture
def db_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """SQLite only here: the key store's PostgreSQL behaviour is covered by the ledger, erasure, re-encryption and
    clear-text scan tests, which run on both databases."""
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.mark.parametrize("algorithm", ["AES-256-GCM", "SM4-GCM", "sm4-gcm"])
def test_round_trip_and_header(engine: Engine, algorithm: str) -> None:
    cipher = FieldCipher(LocalKeyProvider(os.urandom(32), algorithm=algorithm), algorithm=algorithm)
    with engine.begin() as conn:
        cipher.init(conn)
        token = cipher.encrypt(conn, RIC, table="snapshots", column="blob", record="r1", party_id=PARTY)
        system = cipher.encrypt(conn, "张三丰", table="t", column="c", record=7)
    assert is_token(token) and RIC not in token
    head = parse_header(token)
    assert head.format_version == 1 and head.algorithm == algorithm.upper() and head.key_version == 1
    with engine.connect() as conn:
        assert cipher.decrypt_text(conn, token, table="snapshots", column="blob", record="r1") == RIC
        assert cipher.decrypt_text(conn, system, table="t", column="c", record="7") == "张三丰"
        scope = conn.execute(select(DataKey.scope).where(DataKey.kid == head.kid)).scalar_one()
    assert scope == f"party:{PARTY}"
    # a fresh cipher (no cache) with the same master key decrypts from the database
    again = FieldCipher(cipher.provider, algorithm=algorithm)
    with engine.connect() as conn:
        assert again.decrypt_text(conn, token, table="snapshots", column="blob", record="r1") == RIC


def test_random_nonce_gives_different_ciphertexts(engine: Engine, cipher: FieldCipher) -> None:
    with engine.begin() as conn:
        a = cipher.encrypt(conn, RIC, table="t", column="c", record="1")
        b = cipher.encrypt(conn, RIC, table="t", column="c", record="1")
    assert a != b


@pytest.mark.parametrize("binding", [
    {"table": "t", "column": "c", "record": "2"},      # moved to another record
    {"table": "t", "column": "d", "record": "1"},      # another column
    {"table": "u", "column": "c", "record": "1"},      # another table
])
def test_aad_binds_table_column_record(engine: Engine, cipher: FieldCipher, binding: dict[str, str]) -> None:
    with engine.begin() as conn:
        token = cipher.encrypt(conn, RIC, table="t", column="c", record="1", party_id=PARTY)
    with engine.connect() as conn, pytest.raises(DecryptionError, match="does not authenticate"):
        cipher.decrypt(conn, token, **binding)


def test_flipped_byte_and_edited_header_fail(engine: Engine, cipher: FieldCipher) -> None:
    with engine.begin() as conn:
        token = cipher.encrypt(conn, RIC, table="t", column="c", record="1")
    raw = bytearray(base64.urlsafe_b64decode(token[4:] + "=" * (-len(token[4:]) % 4)))
    for pos in (len(raw) - 1, 30, 9):  # tag, ciphertext/nonce, key version in the header
        bad = bytearray(raw)
        bad[pos] ^= 0x01
        forged = "cb1:" + base64.urlsafe_b64encode(bytes(bad)).rstrip(b"=").decode()
        with engine.connect() as conn, pytest.raises(DecryptionError):
            cipher.decrypt(conn, forged, table="t", column="c", record="1")
    with engine.connect() as conn, pytest.raises(DecryptionError, match="envelope"):
        cipher.decrypt(conn, "plain text", table="t", column="c", record="1")
    with engine.connect() as conn, pytest.raises(DecryptionError, match="truncated"):
        cipher.decrypt(conn, token[:20], table="t", column="c", record="1")


def test_bytes_tokens_for_binary_columns(engine: Engine, cipher: FieldCipher) -> None:
    with engine.begin() as conn:
        token = cipher.encrypt(conn, b"\x00\x01payload", table="t", column="c", record="1").encode()
    with engine.connect() as conn:
        assert cipher.decrypt(conn, token, table="t", column="c", record="1") == b"\x00\x01payload"


def test_wrong_master_key_is_a_clear_error(engine: Engine, cipher: FieldCipher) -> None:
    with engine.begin() as conn:
        token = cipher.encrypt(conn, RIC, table="t", column="c", record="1")
    other = FieldCipher(LocalKeyProvider(os.urandom(32)))
    with engine.connect() as conn, pytest.raises(DecryptionError, match="wrong master key") as err:
        other.decrypt(conn, token, table="t", column="c", record="1")
    assert cipher.provider.key_id in str(err.value) and other.provider.key_id in str(err.value)
    assert RIC not in str(err.value)


def test_master_key_references(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    key = generate_master_key()
    monkeypatch.setenv("CRMB_TEST_MASTER", key)
    (tmp_path / "mk").write_text(key + "\n")
    a = load_key_provider("env:CRMB_TEST_MASTER")
    b = load_key_provider("file:mk", base_dir=tmp_path)
    c = load_key_provider("env:CRMB_TEST_MASTER", provider="env")
    assert a.key_id == b.key_id == c.key_id
    monkeypatch.setenv("CRMB_TEST_SHORT", base64.b64encode(b"x" * 16).decode())
    with pytest.raises(SecretError, match="32 bytes") as err:
        load_key_provider("env:CRMB_TEST_SHORT")
    assert "eHh4" not in str(err.value)  # the value is never echoed
    with pytest.raises(SecretError, match="not set"):
        load_key_provider("env:CRMB_TEST_UNSET_VARIABLE")
    with pytest.raises(ConfigurationError, match="unknown key provider 'vault'.*crmbridge.key_providers"):
        load_key_provider("vault:transit/keys/crmbridge")
    with pytest.raises(ConfigurationError, match="unknown encryption algorithm"):
        LocalKeyProvider(os.urandom(32), algorithm="DES")


class _CountingKms:
    """A stand-in key service: any object with key_id/wrap/unwrap plugs in without touching callers."""

    def __init__(self) -> None:
        self.inner = LocalKeyProvider(os.urandom(32))
        self.key_id = "kms:test-key/1"
        self.calls = 0

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        self.calls += 1
        return self.inner.wrap(key, context=context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        self.calls += 1
        return self.inner.unwrap(wrapped, context=context)


def test_pluggable_key_provider(engine: Engine) -> None:
    kms = _CountingKms()
    cipher = FieldCipher(kms)
    with engine.begin() as conn:
        cipher.init(conn)
        token = cipher.encrypt(conn, RIC, table="t", column="c", record="1")
    fresh = FieldCipher(kms)
    with engine.connect() as conn:
        assert fresh.decrypt_text(conn, token, table="t", column="c", record="1") == RIC
    assert kms.calls >= 3


def test_rotation_old_versions_keep_decrypting(engine: Engine, cipher: FieldCipher) -> None:
    with engine.begin() as conn:
        old_sys = cipher.encrypt(conn, "old", table="t", column="c", record="1")
        old_party = cipher.encrypt(conn, "old-p", table="t", column="c", record="1", party_id=PARTY)
        assert cipher.rotate(conn) == 2
    with engine.begin() as conn:
        new_sys = cipher.encrypt(conn, "new", table="t", column="c", record="1")
        new_party = cipher.encrypt(conn, "new-p", table="t", column="c", record="1", party_id=PARTY)
        assert cipher.current_version(conn) == 2
    assert parse_header(old_sys).key_version == 1 and parse_header(new_sys).key_version == 2
    assert parse_header(old_party).key_version == 1 and parse_header(new_party).key_version == 2
    assert parse_header(old_party).kid != parse_header(new_party).kid
    other_process = FieldCipher(cipher.provider)
    with engine.connect() as conn:
        for token, plain in ((old_sys, "old"), (old_party, "old-p"), (new_sys, "new"), (new_party, "new-p")):
            assert other_process.decrypt_text(conn, token, table="t", column="c", record="1") == plain
        status = other_process.status(conn)
    assert status.current_version == 2 and [v[0] for v in status.system_versions] == [1, 2]
    assert status.party_keys == 2 and status.blind_index_key


def test_key_created_in_a_rolled_back_transaction_is_not_reused(engine: Engine, cipher: FieldCipher) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), engine.begin() as conn:
        lost = cipher.encrypt(conn, "x", table="t", column="c", record="1", party_id=PARTY)
        raise Boom
    with engine.begin() as conn:
        kept = cipher.encrypt(conn, "y", table="t", column="c", record="1", party_id=PARTY)
    assert parse_header(kept).kid != parse_header(lost).kid
    with engine.connect() as conn:
        assert FieldCipher(cipher.provider).decrypt_text(conn, kept, table="t", column="c", record="1") == "y"


def test_destroyed_party_key_makes_values_unreadable(engine: Engine, cipher: FieldCipher) -> None:
    with engine.begin() as conn:
        token = cipher.encrypt(conn, RIC, table="t", column="c", record="1", party_id=PARTY)
        other = cipher.encrypt(conn, RIC, table="t", column="c", record="1", party_id="someone-else")
        assert cipher.destroy_party_keys(conn, PARTY) == 1
    for c in (cipher, FieldCipher(cipher.provider)):
        with engine.connect() as conn, pytest.raises(KeyDestroyedError, match="destroyed"):
            c.decrypt(conn, token, table="t", column="c", record="1")
    with engine.connect() as conn:
        assert cipher.decrypt_text(conn, other, table="t", column="c", record="1") == RIC
        wrapped = conn.execute(select(DataKey.wrapped).where(DataKey.scope == f"party:{PARTY}")).scalar_one()
    assert wrapped is None
    # the party seen again later gets a new key; its old values stay gone
    with engine.begin() as conn:
        again = cipher.encrypt(conn, "new data", table="t", column="c", record="1", party_id=PARTY)
    assert parse_header(again).kid != parse_header(token).kid
    with engine.connect() as conn:
        assert FieldCipher(cipher.provider).decrypt_text(conn, again, table="t", column="c", record="1") == "new data"


def test_rewrap_moves_data_keys_to_a_new_master_key(engine: Engine, cipher: FieldCipher) -> None:
    with engine.begin() as conn:
        token = cipher.encrypt(conn, RIC, table="t", column="c", record="1", party_id=PARTY)
    new = FieldCipher(LocalKeyProvider(os.urandom(32)))
    with engine.begin() as conn:
        assert FieldCipher(cipher.provider).rewrap(conn, new.provider) == 3  # system, blind-index, party
    with engine.connect() as conn:
        assert new.decrypt_text(conn, token, table="t", column="c", record="1") == RIC
        with pytest.raises(DecryptionError, match="wrong master key"):
            FieldCipher(cipher.provider).decrypt(conn, token, table="t", column="c", record="1")


def test_encrypt_without_keys_init_says_what_to_do(engine: Engine) -> None:
    cipher = FieldCipher(LocalKeyProvider(os.urandom(32)))
    with engine.begin() as conn, pytest.raises(ConfigurationError, match="keys init"):
        cipher.encrypt(conn, "x", table="t", column="c", record="1")


def test_erasure_by_another_process_takes_effect_after_the_cache_window(engine: Engine, master_key: bytes) -> None:
    import time

    scheduler = FieldCipher(LocalKeyProvider(master_key), cache_seconds=0.2)
    with engine.begin() as conn:
        scheduler.init(conn)
        token = scheduler.encrypt(conn, RIC, table="t", column="c", record="1", party_id=PARTY)
    with engine.connect() as conn:
        assert scheduler.decrypt_text(conn, token, table="t", column="c", record="1") == RIC  # key now cached
    with engine.begin() as conn:
        FieldCipher(LocalKeyProvider(master_key)).destroy_party_keys(conn, PARTY)  # `crmbridge erase` elsewhere
    time.sleep(0.25)
    with engine.connect() as conn, pytest.raises(KeyDestroyedError):
        scheduler.decrypt(conn, token, table="t", column="c", record="1")
