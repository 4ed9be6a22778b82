"""The tamper-evident sync ledger: an append-only hash chain with a Merkle tree and signed checkpoints.

Each entry records one decision of the engine (created, updated, skipped, conflict, failed, deleted, erased...)
with masked before/after values only; the full diff is encrypted under the party's data key, so erasing the
party (destroying that key) erases the diff while every hash still verifies. Nothing in a ledger row is ever
updated or deleted (PostgreSQL refuses it by trigger, see migration ``0002``).

Hashing (docs/canonical.md §9)::

    body_i      = canonical_json({seq, prev_hash, hash_alg, recorded_at, run_id, job, ..., diff_enc})
    entry_hash  = H(body_i)                      H = SHA-256, or SM3 when the deployment uses national algorithms
    prev_hash_1 = 64 zeros (genesis)
    leaf_i      = H(0x00 || body_i), node = H(0x01 || L || R)     RFC 6962 Merkle tree over all bodies

``ledger_head`` (one row) holds the chain head and the Merkle frontier; appenders lock it (``SELECT ... FOR
UPDATE`` on PostgreSQL, the write lock on SQLite), so concurrent appenders serialise inside their own
transactions. Checkpoints sign ``"crm-sync-audit\\n<size>\\n<merkle root hex>\\nhead <chain head hex>\\n"`` with
Ed25519 (C2SP tlog-checkpoint style) at the end of each run and every N entries.

Usage by the engine, inside its batch transaction::

    ledger = Ledger(tx.connection, signer, cipher=cipher)
    ledger.append([LedgerEntryIn(run_id=run, job=job, action=Action.UPDATED, party_id=pid, ...)])
    ...
    ledger.checkpoint(run_id=run)         # end of run
"""

from __future__ import annotations

import base64
import binascii
import csv
import enum
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import (
    DDL,
    BigInteger,
    Index,
    Integer,
    String,
    Text,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column

from crmbridge.core.errors import ConfigurationError, CrmBridgeError, SecretError
from crmbridge.core.logsafe import mask_text
from crmbridge.core.secrets import resolve_secret
from crmbridge.sync.security.crypto import FieldCipher, as_connection, hash_bytes
from crmbridge.sync.state.db import Base
from crmbridge.sync.state.version_sets import ensure_set
from crmbridge.sync.state.version_sets import load_sets as load_version_sets
from crmbridge.sync.state.version_sets import ref_of as version_set_ref
from crmbridge.sync.state.version_sets import remember as remember_version_set
from crmbridge.sync.state.version_sets import resolve as resolve_version_set

__all__ = [
    "Action",
    "AppendedEntry",
    "CHECKPOINT_ORIGIN",
    "GENESIS",
    "Ledger",
    "LedgerCheckpoint",
    "LedgerEntry",
    "LedgerEntryIn",
    "LedgerError",
    "LedgerHead",
    "LedgerSigner",
    "Problem",
    "VerifyResult",
    "ENCODING",
    "canonical_json",
    "checkpoint_body",
    "decode_entry",
    "export_ledger",
    "format_actor",
    "generate_signing_key",
    "load_public_key",
    "merkle_root",
    "read_export",
    "split_actor",
    "verify_records",
]

GENESIS = "0" * 64
CHECKPOINT_ORIGIN = "crm-sync-audit"
_BigInt = BigInteger().with_variant(Integer(), "sqlite")


class LedgerError(CrmBridgeError):
    """The ledger cannot be written or read as asked (not a tamper finding: those are :class:`Problem`)."""


class Action(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    SKIPPED_UNCHANGED = "skipped-unchanged"
    SKIPPED_NO_CONSENT = "skipped-no-consent"
    SKIPPED_ECHO = "skipped-echo"
    CONFLICT = "conflict"
    CONFLICT_RESOLVED = "conflict-resolved"
    FAILED = "failed"
    DELETED = "deleted"
    ERASED = "erased"
    #: a record of an erased party read again (from any side of a job): not ingested, not pushed (PIPL Art. 47)
    SUPPRESSED_ERASED = "suppressed-erased"
    #: an erasure's suppression lifted on purpose (the person came back as a customer): the next run ingests anew
    ERASURE_LIFTED = "erasure-lifted"
    KEY_ROTATED = "key-rotated"
    #: personal data shown in clear to someone (``--reveal``): who, which fields of which party, why
    REVEALED = "revealed"
    # -- the console's accountability (crmbridge.console; the actor is ``user@console``) --------------------
    #: a user signed in to the console
    SIGNED_IN = "signed-in"
    #: a sign-in refused; the reason says why (invalid, locked, disabled) and the name as given
    SIGN_IN_REFUSED = "sign-in-refused"
    #: a user signed out
    SIGNED_OUT = "signed-out"
    #: a user locked out after repeated failed sign-ins
    LOCKED_OUT = "locked-out"
    #: a console action refused: the role may not take it, or the form's CSRF token was missing or wrong
    REFUSED = "refused"
    #: a console user added, changed (password, roles), disabled, enabled or unlocked (``crmbridge users``)
    USER_CHANGED = "user-changed"
    #: a four-eyes request (reveal a C2 value in clear, erase a party) filed with its reason
    FOUR_EYES_REQUESTED = "four-eyes-requested"
    #: a four-eyes request approved by a second user (never the requester)
    FOUR_EYES_APPROVED = "four-eyes-approved"
    #: a four-eyes request rejected
    FOUR_EYES_REJECTED = "four-eyes-rejected"


def canonical_json(value: Any) -> str:
    """Sorted keys, compact separators, UTF-8 kept: the form every hash is computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _now_text(at: datetime | None = None) -> str:
    at = (at or datetime.now(UTC)).astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------------------------------ tables


class LedgerEntry(Base):
    """One ledger entry. JSON columns hold canonical JSON text, so the hash is recomputed from the columns."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_party_id", "party_id"),
        Index("ix_ledger_entries_run_id_seq", "run_id", "seq"),   # a run's entries in order (console pages)
        Index("ix_ledger_entries_job_recorded_at", "job", "recorded_at"),
        Index("ix_ledger_entries_recorded_at", "recorded_at"),
        Index("ix_ledger_entries_source", "source_system", "source_object", "source_id"),
        Index("ix_ledger_entries_target", "target_system", "target_object", "target_id"),
    )

    seq: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))
    hash_alg: Mapped[str] = mapped_column(String(8))
    recorded_at: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str | None] = mapped_column(String(64))
    job: Mapped[str | None] = mapped_column(String(128))
    source_system: Mapped[str | None] = mapped_column(String(64))
    source_object: Mapped[str | None] = mapped_column(String(128))
    source_id: Mapped[str | None] = mapped_column(String(255))
    target_system: Mapped[str | None] = mapped_column(String(64))
    target_object: Mapped[str | None] = mapped_column(String(128))
    target_id: Mapped[str | None] = mapped_column(String(255))
    party_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    changed_fields: Mapped[str] = mapped_column(Text)   # canonical JSON list
    masked_before: Mapped[str] = mapped_column(Text)    # canonical JSON object, masked values
    masked_after: Mapped[str] = mapped_column(Text)
    diff_enc: Mapped[str | None] = mapped_column(Text)  # cb1: token under the party key
    mapping_version: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)    # masked
    # ---- encoding 2 (lineage): NULL on entries written before it (encoding 1), see _ENCODINGS
    enc: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[str | None] = mapped_column(Text)           # canonical JSON: the masked vendor payload sent
    answer: Mapped[str | None] = mapped_column(Text)            # canonical JSON: the vendor's answer, masked
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    mapping_versions: Mapped[str | None] = mapped_column(Text)  # canonical JSON: {mapping name: content hash}
    actor_note: Mapped[str | None] = mapped_column(Text)        # the --actor annotation beside the OS user, masked


