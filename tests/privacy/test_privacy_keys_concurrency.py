"""Two transactions creating the same party's data key at once: one key wins, both values stay readable."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from crmbridge.sync.crypto import DataKey, FieldCipher, parse_header

PARTY = "123e4567-e89b-12d3-a456-426614174000"


def _begin(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # as the state store does
    else:
        conn.begin()


def test_racing_party_key_creation(engine: Engine, cipher: FieldCipher) -> None:
    inserted = threading.Event()
    tokens: dict[str, str] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            c1 = FieldCipher(cipher.provider)
            with engine.connect() as conn:
                _begin(conn)
                tokens["a"] = c1.encrypt(conn, "a", table="t", column="c", record="1", party_id=PARTY)
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
