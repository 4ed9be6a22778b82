"""Key rotation with --reencrypt: stored values move to the new version in resumable batches."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.engine import Engine

from crmbridge.sync.security.crypto import FieldCipher, parse_header
from crmbridge.sync.security.protect import ENCRYPTED_COLUMNS, ReencryptProgress, reencrypt, unseal
from crmbridge.sync.state.db import import_models
from crmbridge.sync.state.ledger import Ledger


def _tokens(engine: Engine) -> list[tuple[str, str, dict, bytes]]:
    md = import_models()
    out = []
    with engine.connect() as conn:
        for (tname, cname) in sorted(ENCRYPTED_COLUMNS):
            for row in conn.execute(select(md.tables[tname])).mappings():
                if row[cname] is not None:
                    out.append((tname, cname, dict(row), bytes(row[cname])))
    return out


def test_rotate_then_reencrypt_resumes(engine: Engine, cipher: FieldCipher, seed_party, make_party) -> None:  # type: ignore[no-untyped-def]
    parties = [str(uuid.uuid4()) for _ in range(3)]
    for i, pid in enumerate(parties):
        seed_party(make_party(pid, mobile=f"1390000{i:04d}"))
    before = _tokens(engine)
    assert len(before) == 3 * 5 and {parse_header(t).key_version for *_, t in before} == {1}
    with engine.begin() as conn:
        assert cipher.rotate(conn) == 2

    # interrupted after 3 batches of 2 rows ...
    first = reencrypt(engine, cipher, batch_size=2, max_batches=3)
    assert not first.complete and first.batches == 3 and first.rewritten == 5
    with engine.connect() as conn:
        progress = conn.execute(select(ReencryptProgress.__table__)).mappings().all()
    assert any(not p["finished"] for p in progress)
    # ... and resumed by another process (no cache), from where it stopped
    second = reencrypt(engine, FieldCipher(cipher.provider), batch_size=2)
    assert second.complete and not second.failed
    assert first.rewritten + second.rewritten == len(before)
    assert second.current == 0  # nothing was rewritten twice

    after = _tokens(engine)
    assert {parse_header(t).key_version for *_, t in after} == {2}
    fresh = FieldCipher(cipher.provider)
    with engine.connect() as conn:
        for tname, cname, row, token in after:
            assert unseal(conn, fresh, tname, cname, row=row, token=token) is not None
        # ledger diffs are append-only: they stay on version 1 and keep decrypting
        entry = next(iter(Ledger(conn).iter_entries()))
        assert parse_header(entry["diff_enc"]).key_version == 1
        assert Ledger(conn, cipher=fresh).decrypt_diff(entry) is not None
    # a repeated run finds everything current
    third = reencrypt(engine, fresh, batch_size=50)
    assert third.complete and third.rewritten == 0


def test_reencrypt_leaves_erased_values_alone(engine: Engine, cipher: FieldCipher, seed_party, make_party) -> None:  # type: ignore[no-untyped-def]
    pid, other = str(uuid.uuid4()), str(uuid.uuid4())
    seed_party(make_party(pid))
    seed_party(make_party(other, mobile="13900002222"))
    with engine.begin() as conn:
        cipher.destroy_party_keys(conn, pid)  # shredded, rows not (yet) deleted
        cipher.rotate(conn)
    report = reencrypt(engine, cipher)
    # the party's snapshot and 3 conflict values are shredded; its dead letter payload is under the system key
    assert report.complete and report.shredded == 4 and not report.failed
    assert report.rewritten == 5 + 1
