"""Which stored columns are encrypted, how their values are bound, and re-encryption after a key rotation.

A table module registers each column that holds ciphertext with :func:`register_encrypted_column`, naming the
columns that make up the record binding (the AEAD associated data) and the column holding the party id (so the
value is encrypted under the party's key and erasure can find it). The state store's columns are registered
here, next to the registry, so the engine, ``keys rotate --reencrypt`` and erasure agree on one binding::

    blob = seal(tx.connection, cipher, "snapshots", "blob",
                row={"party_id": pid, "system": "zoho_cn", "object": "Contacts"}, value=canonical_json_dict)
    tx.put_snapshot(pid, "zoho_cn", "Contacts", content_hash=h, blob=blob)
    data = unseal(tx.connection, cipher, "snapshots", "blob", row=snapshot_row, token=snapshot.blob)

:func:`reencrypt` rewrites every registered column's tokens under the newest key version, in batches, each
committed with its progress row, so an interrupted run resumes where it stopped. Values whose party key was
destroyed (erased parties) are left alone. Ledger diffs are not rewritten: ledger rows are append-only and the hash
covers the ciphertext; they stay readable under their (decrypt-only) key version.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String, Table, Text, select, tuple_, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from crmbridge.sync.security.crypto import Conn, DecryptionError, FieldCipher, KeyDestroyedError, Token, is_token
from crmbridge.sync.state.db import Base, import_models

__all__ = [
    "ENCRYPTED_COLUMNS",
    "EncryptedColumn",
    "ReencryptProgress",
    "ReencryptReport",
    "binding_of",
    "reencrypt",
    "register_encrypted_column",
    "seal",
    "unseal",
]


@dataclass(frozen=True)
class EncryptedColumn:
    """A column holding ``cb1:`` tokens (text or bytes).

    Attributes:
        record_columns: the row's columns joined (``|``) into the AEAD record binding.
        party_column: the column holding the party id (value encrypted under the party key; erasure target).
        json: the value is JSON (use :func:`seal`/:func:`unseal` with Python objects).
    """

    table: str
    column: str
    record_columns: tuple[str, ...]
    party_column: str | None = None
    json: bool = True


#: (table, column) → registration
ENCRYPTED_COLUMNS: dict[tuple[str, str], EncryptedColumn] = {}


def register_encrypted_column(table: str, column: str, *, record_columns: tuple[str, ...],
                              party_column: str | None = None, json: bool = True) -> EncryptedColumn:
    """Declare that ``table.column`` holds ciphertext bound to ``record_columns`` (idempotent)."""
    reg = EncryptedColumn(table, column, tuple(record_columns), party_column, json)
    ENCRYPTED_COLUMNS[(table, column)] = reg
    return reg


# the state store's encrypted columns (crmbridge.sync.state.store)
register_encrypted_column("snapshots", "blob", record_columns=("party_id", "system", "object"),
                          party_column="party_id")
register_encrypted_column("dead_letters", "payload",
                          record_columns=("job", "source_system", "source_object", "external_id"))
for _col in ("base_value", "source_value", "target_value"):
    register_encrypted_column("conflicts", _col, record_columns=("job", "party_id"), party_column="party_id")


def _reg(table: str, column: str) -> EncryptedColumn:
    try:
        return ENCRYPTED_COLUMNS[(table, column)]
    except KeyError:
        raise KeyError(f"{table}.{column} is not registered as an encrypted column") from None


def binding_of(table: str, column: str, row: Mapping[str, Any]) -> tuple[str, object | None]:
    """(record binding, party id) of ``row`` for a registered column."""
    reg = _reg(table, column)
    try:
        record = "|".join("" if row[c] is None else str(row[c]) for c in reg.record_columns)
    except KeyError as exc:
        raise KeyError(f"{table}.{column}: the row lacks binding column {exc.args[0]!r}") from None
    party = row.get(reg.party_column) if reg.party_column else None
    return record, party


def seal(conn: Conn, cipher: FieldCipher, table: str, column: str, *, row: Mapping[str, Any], value: Any,
         as_bytes: bool = True) -> Token:
    """Encrypt ``value`` (JSON-serialised for JSON columns) for ``table.column`` of ``row``.

    Returns bytes for LargeBinary columns (default) or text.
    """
    reg = _reg(table, column)
    record, party = binding_of(table, column, row)
    if reg.json:
        token = cipher.encrypt_json(conn, value, table=table, column=column, record=record, party_id=party)
    else:
        token = cipher.encrypt(conn, value, table=table, column=column, record=record, party_id=party)
    return token.encode("ascii") if as_bytes else token


def unseal(conn: Conn, cipher: FieldCipher, table: str, column: str, *, row: Mapping[str, Any],
           token: Token) -> Any:
    """Decrypt what :func:`seal` produced for the same row."""
    reg = _reg(table, column)
    record, _ = binding_of(table, column, row)
    if reg.json:
        return cipher.decrypt_json(conn, token, table=table, column=column, record=record)
    return cipher.decrypt(conn, token, table=table, column=column, record=record)


class ReencryptProgress(Base):
    """Where ``keys rotate --reencrypt`` got to, per column (committed with each batch)."""

    __tablename__ = "crypto_reencrypt_progress"

    table_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    column_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    target_version: Mapped[int] = mapped_column(Integer)
    last_key: Mapped[str | None] = mapped_column(Text)   # JSON list of the last primary key done
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    finished: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[str] = mapped_column(String(32))


@dataclass
class ReencryptReport:
    rewritten: int = 0
    current: int = 0
    shredded: int = 0
    failed: list[str] = field(default_factory=list)
    batches: int = 0
    complete: bool = False
    columns: dict[str, int] = field(default_factory=dict)


def reencrypt(engine: Engine, cipher: FieldCipher, *, batch_size: int = 500, max_batches: int | None = None,
              on_batch: Callable[[str, int], None] | None = None) -> ReencryptReport:
    """Rewrite every registered column's tokens under the newest key version; resumable.

    Each batch is one transaction (rows + progress). ``max_batches`` stops early (the next call resumes).
    A rotation between calls restarts the columns from the beginning (rows already current are skipped cheaply).
    """
    metadata = import_models()
    report = ReencryptReport()
    with engine.connect() as c:
        target = cipher.current_version(c)
    if target is None:
        raise DecryptionError("no data keys yet: run 'crmbridge keys init' first")
    prog = ReencryptProgress.__table__
    for (tname, cname), reg in sorted(ENCRYPTED_COLUMNS.items()):
        table: Table | None = metadata.tables.get(tname)
        if table is None:
            continue
        with engine.connect() as c:
            if tname not in set(c.dialect.get_table_names(c)):
                continue
        pk = list(table.primary_key.columns)
        wanted = {*(col.name for col in pk), cname, *reg.record_columns}
        cols = [table.c[n] for n in sorted(wanted)]
        label = f"{tname}.{cname}"
        report.columns.setdefault(label, 0)
        while True:
            if max_batches is not None and report.batches >= max_batches:
                return report
            with engine.begin() as c:
                state = c.execute(select(prog).where(prog.c.table_name == tname,
                                                     prog.c.column_name == cname)).mappings().first()
                if state is None or state["target_version"] != target:
                    if state is None:
                        c.execute(prog.insert().values(table_name=tname, column_name=cname, target_version=target,
                                                       last_key=None, rows_done=0, finished=False,
                                                       updated_at=_now()))
                    else:
                        c.execute(update(prog).where(prog.c.table_name == tname, prog.c.column_name == cname)
                                  .values(target_version=target, last_key=None, rows_done=0, finished=False,
                                          updated_at=_now()))
                    last, done = None, 0
                elif state["finished"]:
                    break
                else:
                    last = json.loads(state["last_key"]) if state["last_key"] else None
                    done = state["rows_done"]
                q = select(*cols).order_by(*pk).limit(batch_size)
                if last is not None:
                    q = q.where(tuple_(*pk) > tuple_(*last)) if len(pk) > 1 else q.where(pk[0] > last[0])
                rows = c.execute(q).mappings().all()
                for row in rows:
                    _reencrypt_row(c, cipher, table, reg, row, report, label)
                finished = len(rows) < batch_size
                new_last = json.dumps([row[p.name] for p in pk], default=str) if rows else \
                    (json.dumps(last) if last is not None else None)
                c.execute(update(prog).where(prog.c.table_name == tname, prog.c.column_name == cname).values(
                    last_key=new_last, rows_done=done + len(rows), finished=finished, updated_at=_now()))
            report.batches += 1
            if on_batch is not None:
                on_batch(label, len(rows))
            if finished:
                break
    report.complete = True
    return report


def _reencrypt_row(c: Any, cipher: FieldCipher, table: Table, reg: EncryptedColumn, row: Mapping[str, Any],
                   report: ReencryptReport, label: str) -> None:
    token = row[reg.column]
    if token is None or not is_token(token):
        return
    record, _party = binding_of(reg.table, reg.column, row)
    try:
        new = cipher.reencrypt_token(c, token, table=reg.table, column=reg.column, record=record)
    except KeyDestroyedError:
        report.shredded += 1
        return
    except DecryptionError as exc:
        report.failed.append(f"{label} {[row[p.name] for p in table.primary_key.columns]}: {exc}")
        return
    if new is None:
        report.current += 1
        return
    value: Token = new if isinstance(token, str) else new.encode("ascii")
    cond = [p == row[p.name] for p in table.primary_key.columns]
    c.execute(update(table).where(*cond).values({reg.column: value}))
    report.rewritten += 1
    report.columns[label] = report.columns.get(label, 0) + 1


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