class LedgerCheckpoint(Base):
    """A signed statement of the ledger's size, Merkle root and chain head."""

    __tablename__ = "ledger_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(_BigInt, index=True)
    root_hash: Mapped[str] = mapped_column(String(64))
    chain_head: Mapped[str] = mapped_column(String(64))
    hash_alg: Mapped[str] = mapped_column(String(8))
    body: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(128))  # base64 Ed25519
    key_id: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(32))


class LedgerHead(Base):
    """The chain head (one row, id 1): last seq, its hash and the Merkle frontier. The appenders' lock."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(_BigInt)
    entry_hash: Mapped[str] = mapped_column(String(64))
    hash_alg: Mapped[str] = mapped_column(String(8))
    frontier: Mapped[str] = mapped_column(Text)  # JSON [[height, hex], ...]


#: PostgreSQL: ledger rows are immutable (migration 0002; 0006 adds the one sanctioned deletion: ``ledger archive``
#: removes the rows at or below the archive anchor it has just recorded, in a transaction that set
#: ``crmbridge.ledger_archive``; only the owner role holds DELETE on these tables, see ``crmbridge db grant``)
PG_IMMUTABLE_FUNCTION = """
CREATE OR REPLACE FUNCTION crmbridge_ledger_immutable() RETURNS trigger AS $$
DECLARE
  anchor bigint;
BEGIN
  IF TG_OP = 'DELETE' AND coalesce(current_setting('crmbridge.ledger_archive', true), '') = 'on' THEN
    SELECT seq INTO anchor FROM ledger_anchor WHERE id = 1;
    IF anchor IS NOT NULL THEN
      IF TG_TABLE_NAME = 'ledger_entries' THEN
        IF OLD.seq <= anchor THEN RETURN OLD; END IF;
      ELSIF TG_TABLE_NAME = 'ledger_checkpoints' THEN
        IF OLD.tree_size <= anchor THEN RETURN OLD; END IF;
      END IF;
    END IF;
  END IF;
  RAISE EXCEPTION 'crmbridge ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def pg_immutable_trigger_sql(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION crmbridge_ledger_immutable()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION crmbridge_ledger_immutable()",
    ]


for _table in (LedgerEntry.__table__, LedgerCheckpoint.__table__):
    _stmts = [PG_IMMUTABLE_FUNCTION, *pg_immutable_trigger_sql(_table.name)]
    for _stmt in _stmts:
        event.listen(_table, "after_create", DDL(_stmt.replace("%", "%%")).execute_if(dialect="postgresql"))


# ------------------------------------------------------------------------------------------------ hashing


def _h(data: bytes, alg: str) -> bytes:
    return hash_bytes(data, alg)


def _node(left: bytes, right: bytes, alg: str) -> bytes:
    return _h(b"\x01" + left + right, alg)


def _push_leaf(frontier: list[tuple[int, bytes]], leaf: bytes, alg: str) -> None:
    frontier.append((0, leaf))
    while len(frontier) >= 2 and frontier[-1][0] == frontier[-2][0]:
        (height, right), (_, left) = frontier.pop(), frontier.pop()
        frontier.append((height + 1, _node(left, right, alg)))


def _frontier_root(frontier: Sequence[tuple[int, bytes]], alg: str) -> bytes:
    if not frontier:
        return _h(b"", alg)
    root = frontier[-1][1]
    for _, left in reversed(frontier[:-1]):
        root = _node(left, root, alg)
    return root


def merkle_root(bodies: Iterable[bytes], alg: str = "sha256") -> str:
    """RFC 6962 Merkle tree hash of the entry bodies (hex)."""
    frontier: list[tuple[int, bytes]] = []
    for b in bodies:
        _push_leaf(frontier, _h(b"\x00" + b, alg), alg)
    return _frontier_root(frontier, alg).hex()


def checkpoint_body(tree_size: int, root_hex: str, head_hex: str) -> str:
    return f"{CHECKPOINT_ORIGIN}\n{tree_size}\n{root_hex}\nhead {head_hex}\n"


def _body_runs(body: object, base: str) -> list[tuple[str, str]] | None:
    """The ``run <id> start|end`` lines a checkpoint body carries after ``base`` (None: not base + such lines)."""
    if not isinstance(body, str) or not body.startswith(base):
        return None
    out = []
    for line in body[len(base):].splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "run" or parts[2] not in ("start", "end") or not parts[1]:
            return None
        out.append((parts[1], parts[2]))
    return out


