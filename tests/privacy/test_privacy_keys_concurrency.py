"""Two transactions creating the same party's data key at once: one key wins, both values stay readable."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from crmbridge.sync.security.crypto import DataKey, FieldCipher, parse_header

PARTY = "123e4567-e89b-12d3-a456-426614174000"


def _begin(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # as the state store does
    else:
        conn.begin()


def _race(engine: Engine, cipher: FieldCipher, prepare_first: list[str] | None = None) -> dict[str, str]:
    """Two transactions encrypting for PARTY, which has no key yet: the first creates one and holds it
    uncommitted for half a second while the second (after ``prepare_first``, a batch key preparation, if given)
    runs into it. Returns both tokens, after checking one key won and both stay readable."""
    inserted = threading.Event()
    tokens: dict[str, str] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with engine.connect() as conn:
                _begin(conn)
                tokens["a"] = FieldCipher(cipher.provider).encrypt(conn, "a", table="t", column="c", record="1",
                                                                   party_id=PARTY)
                inserted.set()
                time.sleep(0.5)  # the other transaction now runs into our uncommitted key
                conn.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            inserted.set()

    def second() -> None:
        try:
            inserted.wait(10)
            c2 = FieldCipher(cipher.provider)
            with engine.connect() as conn:
                _begin(conn)
                if prepare_first is not None:
                    c2.prepare_party_keys(conn, prepare_first)
                tokens["b"] = c2.encrypt(conn, "b", table="t", column="c", record="1", party_id=PARTY)
                conn.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert parse_header(tokens["a"]).kid == parse_header(tokens["b"]).kid
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(DataKey).where(DataKey.scope == f"party:{PARTY}")).scalar()
        fresh = FieldCipher(cipher.provider)
        assert fresh.decrypt_text(conn, tokens["a"], table="t", column="c", record="1") == "a"
        assert fresh.decrypt_text(conn, tokens["b"], table="t", column="c", record="1") == "b"
    assert n == 1
    return tokens


def test_racing_party_key_creation(engine: Engine, cipher: FieldCipher) -> None:
    _race(engine, cipher)


def _party(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def test_batch_preparation_creates_each_missing_key_once_and_reuses_the_others(engine: Engine,
                                                                               cipher: FieldCipher) -> None:
    with engine.begin() as conn:   # party 0 has a key already; party 1's was destroyed (erased, seen again)
        old0 = cipher.encrypt(conn, "zero", table="t", column="c", record="1", party_id=_party(0))
        cipher.encrypt(conn, "one", table="t", column="c", record="1", party_id=_party(1))
        cipher.destroy_party_keys(conn, _party(1))
    batch = FieldCipher(cipher.provider)
    with engine.begin() as conn:
        assert batch.prepare_party_keys(conn, [_party(i) for i in range(50)] + [_party(3)]) == 49
        tokens = {i: batch.encrypt(conn, f"v{i}", table="t", column="c", record="1", party_id=_party(i))
                  for i in range(50)}
        assert batch.prepare_party_keys(conn, [_party(i) for i in range(50)]) == 0  # all known now
    assert parse_header(tokens[0]).kid == parse_header(old0).kid
    with engine.connect() as conn:
        rows = conn.execute(select(DataKey.scope, DataKey.version, DataKey.wrapped)
                            .where(DataKey.scope.like("party:%"))).all()
        fresh = FieldCipher(cipher.provider)
        for i, token in tokens.items():
            assert fresh.decrypt_text(conn, token, table="t", column="c", record="1") == f"v{i}"
    live = [r for r in rows if r.wrapped is not None]
    assert len(live) == 50 and len({r.scope for r in live}) == 50
    assert {r.version for r in rows if r.scope == f"party:{_party(1)}"} == {1, 2}  # new data, new key version


def test_batch_preparation_in_a_rolled_back_transaction_leaves_nothing_behind(engine: Engine,
                                                                             cipher: FieldCipher) -> None:
    class Boom(Exception):
        pass

    try:
        with engine.begin() as conn:
            cipher.prepare_party_keys(conn, [_party(i) for i in range(5)])
            lost = cipher.encrypt(conn, "x", table="t", column="c", record="1", party_id=_party(0))
            raise Boom
    except Boom:
        pass
    with engine.begin() as conn:
        assert cipher.prepare_party_keys(conn, [_party(i) for i in range(5)]) == 5
        kept = cipher.encrypt(conn, "y", table="t", column="c", record="1", party_id=_party(0))
    assert parse_header(kept).kid != parse_header(lost).kid


def test_batch_preparation_racing_a_single_creation_uses_the_winners_key(engine: Engine,
                                                                        cipher: FieldCipher) -> None:
    _race(engine, cipher, prepare_first=[PARTY, _party(7)])


def test_key_caches_are_bounded(engine: Engine, cipher: FieldCipher, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """One cache entry per party ever synced would grow without end at a bank's size."""
    from crmbridge.sync.security import crypto

    monkeypatch.setattr(crypto, "CACHE_ENTRIES", 10)
    small = FieldCipher(cipher.provider)
    with engine.begin() as conn:
        small.prepare_party_keys(conn, [_party(i) for i in range(40)])
        tokens = [small.encrypt(conn, str(i), table="t", column="c", record="1", party_id=_party(i))
                  for i in range(40)]
    assert len(small._current) <= 10 and len(small._keys) <= 10
    with engine.connect() as conn:   # forgotten keys are read again from the database
        assert [small.decrypt_text(conn, t, table="t", column="c", record="1") for t in tokens] == \
            [str(i) for i in range(40)]
