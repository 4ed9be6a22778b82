"""The database never holds a C2 value in clear, and no log line does either.

Known values are seeded the way the engine stores a record (xref, identity index, snapshot, dead letter, conflict,
ledger entry with diff, checkpoint) through the crypto/ledger APIs and the state store; then every column of
every table is read back and searched for them, in every encoding a leak could take.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from crmbridge.core.logsafe import PersonalDataFilter, configure_logging, unconfigure_logging
from crmbridge.sync.security.crypto import FieldCipher
from crmbridge.sync.state.db import import_models

RIC, MOBILE, EMAIL = "11010519491231002X", "13812345678", "zhang.san@example.com"
NAME, STREET = "张三丰", "建国门外大街1号"


def _needles() -> list[str]:
    values = [RIC, RIC.lower(), "110105194912310", MOBILE, "+86" + MOBILE, EMAIL, NAME, STREET, "1949-12-31",
              "19491231"]
    values += [json.dumps(v)[1:-1] for v in (NAME, STREET)]   # \\uXXXX escapes
    return values


def _cells(engine: Engine) -> Iterator[tuple[str, str, str]]:
    md = import_models()
    with engine.connect() as conn:
        for table in md.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for col, value in row.items():
                    if value is None:
                        continue
                    if isinstance(value, bytes | bytearray | memoryview):
                        raw = bytes(value)
                        for text in (raw.decode("utf-8", "replace"), raw.decode("latin-1"), raw.hex()):
                            yield table.name, col, text
                    else:
                        yield table.name, col, value if isinstance(value, str) else json.dumps(value, default=str,
                                                                                            ensure_ascii=False)


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    configure_logging(logging.INFO)
    try:
        yield buf
    finally:
        root.removeHandler(handler)
        unconfigure_logging()


def test_no_c2_value_in_any_table_or_log_line(engine: Engine, cipher: FieldCipher, seed_party, make_party,  # type: ignore[no-untyped-def]
                                              captured_log: io.StringIO) -> None:
    party = make_party(str(uuid.uuid4()))
    seed_party(party, n=2)
    seed_party(make_party(str(uuid.uuid4()), ric="360426199101010071", mobile="13900001111",
                          email="li.si@example.com", name="李四"))
    cells = list(_cells(engine))
    tables = {t for t, _, _ in cells}
    # the scan really covers what was written
    assert {"snapshots", "dead_letters", "conflicts", "identity_index", "xref", "ledger_entries",
            "ledger_checkpoints", "crypto_data_keys", "runs"} <= tables
    leaks = [(t, c, n) for t, c, text in cells for n in _needles() if n in text]
    assert leaks == []
    # the masked forms are there, so the scan would have seen the values had they been stored
    ledger_text = " ".join(text for t, _, text in cells if t == "ledger_entries")
    assert "1*************002X" in ledger_text and "+86138****5678" in ledger_text and "张**" in ledger_text
    out = captured_log.getvalue()
    assert "created party" in out and "1*************002X" in out and "138****5678" in out
    assert [n for n in _needles() if n in out] == []


def test_the_scan_can_fail(engine: Engine, seed_party, make_party) -> None:  # type: ignore[no-untyped-def]
    """A control: a value written in clear is found."""
    from crmbridge.sync.state.store import StateStore

    seed_party(make_party(str(uuid.uuid4())))
    with StateStore(engine).transaction() as tx:
        tx.add_dead_letter("j", stage="map_in", reason_code="x", message=f"mobile {MOBILE}")
    leaks = {(t, c) for t, c, text in _cells(engine) for n in _needles() if n in text}
    assert leaks == {("dead_letters", "message")}


def test_log_filter_masks_message_args_and_exceptions() -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(PersonalDataFilter(secrets=["s3cr3t-token-value"]))
    log = logging.getLogger("crmbridge.test.logsafe")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("customer %s mobile %s", RIC, MOBILE)
        log.warning(f"inline {RIC.lower()} +86 138 1234 5678 {EMAIL} token=s3cr3t-token-value")
        log.warning("uscc %s card %s", "91110000600037341L", "6228480402564890018")
        try:
            raise ValueError(f"bad id {RIC}")
        except ValueError:
            log.exception("failed for %s", MOBILE)
    finally:
        log.removeHandler(handler)
    out = buf.getvalue()
    assert "customer 1*************002X mobile 138****5678" in out
    assert "+86138****5678" in out and "z***@example.com" in out and "token=[secret]" in out
    assert "91************341L" in out and "622848*********0018" in out
    assert "ValueError: bad id 1*************002X" in out
    for clear in (RIC, RIC.lower(), MOBILE, EMAIL, "s3cr3t-token-value", "91110000600037341L", "6228480402564890018"):
        assert clear not in out
    # ordinary numbers, ids and hashes are left alone
    from crmbridge.core.logsafe import mask_text

    kept = ("run 42 seq 123456 at 2026-11-28T14:33:38Z hash " + "ab" * 32
            + " party 123e4567-e89b-12d3-a456-426614174000 zoho id 4876876000000123001")
    assert mask_text(kept) == kept