# ------------------------------------------------------------------------------------------------ signing


def _decode_key_text(data: str) -> bytes:
    t = data.strip()
    try:
        return bytes.fromhex(t)
    except ValueError:
        pass
    try:
        return base64.b64decode(t + "=" * (-len(t) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


class LedgerSigner:
    """Signs checkpoints with an Ed25519 private key (PEM PKCS#8, or 32 raw bytes as hex/base64)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._sk = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    def __repr__(self) -> str:
        return f"LedgerSigner(key_id={self.key_id!r})"

    @classmethod
    def load(cls, reference: str, *, base_dir: Path | None = None, where: str = "keys.signing_key") -> LedgerSigner:
        data = resolve_secret(reference, where=where, base_dir=base_dir).get_secret_value()
        try:
            if "BEGIN" in data:
                key = serialization.load_pem_private_key(data.encode(), password=None)
                if not isinstance(key, Ed25519PrivateKey):
                    raise SecretError("the ledger signing key is not an Ed25519 key", where=where)
                return cls(key)
            raw = _decode_key_text(data)
            return cls(Ed25519PrivateKey.from_private_bytes(raw))
        except (ValueError, TypeError) as exc:
            raise SecretError("the ledger signing key is not a valid Ed25519 private key "
                              "(PEM, or 32 bytes as hex/base64)", where=where) from exc

    def sign(self, body: str) -> str:
        return base64.b64encode(self._sk.sign(body.encode("utf-8"))).decode("ascii")

    def public_pem(self) -> str:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hash_bytes(raw, "sha256")[:8].hex()


def generate_signing_key(path: Path) -> LedgerSigner:
    """Write a new Ed25519 private key (PEM, mode 0600) to ``path``; refuses to overwrite."""
    if path.exists():
        raise ConfigurationError(f"{path} already exists; refusing to overwrite a signing key")
    sk = Ed25519PrivateKey.generate()
    pem = sk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return LedgerSigner(sk)


def load_public_key(data: str | bytes | Path) -> Ed25519PublicKey:
    """An auditor's public key: a PEM file/text, or the 32 raw bytes as hex/base64."""
    if isinstance(data, Path):
        data = data.read_text(encoding="utf-8")
    if isinstance(data, bytes):
        data = data.decode("ascii", "replace")
    try:
        if "BEGIN" in data:
            key = serialization.load_pem_public_key(data.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ConfigurationError("the public key is not an Ed25519 key")
            return key
        return Ed25519PublicKey.from_public_bytes(_decode_key_text(data))
    except ValueError as exc:
        raise ConfigurationError("not a valid Ed25519 public key (PEM, or 32 bytes as hex/base64)") from exc


# ------------------------------------------------------------------------------------------------ input


class LedgerEntryIn(BaseModel):
    """What the engine records for one decision.

    ``before`` / ``after`` hold **masked** values (field path → masked text); anything that still looks like an
    ID number, mobile, USCC or e-mail is masked again on the way in. ``diff`` is the full, clear diff: it is
    stored only encrypted, under the party's data key (so erasure shreds it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    run_id: str | None = None
    job: str | None = None
    source_system: str | None = None
    source_object: str | None = None
    source_id: str | None = None
    target_system: str | None = None
    target_object: str | None = None
    target_id: str | None = None
    party_id: str | None = None
    changed_fields: list[str] = Field(default_factory=list)
    before: dict[str, str | None] = Field(default_factory=dict)
    after: dict[str, str | None] = Field(default_factory=dict)
    diff: dict[str, Any] | None = None
    mapping_version: str | None = None
    actor: str = "scheduler"
    reason: str | None = None
    at: datetime | None = None
    #: lineage of a write (see :mod:`crmbridge.sync.state.lineage`): the masked vendor payload sent, the vendor's
    #: masked answer (record id, status, code, message), the request's correlation id, mapping name → hash
    payload: dict[str, Any] | None = None
    answer: dict[str, Any] | None = None
    correlation_id: str | None = None
    mapping_versions: dict[str, str] | None = None
    #: an annotation beside the accountable actor (``--actor``), never a replacement for it
    actor_note: str | None = None

    @field_validator("run_id", "party_id", "source_id", "target_id", "correlation_id", mode="before")
    @classmethod
    def _text(cls, v: object) -> object:
        return None if v is None else str(v)

    @model_validator(mode="after")
    def _split_actor(self) -> LedgerEntryIn:
        """``"alice@host1 [ops ticket 12]"`` (what :func:`format_actor` builds for callers that carry one actor
        string, such as a run's) is stored as the actor ``alice@host1`` and the annotation beside it."""
        actor, note = split_actor(self.actor)
        if note is not None and self.actor_note is None:
            object.__setattr__(self, "actor", actor)
            object.__setattr__(self, "actor_note", note)
        return self


def format_actor(actor: str, note: str | None = None) -> str:
    """One actor string carrying an annotation: ``alice@host1 [note]`` (split again by the ledger)."""
    note = (note or "").strip().replace("[", "(").replace("]", ")")
    return f"{actor} [{note}]" if note else actor


def split_actor(text: str) -> tuple[str, str | None]:
    """``"alice@host1 [note]"`` → ``("alice@host1", "note")``; a plain actor → ``(actor, None)``."""
    if text.endswith("]") and " [" in text:
        actor, _, note = text[:-1].partition(" [")
        return actor, note or None
    return text, None


@dataclass(frozen=True)
class AppendedEntry:
    seq: int
    entry_hash: str


@dataclass(frozen=True)
class Problem:
    """A verification finding. ``seq`` names the entry (or the checkpoint's size for checkpoint findings)."""

    seq: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.message}" if self.seq is not None else self.message


@dataclass
class VerifyResult:
    entries: int = 0
    checkpoints: int = 0
    signed_size: int = 0
    head_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None


_JSON_COLUMNS = ("changed_fields", "masked_before", "masked_after", "payload", "answer", "mapping_versions")
# The columns each encoding's hash covers, frozen: an entry is verified with the columns of the encoding it was
# written in (``enc``: NULL = 1), so adding a column never breaks an old entry's hash.
#  1: changed_fields = [paths], masked_before/after = {path: masked}, diff_enc = token of JSON {path: [b, a]}
#  2: changed_fields = [paths] (the field list, stored once), masked_before/after = [masked | null] aligned with
#     it ([] when all null), diff_enc = token of zlib(JSON [[b, a] | null] aligned with it); plus the lineage
#  3: the columns of 2, each masked value stored once: in masked_before/after, an integer i stands for the value of
#     the payload's i-th key (keys sorted) when it is that very text; in mapping_versions, "" stands for the entry's
#     mapping_version; in answer, "id": true for the entry's target_id (decode_entry restores all three)
#  4: the columns of 3, mapping_versions = [key] of its set stored once in mapping_version_sets (see
#     crmbridge.sync.state.version_sets; decode_entry resolves it with the sets given or attached)
_ENCODING_1 = ("seq", "prev_hash", "hash_alg", "recorded_at", "run_id", "job", "source_system", "source_object",
               "source_id", "target_system", "target_object", "target_id", "party_id", "action", "changed_fields",
               "masked_before", "masked_after", "diff_enc", "mapping_version", "actor", "reason")
_ENCODING_2 = (*_ENCODING_1, "enc", "payload", "answer", "correlation_id", "mapping_versions", "actor_note")
_ENCODINGS: dict[int, tuple[str, ...]] = {1: _ENCODING_1, 2: _ENCODING_2, 3: _ENCODING_2, 4: _ENCODING_2}
ENCODING = 4   # what new entries are written in
_BODY_COLUMNS = list(_ENCODINGS[ENCODING])   # every column a body may have (reading, exporting)


def _encoding(rec: Mapping[str, Any]) -> int:
    enc = rec.get("enc")
    return 1 if enc is None else int(enc) if isinstance(enc, int) and enc in _ENCODINGS else -1


def _body_from_record(rec: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    enc = _encoding(rec)
    # an unknown encoding hashes every column it carries: it cannot match, so it is reported, never skipped
    names = _ENCODINGS[enc] if enc > 0 else sorted(k for k in rec if k != "entry_hash")
    for name in names:
        v = rec.get(name)
        if name in _JSON_COLUMNS and isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                v = {"__unparsable__": v}
        body[name] = v
    return body


def _body_bytes(body: Mapping[str, Any]) -> bytes:
    return canonical_json(body).encode("utf-8")


def _mask_values(values: Mapping[str, str | None]) -> dict[str, str | None]:
    return {str(k): (None if v is None else _mask_tree(str(v))) for k, v in values.items()}


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _mask_tree(node: Any) -> Any:
    """Masks again anything in a (masked) payload or answer that still looks like an ID number, mobile, e-mail."""
    if isinstance(node, Mapping):
        return {str(k): _mask_tree(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_mask_tree(v) for v in node]
    if isinstance(node, str):
        # a party id (a UUID) is C1, and its hex digits can look like a mobile number to the pattern masking
        return node if _UUID.fullmatch(node) else mask_text(node)
    return node if node is None or isinstance(node, bool | int | float) else mask_text(str(node))


def _field_list(e: LedgerEntryIn) -> list[str]:
    """The entry's fields, once: the changed fields in the caller's order, then any other path it gave values for."""
    given = [str(f) for f in e.changed_fields]
    extra = (set(e.before) | set(e.after) | set(e.diff or {})) - set(given)
    return list(dict.fromkeys([*given, *sorted(map(str, extra))]))


def _aligned(fields: Sequence[str], values: Mapping[str, Any]) -> list[Any]:
    out = [values.get(f) for f in fields]
    return out if any(v is not None for v in out) else []


def _payload_refs(payload: Any) -> dict[str, int]:
    """Masked text → the index of the first sorted payload key holding exactly it (encoding 3)."""
    refs: dict[str, int] = {}
    if isinstance(payload, Mapping):
        for i, key in enumerate(sorted(payload)):
            v = payload[key]
            if isinstance(v, str) and len(v) > 2:
                refs.setdefault(v, i)
    return refs


def _encode_v4(ledger: Ledger, e: LedgerEntryIn, seq: int) -> dict[str, Any]:
    """The encoding-4 columns of an entry: those of encoding 3, the mapping versions as the key of their set,
    stored once (in the caller's transaction) in ``mapping_version_sets``."""
    out = _encode_v3(ledger, e, seq)
    if e.mapping_versions:
        out["mapping_versions"] = ensure_set(ledger.conn, {str(k): str(v) for k, v in e.mapping_versions.items()},
                                             ledger._known_sets)
    out["enc"] = 4
    return out


def _encode_v3(ledger: Ledger, e: LedgerEntryIn, seq: int) -> dict[str, Any]:
    """The encoding-3 columns of an entry: the field list once, masked values aligned with it (each stored once:
    a value the masked payload holds is a reference to it), the clear diff compressed then encrypted under the party
    key, and the lineage."""
    out = _encode_v2(ledger, e, seq)
    refs = _payload_refs(out["payload"])
    if refs:
        for side in ("masked_before", "masked_after"):
            out[side] = [refs.get(v, v) if isinstance(v, str) else v for v in out[side]]
    if out["mapping_versions"] and e.mapping_version:
        out["mapping_versions"] = {k: ("" if v == e.mapping_version else v) for k, v in out["mapping_versions"].items()}
    answer = out["answer"]
    if isinstance(answer, dict) and e.target_id is not None and answer.get("id") == e.target_id:
        out["answer"] = dict(answer, id=True)
    out["enc"] = 3
    return out


def _encode_v2(ledger: Ledger, e: LedgerEntryIn, seq: int) -> dict[str, Any]:
    """The encoding-2 columns of an entry: the field list once, masked values aligned with it, the clear diff
    compressed then encrypted under the party key, and the lineage."""
    fields = _field_list(e)
    diff_enc = None
    if e.diff is not None:
        if ledger.cipher is None:
            raise LedgerError("an entry carries a full diff but the ledger has no cipher to encrypt it")
        pairs = [None if e.diff.get(f) is None else list(e.diff[f]) for f in fields]
        plain = json.dumps(pairs, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        diff_enc = ledger.cipher.encrypt(ledger.conn, zlib.compress(plain.encode("utf-8"), 9),
                                         table="ledger_entries", column="diff_enc", record=seq,
                                         party_id=e.party_id)
    return {
        "enc": 2, "changed_fields": fields,
        "masked_before": _aligned(fields, _mask_values(e.before)),
        "masked_after": _aligned(fields, _mask_values(e.after)),
        "diff_enc": diff_enc,
        "payload": None if e.payload is None else _mask_tree(e.payload),
        # the answer's record id, status and code are C1 (the id is the target_id column's); its text is masked
        "answer": None if e.answer is None else {str(k): _mask_tree(v) if k == "message" else v
                                                 for k, v in e.answer.items()},
        "correlation_id": e.correlation_id,
        "mapping_versions": None if not e.mapping_versions else {str(k): str(v)
                                                                 for k, v in e.mapping_versions.items()},
        "actor_note": None if e.actor_note is None else mask_text(e.actor_note),
    }


def decode_entry(rec: Mapping[str, Any], sets: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """An entry as read (any encoding) in one shape for display and queries: ``changed_fields`` a list,
    ``masked_before``/``masked_after`` dicts path → masked value, the lineage keys present (None in encoding 1),
    ``mapping_versions`` a dict (encoding 4: its set from ``sets`` — :meth:`Ledger.version_sets` — or from the
    record's ``mapping_versions_set``). Not for verifying: the hash covers the stored form
    (:meth:`Ledger.iter_entries`)."""
    out = dict(rec)
    attached = out.pop("mapping_versions_set", None)
    for name in _JSON_COLUMNS:
        if isinstance(out.get(name), str):
            try:
                out[name] = json.loads(out[name])
            except ValueError:
                pass
    for name in ("payload", "answer", "correlation_id", "mapping_versions", "actor_note"):
        out.setdefault(name, None)
    fields = [str(f) for f in out.get("changed_fields") or []]
    out["changed_fields"] = fields
    if _encoding(rec) == 4:   # the mapping versions' set was stored once: resolve its key
        ref = out.get("mapping_versions")
        key = version_set_ref(ref)
        if sets is None and isinstance(attached, Mapping) and key is not None:
            sets = {key: dict(attached)}
        out["mapping_versions"] = resolve_version_set(ref, sets)
    if _encoding(rec) in (3, 4):   # each masked value was stored once: resolve the references
        payload = out.get("payload")
        keys = sorted(payload) if isinstance(payload, dict) else []
        for side in ("masked_before", "masked_after"):
            v = out.get(side)
            if isinstance(v, list):
                out[side] = [payload[keys[x]] if type(x) is int and 0 <= x < len(keys) else x  # type: ignore[index]
                             for x in v]
        versions = out.get("mapping_versions")
        if isinstance(versions, dict):
            out["mapping_versions"] = {k: (out.get("mapping_version") if v == "" else v) for k, v in versions.items()}
        answer = out.get("answer")
        if isinstance(answer, dict) and answer.get("id") is True:
            out["answer"] = dict(answer, id=out.get("target_id"))
    for side in ("masked_before", "masked_after"):
        v = out.get(side)
        if isinstance(v, list):   # encoding 2: aligned with the field list
            out[side] = {f: x for f, x in zip(fields, v, strict=False) if x is not None}
        elif not isinstance(v, dict):
            out[side] = {}
    out["enc"] = _encoding(rec)
    return out


# ------------------------------------------------------------------------------------------------ ledger


class Ledger:
    """Append, checkpoint, read and verify, inside the caller's transaction.

    Args:
        conn: the caller's Connection or Session; nothing here commits.
        signer: signs checkpoints (None: no checkpoints are written).
        cipher: encrypts the full diffs (required to append an entry carrying ``diff``).
        hash_alg: ``sha256`` or ``sm3`` for new entries (existing entries keep theirs).
        checkpoint_every: sign a checkpoint whenever the ledger crosses a multiple of this size.
    """

    def __init__(self, conn: Connection | Session, signer: LedgerSigner | None = None, *,
                 cipher: FieldCipher | None = None, hash_alg: str | None = None,
                 checkpoint_every: int = 1000) -> None:
        self.conn = as_connection(conn)
        self.signer = signer
        self.cipher = cipher
        self.hash_alg = hash_alg or (cipher.hash_algorithm if cipher is not None else "sha256")
        if self.hash_alg not in ("sha256", "sm3"):
            raise ConfigurationError(f"unknown ledger hash {self.hash_alg!r}; known: sha256, sm3")
        self.checkpoint_every = checkpoint_every
        self._known_sets: set[str] = set()   # mapping-version sets stored through this ledger

    # -- writing -----------------------------------------------------------------------------------

    def _lock_head(self) -> Any:
        c = self.conn
        t = LedgerHead.__table__
        if c.dialect.name == "postgresql":
            c.execute(text("INSERT INTO ledger_head (id, seq, entry_hash, hash_alg, frontier) "
                           "VALUES (1, 0, :g, :a, '[]') ON CONFLICT (id) DO NOTHING"),
                      {"g": GENESIS, "a": self.hash_alg})
            return c.execute(select(t).where(t.c.id == 1).with_for_update()).mappings().one()
        # SQLite: a write takes the database write lock, held until the caller's transaction ends
        if c.execute(update(t).where(t.c.id == 1).values(seq=t.c.seq)).rowcount == 0:
            c.execute(insert(t).values(id=1, seq=0, entry_hash=GENESIS, hash_alg=self.hash_alg, frontier="[]"))
        return c.execute(select(t).where(t.c.id == 1)).mappings().one()

    def append(self, entries: Sequence[LedgerEntryIn]) -> list[AppendedEntry]:
        """Append ``entries`` in order; returns their seq and hash. Serialised against other appenders."""
        if not entries:
            return []
        head = self._lock_head()
        seq, prev = int(head["seq"]), head["entry_hash"]
        alg = head["hash_alg"] if seq else self.hash_alg
        frontier = [(int(h), bytes.fromhex(x)) for h, x in json.loads(head["frontier"])]
        rows, out = [], []
        for e in entries:
            seq += 1
            body = {
                "seq": seq, "prev_hash": prev, "hash_alg": alg, "recorded_at": _now_text(e.at),
                "run_id": e.run_id, "job": e.job,
                "source_system": e.source_system, "source_object": e.source_object, "source_id": e.source_id,
                "target_system": e.target_system, "target_object": e.target_object, "target_id": e.target_id,
                "party_id": e.party_id, "action": e.action.value,
                "mapping_version": e.mapping_version, "actor": e.actor,
                "reason": None if e.reason is None else mask_text(e.reason),
                **_encode_v4(self, e, seq),
            }
            data = _body_bytes(body)
            entry_hash = _h(data, alg).hex()
            _push_leaf(frontier, _h(b"\x00" + data, alg), alg)
            row = dict(body, entry_hash=entry_hash)
            for name in _JSON_COLUMNS:   # a JSON column with no value is NULL, not the text "null"
                row[name] = None if row[name] is None else canonical_json(row[name])
            rows.append(row)
            out.append(AppendedEntry(seq, entry_hash))
            prev = entry_hash
        self.conn.execute(insert(LedgerEntry.__table__), rows)
        before = int(head["seq"])
        self.conn.execute(update(LedgerHead.__table__).where(LedgerHead.__table__.c.id == 1).values(
            seq=seq, entry_hash=prev, hash_alg=alg, frontier=json.dumps([[h, x.hex()] for h, x in frontier])))
        if self.signer is not None and self.checkpoint_every > 0 and \
                seq // self.checkpoint_every > before // self.checkpoint_every:
            self.checkpoint()
        return out

    def checkpoint(self, *, run_id: object | None = None, run_event: str = "end",
                   signer: LedgerSigner | None = None) -> dict[str, Any] | None:
        """Sign the current head (end of a run, or every N entries). Returns the checkpoint, or None without a
        signer. ``run_id`` binds the run into the signed body (``run <id> start|end``): an entry for a run after
        its signed end is forged, and so is an unsigned entry of a run without a signed start. ``signer``
        overrides the ledger's signer (a signing-key hand-over signs with both keys)."""
        signer = signer or self.signer
        if signer is None:
            return None
        head = self._lock_head()
        alg = head["hash_alg"]
        frontier = [(int(h), bytes.fromhex(x)) for h, x in json.loads(head["frontier"])]
        root = _frontier_root(frontier, alg).hex()
        body = checkpoint_body(int(head["seq"]), root, head["entry_hash"])
        if run_id is not None:
            if run_event not in ("start", "end") or " " in str(run_id) or "\n" in str(run_id):
                raise LedgerError(f"cannot bind run {run_id!r} / {run_event!r} into a checkpoint")
            body += f"run {run_id} {run_event}\n"
        cp = {"tree_size": int(head["seq"]), "root_hash": root, "chain_head": head["entry_hash"], "hash_alg": alg,
              "body": body, "signature": signer.sign(body), "key_id": signer.key_id,
              "run_id": None if run_id is None else str(run_id), "created_at": _now_text()}
        self.conn.execute(insert(LedgerCheckpoint.__table__).values(**cp))
        return cp

    def head(self) -> tuple[int, str]:
        """(seq, entry hash) of the chain head; (0, GENESIS) when empty."""
        t = LedgerHead.__table__
        row = self.conn.execute(select(t.c.seq, t.c.entry_hash).where(t.c.id == 1)).first()
        return (0, GENESIS) if row is None else (int(row[0]), row[1])

    # -- reading -----------------------------------------------------------------------------------

    def iter_entries(self, *, since: datetime | None = None, until: datetime | None = None, job: str | None = None,
                     run_id: object | None = None, party_ids: Sequence[str] | None = None,
                     actions: Sequence[str] | None = None, record: tuple[str, str | None, str] | None = None,
                     after: int = 0, limit: int | None = None, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Entries in seq order (as stored, JSON columns parsed), streamed in batches.

        ``actions`` keeps those actions only; ``record`` = (system, object or None, id) keeps the entries naming
        that record as their source or their target; ``after``/``limit``: from seq ``after + 1``, at most
        ``limit`` entries."""
        t = LedgerEntry.__table__
        q = select(t).order_by(t.c.seq)
        if since is not None:
            q = q.where(t.c.recorded_at >= _now_text(since))
        if until is not None:
            q = q.where(t.c.recorded_at < _now_text(until))
        if job is not None:
            q = q.where(t.c.job == job)
        if run_id is not None:
            q = q.where(t.c.run_id == str(run_id))
        if party_ids is not None:
            q = q.where(t.c.party_id.in_(list(party_ids)))
        if actions is not None:
            q = q.where(t.c.action.in_([str(a) for a in actions]))
        if record is not None:
            system, obj, rid = record
            src = (t.c.source_system == system) & (t.c.source_id == rid)
            tgt = (t.c.target_system == system) & (t.c.target_id == rid)
            if obj is not None:
                src, tgt = src & (t.c.source_object == obj), tgt & (t.c.target_object == obj)
            q = q.where(src | tgt)
        last = after
        if limit is not None:
            batch = min(batch, limit)
        while True:
            rows = self.conn.execute(q.where(t.c.seq > last).limit(batch)).mappings().all()
            self._read_version_sets(rows)
            for r in rows:
                if limit is not None:
                    if limit <= 0:
                        return
                    limit -= 1
                rec = _body_from_record(r)
                rec["entry_hash"] = r["entry_hash"]
                yield rec
            if len(rows) < batch:
                return
            last = rows[-1]["seq"]

    def _read_version_sets(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Read the mapping-version sets stored rows (encoding 4) name, so that :func:`decode_entry` resolves them."""
        refs = []
        for r in rows:
            v = r.get("mapping_versions")
            if r.get("enc") == 4 and isinstance(v, str) and v.startswith("["):
                try:
                    refs.append(json.loads(v))
                except ValueError:
                    continue
        if refs:
            load_version_sets(self.conn, refs)

    def version_sets(self, entries: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
        """The mapping-version sets the entries (encoding 4, as :meth:`iter_entries` yields them) refer to, by key
        (for :func:`decode_entry`)."""
        return load_version_sets(self.conn, [e.get("mapping_versions") for e in entries if _encoding(e) == 4])

    def decode(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """:func:`decode_entry` of each entry, their mapping-version sets resolved from the database."""
        sets = self.version_sets(entries)
        return [decode_entry(e, sets) for e in entries]

    def checkpoints(self) -> list[dict[str, Any]]:
        t = LedgerCheckpoint.__table__
        cols = [c for c in t.c if c.name != "id"]
        return [dict(r) for r in self.conn.execute(select(*cols).order_by(t.c.id)).mappings()]

    def runs(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """Per run: job, first/last time, entry count and counts per action (newest first)."""
        t = LedgerEntry.__table__
        q = (select(t.c.run_id, t.c.job, t.c.action, func.count().label("n"), func.min(t.c.recorded_at).label("first"),
                    func.max(t.c.recorded_at).label("last"), func.min(t.c.seq).label("min_seq"))
             .where(t.c.run_id.is_not(None)).group_by(t.c.run_id, t.c.job, t.c.action))
        runs: dict[str, dict[str, Any]] = {}
        for r in self.conn.execute(q).mappings():
            run = runs.setdefault(r["run_id"], {
                "run_id": r["run_id"], "job": r["job"], "first": r["first"], "last": r["last"], "entries": 0,
                "actions": {}, "min_seq": r["min_seq"]})
            run["entries"] += r["n"]
            run["actions"][r["action"]] = r["n"]
            run["first"], run["last"] = min(run["first"], r["first"]), max(run["last"], r["last"])
            run["min_seq"] = min(run["min_seq"], r["min_seq"])
        return sorted(runs.values(), key=lambda x: x["min_seq"], reverse=True)[:limit]

    def decrypt_diff(self, entry: Mapping[str, Any]) -> dict[str, Any] | None:
        """The full diff of an entry (needs the cipher; raises KeyDestroyedError after erasure)."""
        if entry.get("diff_enc") is None:
            return None
        if self.cipher is None:
            raise LedgerError("decrypting a diff needs the cipher")
        if _encoding(entry) == 1:
            return self.cipher.decrypt_json(self.conn, entry["diff_enc"], table="ledger_entries", column="diff_enc",
                                            record=entry["seq"])
        plain = self.cipher.decrypt(self.conn, entry["diff_enc"], table="ledger_entries", column="diff_enc",
                                    record=entry["seq"])
        pairs = json.loads(zlib.decompress(plain))
        fields = decode_entry(entry)["changed_fields"]
        return {f: p for f, p in zip(fields, pairs, strict=False) if p is not None}

    # -- verifying ---------------------------------------------------------------------------------

    def verify(self, public_key: Ed25519PublicKey | None = None, *, expected_head: tuple[int, str] | None = None,
               require_signed: bool = False) -> VerifyResult:
        """Recompute the chain, the Merkle roots and the checkpoint signatures from the database."""
        if public_key is None and self.signer is not None:
            public_key = self.signer.public_key
        result = verify_records(self.iter_entries(), self.checkpoints(), public_key,
                                expected_head=expected_head, require_signed=require_signed)
        seq, head_hash = self.head()
        if seq and (seq != result.entries or head_hash != result.head_hash) and not result.problems:
            result.problems.append(Problem(min(seq, result.entries + 1), "head-mismatch",
                                           f"the chain head records seq {seq} but the entries end at "
                                           f"{result.entries}: entries were removed or added outside the ledger"))
        return result


def verify_records(entries: Iterable[Mapping[str, Any]], checkpoints: Sequence[Mapping[str, Any]],
                   public_key: Ed25519PublicKey | None = None, *, expected_head: tuple[int, str] | None = None,
                   require_signed: bool = False) -> VerifyResult:
    """Verify entries (in seq order as stored) against themselves, the checkpoints and a public key.

    Finds edited or flipped content (hash mismatch), broken links, missing, duplicated or reordered entries,
    a truncated tail (a checkpoint or ``expected_head`` beyond the last entry), forged entries (after a signed
    checkpoint that closed their run, or unsigned when ``require_signed``), bad checkpoint signatures and roots.
    """
    res = VerifyResult(checkpoints=len(checkpoints))
    by_size: dict[int, list[Mapping[str, Any]]] = {}
    for cp in checkpoints:
        by_size.setdefault(int(cp["tree_size"]), []).append(cp)
    closed_runs: dict[str, int] = {}
    frontier: list[tuple[int, bytes]] = []
    expected_seq, prev_stored = 1, GENESIS
    chain_hashes: dict[int, str] = {}

    def check_checkpoints(size: int, head_hex: str, alg: str) -> None:
        for cp in by_size.get(size, []):
            root = _frontier_root(frontier, alg).hex()
            body = checkpoint_body(size, root, head_hex)
            runs = _body_runs(cp["body"], body)
            if cp["root_hash"] != root or cp["chain_head"] != head_hex or runs is None:
                res.problems.append(Problem(size, "checkpoint-mismatch",
                                            f"the signed checkpoint at size {size} does not match the entries "
                                            f"up to seq {size} (history rewritten)"))
                continue
            if public_key is not None:
                try:
                    public_key.verify(base64.b64decode(cp["signature"]), cp["body"].encode("utf-8"))
                except (InvalidSignature, binascii.Error, ValueError):
                    res.problems.append(Problem(size, "bad-signature",
                                                f"checkpoint at size {size} has an invalid signature "
                                                f"(key {cp.get('key_id')})"))
                    continue
                res.signed_size = max(res.signed_size, size)
            if not runs and cp.get("run_id"):   # written before runs were bound into the signed body
                runs = [(str(cp["run_id"]), "end")]
            for run, run_event in runs:
                if run_event == "end":
                    closed_runs.setdefault(run, size)

    if 0 in by_size:
        check_checkpoints(0, GENESIS, "sha256")
    for rec in entries:
        seq = rec.get("seq")
        if not isinstance(seq, int):
            res.problems.append(Problem(None, "malformed", f"an entry without a valid seq after {expected_seq - 1}"))
            continue
        alg = rec.get("hash_alg") if rec.get("hash_alg") in ("sha256", "sm3") else "sha256"
        if seq < expected_seq:
            res.problems.append(Problem(seq, "out-of-order", f"seq {seq} appears again or out of order "
                                                            f"(after {expected_seq - 1})"))
            continue
        if seq > expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            res.problems.append(Problem(expected_seq, "missing", f"entries {missing} are missing (deleted)"))
        body = _body_from_record(rec)
        data = _body_bytes(body)
        actual = _h(data, alg).hex()
        stored = rec.get("entry_hash")
        if actual != stored:
            res.problems.append(Problem(seq, "hash-mismatch",
                                        "content does not match its hash (edited, corrupted or swapped)"))
        if rec.get("prev_hash") != prev_stored:
            res.problems.append(Problem(seq, "broken-link", "previous-hash link does not match the entry before it"))
        run = rec.get("run_id")
        if run is not None and str(run) in closed_runs:
            res.problems.append(Problem(seq, "forged", f"entry for run {run} after the signed checkpoint that "
                                                       f"closed that run (size {closed_runs[str(run)]})"))
        _push_leaf(frontier, _h(b"\x00" + data, alg), alg)
        prev_stored = stored if isinstance(stored, str) else actual
        chain_hashes[seq] = prev_stored
        res.entries, res.head_hash, expected_seq = seq, prev_stored, seq + 1
        check_checkpoints(seq, prev_stored, alg)
    last = expected_seq - 1
    beyond = [s for s in by_size if s > last]
    if beyond:
        res.problems.append(Problem(last + 1, "truncated",
                                    f"a checkpoint covers {max(beyond)} entries but the ledger ends at seq {last}: "
                                    f"entries {last + 1}..{max(beyond)} were removed"))
    if expected_head is not None:
        eseq, ehash = expected_head
        if eseq > last:
            res.problems.append(Problem(last + 1, "truncated", f"expected the ledger to reach seq {eseq}, "
                                                               f"it ends at {last}"))
        elif chain_hashes.get(eseq) != ehash:
            res.problems.append(Problem(eseq, "head-mismatch", f"entry {eseq} does not have the expected hash"))
    if public_key is None and checkpoints:
        res.warnings.append("no public key given: checkpoint signatures were not checked")
    if last > res.signed_size:
        msg = f"entries {res.signed_size + 1}..{last} are not covered by a signed checkpoint yet"
        if require_signed:
            res.problems.append(Problem(res.signed_size + 1, "unsigned", msg))
        else:
            res.warnings.append(msg)
    return res


# ------------------------------------------------------------------------------------------------ export

_CSV_COLUMNS = ["seq", "recorded_at", "run_id", "job", "action", "party_id", "source_system", "source_object",
                "source_id", "target_system", "target_object", "target_id", "changed_fields", "masked_before",
                "masked_after", "payload", "answer", "correlation_id", "mapping_version", "mapping_versions", "actor",
                "actor_note", "reason", "enc", "hash_alg", "prev_hash", "entry_hash"]


def export_ledger(ledger: Ledger, out: IO[str], *, fmt: str = "jsonl", since: datetime | None = None,
                  until: datetime | None = None, job: str | None = None,
                  actions: Sequence[str] | None = None) -> int:
    """Write entries (masked values only) as JSON Lines (with checkpoints, verifiable offline) or CSV.

    Returns the number of entries written. CSV leaves the encrypted diff out; JSONL keeps it as ciphertext
    because the hash covers it.
    """
    n = 0
    if fmt == "jsonl":
        from crmbridge.sync.state.ledger_archive import read_anchor  # entries before it are archived

        anchor = read_anchor(ledger.conn)
        if anchor is not None:
            out.write(canonical_json({"type": "anchor", **anchor}) + "\n")
        named: list[Any] = []   # the mapping-version sets encoding-4 entries name by their key
        for rec in ledger.iter_entries(since=since, until=until, job=job, actions=actions):
            if _encoding(rec) == 4 and version_set_ref(rec.get("mapping_versions")) is not None:
                named.append(rec["mapping_versions"])
            out.write(canonical_json({"type": "entry", **rec}) + "\n")
            n += 1
        for cp in ledger.checkpoints():
            out.write(canonical_json({"type": "checkpoint", **cp}) + "\n")
        # each once, at the end: what displays of the export resolve the entries' keys with (no hash covers them;
        # a set must match its key, which the entry's hash covers)
        for key, versions in sorted(load_version_sets(ledger.conn, named).items()):
            out.write(canonical_json({"type": "mapping_version_set", "ref": key, "versions": versions}) + "\n")
        return n
    if fmt == "csv":
        w = csv.DictWriter(out, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for rec in ledger.iter_entries(since=since, until=until, job=job, actions=actions):
            row = decode_entry(rec, ledger.version_sets([rec]))
            row["changed_fields"] = ";".join(row["changed_fields"])
            for name in ("masked_before", "masked_after", "payload", "answer", "mapping_versions"):
                row[name] = "" if row[name] is None else canonical_json(row[name])
            w.writerow(row)
            n += 1
        return n
    raise ConfigurationError(f"unknown export format {fmt!r}; known: csv, jsonl")


def read_export(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Entries and checkpoints of a JSONL export (the entries in file order)."""
    entries: list[dict[str, Any]] = []
    cps: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise LedgerError(f"not JSON ({exc.msg})", where=f"{path}:{lineno}") from None
            kind = rec.pop("type", None)
            if kind == "entry":
                entries.append(rec)
            elif kind == "checkpoint":
                cps.append(rec)
            elif kind == "mapping_version_set":   # what encoding-4 entries name (displays resolve it; not hashed)
                if not remember_version_set(rec.get("ref"), rec.get("versions")):
                    raise LedgerError(f"mapping-version set {rec.get('ref')!r} does not match its content (edited)",
                                      where=f"{path}:{lineno}")
            else:
                raise LedgerError(f"unknown record type {kind!r}", where=f"{path}:{lineno}")
    return entries, cps
