"""Which stored columns are encrypted, how their values are bound, and re-encryption after a key rotation.

A table module registers each column that holds ciphertext with :func:`register_encrypted_column`, naming the
columns that make up the record binding (the AEAD associated data) and the column holding the party id (so the
value is encrypted under the party's key and erasure can find it). The state store's columns are registered
here, next to the registry, so the engine, ``keys rotate --reencrypt`` and erasure agree on one binding::

    blob = tx.seal(cipher, "snapshots", "blob",
                   row={"party_id": pid, "system": "zoho_cn", "object": "Contacts"}, value=canonical_json_dict)
    tx.put_snapshot(pid, "zoho_cn", "Contacts", content_hash=h, blob=blob)
    data = tx.unseal(cipher, "snapshots", "blob", row=snapshot_row, token=snapshot.blob)

:func:`reencrypt` rewrites every registered column's tokens under the newest key version, in batches, each
committed with its progress row, so an interrupted run resumes where it stopped. Values whose party key was
destroyed (erased parties) are left alone. Ledger diffs are not rewritten: ledger rows are append-only and the hash
covers the ciphertext; they stay readable under their (decrypt-only) key version.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from crmbridge.sync.security.crypto import DecryptionError, FieldCipher, KeyDestroyedError, Keys, Token, is_token
from crmbridge.sync.state.db import import_models
from crmbridge.sync.state.tables import ReencryptProgress

if TYPE_CHECKING:
    from crmbridge.sync.state.store import StateStore, StoreTx

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


def seal(keys: Keys, cipher: FieldCipher, table: str, column: str, *, row: Mapping[str, Any], value: Any,
         as_bytes: bool = True) -> Token:
    """Encrypt ``value`` (JSON-serialised for JSON columns) for ``table.column`` of ``row``, deflated first.

    Returns a raw token (bytes: ``0xCB 0x01`` + the envelope) for LargeBinary columns (default), or a ``cb1:``
    text token. Either form, and the ASCII-bytes tokens written before raw tokens existed, is read by
    :func:`unseal`.
    """
    reg = _reg(table, column)
    record, party = binding_of(table, column, row)
    if reg.json:
        value = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    if as_bytes:
        return cipher.encrypt_raw(keys, value, table=table, column=column, record=record, party_id=party)
    return cipher.encrypt(keys, value, table=table, column=column, record=record, party_id=party, compress=True)


def unseal(keys: Keys, cipher: FieldCipher, table: str, column: str, *, row: Mapping[str, Any],
           token: Token) -> Any:
    """Decrypt what :func:`seal` produced for the same row."""
    reg = _reg(table, column)
    record, _ = binding_of(table, column, row)
    if reg.json:
        return cipher.decrypt_json(keys, token, table=table, column=column, record=record)
    return cipher.decrypt(keys, token, table=table, column=column, record=record)


@dataclass
class ReencryptReport:
    rewritten: int = 0
    current: int = 0
    shredded: int = 0
    failed: list[str] = field(default_factory=list)
    batches: int = 0
    complete: bool = False
    columns: dict[str, int] = field(default_factory=dict)


def reencrypt(store: StateStore | Engine, cipher: FieldCipher, *, batch_size: int = 500,
              max_batches: int | None = None, on_batch: Callable[[str, int], None] | None = None) -> ReencryptReport:
    """Rewrite every registered column's tokens under the newest key version; resumable.

    Each batch is one unit of work of ``store`` (rows + progress). ``max_batches`` stops early (the next call
    resumes). A rotation between calls restarts the columns from the beginning (rows already current are skipped
    cheaply).
    """
    from crmbridge.sync.state.store import StateStore

    if not isinstance(store, StateStore):
        store = StateStore(store)
    report = ReencryptReport()
    with store.transaction(refuse_writes=True) as tx:
        target = cipher.current_version(tx)
        existing = tx.table_names()
    if target is None:
        raise DecryptionError("no data keys yet: run 'crmbridge keys init' first")
    models = import_models().tables
    for (tname, cname), reg in sorted(ENCRYPTED_COLUMNS.items()):
        if tname not in models or tname not in existing:
            continue
        label = f"{tname}.{cname}"
        report.columns.setdefault(label, 0)
        while True:
            if max_batches is not None and report.batches >= max_batches:
                return report
            with store.transaction() as tx:
                pk = tx.primary_key_of(tname)
                state = tx.reencrypt_progress(tname, cname)
                if state is None or state["target_version"] != target:
                    tx.save_reencrypt_progress(tname, cname, target_version=target, last_key=None, rows_done=0,
                                               finished=False)
                    last, done = None, 0
                elif state["finished"]:
                    break
                else:
                    last = json.loads(state["last_key"]) if state["last_key"] else None
                    done = state["rows_done"]
                rows = tx.scan(tname, [cname, *reg.record_columns], after=last, limit=batch_size)
                for row in rows:
                    _reencrypt_row(tx, cipher, pk, reg, row, report, label)
                finished = len(rows) < batch_size
                new_last = json.dumps([row[p] for p in pk], default=str) if rows else \
                    (json.dumps(last) if last is not None else None)
                tx.save_reencrypt_progress(tname, cname, target_version=target, last_key=new_last,
                                           rows_done=done + len(rows), finished=finished)
            report.batches += 1
            if on_batch is not None:
                on_batch(label, len(rows))
            if finished:
                break
    report.complete = True
    return report


def _reencrypt_row(tx: StoreTx, cipher: FieldCipher, pk: list[str], reg: EncryptedColumn, row: Mapping[str, Any],
                   report: ReencryptReport, label: str) -> None:
    token = row[reg.column]
    if token is None or not is_token(token):
        return
    record, _party = binding_of(reg.table, reg.column, row)
    try:
        new = cipher.reencrypt_token(tx, token, table=reg.table, column=reg.column, record=record)
    except KeyDestroyedError:
        report.shredded += 1
        return
    except DecryptionError as exc:
        report.failed.append(f"{label} {[row[p] for p in pk]}: {exc}")
        return
    if new is None:
        report.current += 1
        return
    tx.update_row(reg.table, {p: row[p] for p in pk}, {reg.column: new})
    report.rewritten += 1
    report.columns[label] = report.columns.get(label, 0) + 1
