"""Blind indexes: normalisation, per-field keys, truncation, algorithms, identity matching without decryption."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy.engine import Engine

from crmbridge.core.errors import ConfigurationError
from crmbridge.sync.security.blindindex import BlindIndexer, normalise
from crmbridge.sync.security.crypto import FieldCipher
from crmbridge.sync.security.privacy import identity_keys

ROOT = bytes(range(32))


@pytest.fixture
def db_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'state.db'}"


def test_ric_normalisation_indexes_equal() -> None:
    bi = BlindIndexer(ROOT)
    a = bi.identifier("CN_RIC", "11010519491231002x")
    assert a == bi.identifier("CN_RIC", "11010519491231002X ") == bi.identifier("cn_ric", " 110105 19491231 002X")
    assert a != bi.identifier("CN_RIC", "360426199101010071")
    assert a.startswith("b1:") and len(a) == 3 + 16  # 64 bits
    assert normalise("CN_RIC", "11010519491231002x") == "11010519491231002X"


def test_phone_email_name_normalisation() -> None:
    bi = BlindIndexer(ROOT)
    mobiles = {bi.identifier("MOBILE", v) for v in ("13812345678", "+86 138 1234 5678", "008613812345678",
                                                    "138-1234-5678")}
    assert len(mobiles) == 1
    assert normalise("MOBILE", "138 1234 5678") == "+8613812345678"
    assert bi.identifier("EMAIL", "Zhang.San@Example.COM ") == bi.identifier("EMAIL", "zhang.san@example.com")
    assert bi.index("name.legal_zh", " 张三丰 ", kind="name") == bi.index("name.legal_zh", "张三丰", kind="name")
    assert bi.index("name.en", "zhang  san", kind="name") == bi.index("name.en", "ZHANG SAN", kind="name")


def test_keys_differ_per_field_and_root() -> None:
    bi = BlindIndexer(ROOT)
    assert bi.identifier("CN_RIC", "11010519491231002X") != bi.index("other", "11010519491231002X", kind="id")
    assert bi.field_key("identifier.CN_RIC") != bi.field_key("identifier.PASSPORT")
    assert BlindIndexer(os.urandom(32)).identifier("CN_RIC", "11010519491231002X") != \
        bi.identifier("CN_RIC", "11010519491231002X")
    # keyed: not the plain SHA-256 of the value
    import hashlib

    assert hashlib.sha256(b"CN_RIC|11010519491231002X").hexdigest()[:16] not in bi.identifier("CN_RIC",
                                                                                              "11010519491231002X")


def test_sm3_and_truncation() -> None:
    sm3 = BlindIndexer(ROOT, algorithm="sm3", bits=32)
    v = sm3.identifier("CN_USCC", "91110000600037341l")
    assert v.startswith("b2:") and len(v) == 3 + 8
    assert v == sm3.identifier("CN_USCC", "9111 0000 6000 3734 1L")
    assert v[3:] != BlindIndexer(ROOT, bits=32).identifier("CN_USCC", "91110000600037341L")[3:]
    with pytest.raises(ConfigurationError, match="32 to 64 bits"):
        BlindIndexer(ROOT, bits=128)
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        BlindIndexer(b"short")
    with pytest.raises(ValueError, match="unknown normalisation kind"):
        normalise("nonsense", "x")
    # match keys the engine composes: case-insensitive schemes, custom schemes as text, raw composite values
    bi = BlindIndexer(ROOT)
    assert bi.identifier("mobile", "138 1234 5678") == bi.identifier("MOBILE", "+8613812345678")
    assert bi.identifier("date_of_birth", " 1949-12-31") == bi.identifier("DATE_OF_BIRTH", "1949-12-31")
    assert bi.index("match.mobile+name", "+8613812345678|张三丰", kind="raw") != \
        bi.index("match.mobile+name", "+8613812345678|张三", kind="raw")


def test_root_key_lives_in_the_database(engine: Engine, cipher: FieldCipher) -> None:
    with engine.begin() as conn:
        a = BlindIndexer.from_cipher(conn, cipher).identifier("CN_RIC", "11010519491231002X")
    with engine.connect() as conn:
        again = BlindIndexer.from_cipher(conn, FieldCipher(cipher.provider))
        assert again.identifier("CN_RIC", "11010519491231002x") == a
    with engine.begin() as conn:  # rotating data keys does not change blind indexes: matching keeps working
        cipher.rotate(conn)
        assert BlindIndexer.from_cipher(conn, cipher).identifier("CN_RIC", "11010519491231002X") == a


def test_identity_keys_from_classification(make_party) -> None:  # type: ignore[no-untyped-def]
    party = make_party(str(uuid.uuid4()))
    bi = BlindIndexer(ROOT)
    keys = dict(identity_keys(bi, party))
    assert keys["CN_RIC"] == bi.identifier("CN_RIC", "11010519491231002x")
    assert keys["MOBILE"] == bi.identifier("MOBILE", "138 1234 5678")
    assert keys["EMAIL"] == bi.identifier("EMAIL", "ZHANG.SAN@example.com")
    assert keys["name.legal_zh"] == bi.index("name.legal_zh", "张三丰", kind="name")
    assert set(keys) == {"CN_RIC", "MOBILE", "EMAIL", "name.legal_zh"}
