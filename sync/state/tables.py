"""Every table of the state database, in one module (the ledger's own tables stay in :mod:`.ledger`).

:mod:`crmbridge.sync.state.store` re-exports the store's tables (``from crmbridge.sync.state.store import runs``
keeps working); the repositories of :mod:`.store` and :mod:`.keys` are the only code that runs SQL on them.
The Alembic migrations create exactly these tables (``tests/store/test_store_migrations.py`` compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from crmbridge.sync.state.db import Base

__all__ = [
    "ERASURE_IDENTITY",
    "ERASURE_SOURCE",
    "ERASURE_TARGET",
    "DataKey",
    "ReencryptProgress",
    "UTCDateTime",
    "apscheduler_jobs",
    "conflicts",
    "console_requests",
    "console_sessions",
    "console_users",
    "cursors",
    "dead_letters",
    "erasure_keys",
    "erasures",
    "identity_index",
    "job_leases",
    "mapping_versions",
    "metadata",
    "runs",
    "snapshots",
    "write_intents",
    "xref",
]

class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamp with time zone``; SQLite (no time zones) stores naive UTC text, so
    comparisons in SQL (lease expiry, retry due dates) stay correct on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_SYS = 64       # system names (config keys)
_OBJ = 128      # vendor object names
_JOB = 128      # job names
_EXT = 255      # vendor external ids
_PARTY = 64     # canonical party ids (uuid text)
_HASH = 128     # hex content / payload hashes

metadata = Base.metadata

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(_JOB), nullable=False),
    Column("status", String(16), nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("counts", JSON, nullable=False, default=dict),
    Column("actor", String(128)),
    Column("error_summary", Text),
    Column("host", String(255)),
    Column("pid", Integer),
    # the crmbridge release that ran it (an auditor's "which code made this decision"); NULL before revision 0016
    Column("crmbridge_version", String(64)),
    Index(None, "job", "started_at"),
    Index(None, "status"),
)

cursors = Table(
    "cursors", metadata,
    Column("job", String(_JOB), primary_key=True),
    Column("object", String(_OBJ), primary_key=True),
    Column("field", String(128), nullable=False),
    Column("value", String(64)),
    Column("overlap_seconds", Integer, nullable=False, default=0),
    Column("boundary", JSON, nullable=False, default=dict),
    Column("updated_at", UTCDateTime, nullable=False),
)

xref = Table(
    "xref", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("system", String(_SYS), nullable=False),
    Column("object", String(_OBJ), nullable=False),
    Column("external_id", String(_EXT), nullable=False),
    Column("party_id", String(_PARTY), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("system", "object", "external_id"),
    Index(None, "party_id"),
)

identity_index = Table(
    "identity_index", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scheme", String(64), nullable=False),
    Column("bidx", String(128), nullable=False),
    Column("key_version", Integer, nullable=False, default=1),
    Column("party_id", String(_PARTY), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("scheme", "bidx", "party_id"),
    Index(None, "party_id"),
)

snapshots = Table(
    "snapshots", metadata,
    Column("party_id", String(_PARTY), primary_key=True),
    Column("system", String(_SYS), primary_key=True),
    Column("object", String(_OBJ), primary_key=True),
    Column("content_hash", String(_HASH), nullable=False),
    Column("blob", LargeBinary, nullable=False),
    Column("written_hash", String(_HASH)),
    Column("version", String(64)),
    Column("synced_at", UTCDateTime, nullable=False),
    # file name -> version (content hash) of each mapping that produced it, as in ledger entries (NULL before 0011)
    Column("mapping_versions", JSON),
)

dead_letters = Table(
    "dead_letters", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(_JOB), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="SET NULL")),
    Column("source_system", String(_SYS)),
    Column("source_object", String(_OBJ)),
    Column("external_id", String(_EXT)),
    Column("stage", String(32), nullable=False),
    Column("reason_code", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("payload", LargeBinary),
    Column("record_hash", String(_HASH)),   # keyed hash of the failing record: an unchanged re-read is not a retry
    Column("attempts", Integer, nullable=False, default=1),
    Column("next_attempt_at", UTCDateTime),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "job", "status"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "source_system", "source_object", "external_id"),
    Index(None, "run_id"),
)

conflicts = Table(
    "conflicts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(_JOB), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="SET NULL")),
    Column("party_id", String(_PARTY), nullable=False),
    Column("field_paths", JSON, nullable=False),
    Column("base_value", LargeBinary),
    Column("source_value", LargeBinary),
    Column("target_value", LargeBinary),
    Column("status", String(16), nullable=False),
    Column("resolution", String(32)),
    Column("actor", String(128)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    Index(None, "job", "status"),
    Index(None, "party_id"),
    Index(None, "run_id"),
)

job_leases = Table(
    "job_leases", metadata,
    Column("job", String(_JOB), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
)

write_intents = Table(
    "write_intents", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(_JOB), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="SET NULL")),
    Column("target_system", String(_SYS), nullable=False),
    Column("target_object", String(_OBJ), nullable=False),
    Column("key", String(_PARTY), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("payload_hash", String(_HASH), nullable=False),
    Column("status", String(16), nullable=False),
    Column("external_id", String(_EXT)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "job", "status"),
    Index(None, "target_system", "target_object", "key"),
    Index(None, "run_id"),
)

erasures = Table(
    "erasures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("party_id", String(_PARTY), nullable=False),
    Column("party_type", String(16)),           # C1: which mapping branch anonymises the CRM records
    Column("reason", Text, nullable=False),     # masked; no personal data
    Column("actor", String(128), nullable=False),
    Column("erased_at", UTCDateTime, nullable=False),
    Column("lifted_at", UTCDateTime),
    Column("lifted_by", String(128)),
    Column("lift_reason", Text),
    UniqueConstraint("party_id"),
)

#: erasure_keys.kind
ERASURE_IDENTITY, ERASURE_SOURCE, ERASURE_TARGET = "identity", "source", "target"

erasure_keys = Table(
    "erasure_keys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("erasure_id", Integer, ForeignKey("erasures.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),          # identity | source | target
    Column("scheme", String(64)),                        # identity: match rule / scheme (CN_RIC, CN_USCC...)
    Column("bidx", String(128)),                         # identity: its blind index
    Column("system", String(_SYS)),                      # source / target: the vendor record
    Column("object", String(_OBJ)),
    Column("external_id", String(_EXT)),
    Column("seen", JSON, nullable=False, default=dict),  # job -> keyed hash of the record last suppressed
    Column("propagation", String(16)),                   # target: pending | deleted | deactivated | gone
    Column("propagated_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "scheme", "bidx"),
    Index(None, "system", "object", "external_id"),
    Index(None, "erasure_id"),
)


#: the text of every mapping version a run used (content hash = ``Mapping.version_hash``, the SHA-256 of the file's
#: bytes, as snapshots and ledger entries record it): ``crmbridge mapping history|show --version|diff``
mapping_versions = Table(
    "mapping_versions", metadata,
    Column("content_hash", String(_HASH), primary_key=True),
    Column("system", String(_SYS), nullable=False),
    Column("object", String(_OBJ), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("text", Text, nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Index(None, "system", "object"),
    Index(None, "file_name"),
)

# ---------------------------------------------------------------------------------------------- console
#: the console's local users (``crmbridge users``): Argon2id password hashes, never the password; roles as a JSON list
console_users = Table(
    "console_users", metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("locked_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("password_changed_at", UTCDateTime, nullable=False),
    Column("last_sign_in_at", UTCDateTime),
)

#: signed-in console sessions: the SHA-256 of the cookie's random token (a stolen database holds no usable session),
#: the session's CSRF token, an absolute and an idle expiry
console_sessions = Table(
    "console_sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index(None, "username"),
    Index(None, "expires_at"),
)

#: four-eyes requests (reveal a C2 value in clear, erase a party): requested by one user with a reason, approved or
#: rejected by a different one; an approved reveal expires
console_requests = Table(
    "console_requests", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),             # reveal | erasure
    Column("party_id", String(_PARTY), nullable=False),
    Column("fields", JSON, nullable=False),                 # canonical paths (reveal); [] for an erasure
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),           # pending | approved | rejected | expired | done
    Column("requested_by", String(64), nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("decided_by", String(64)),
    Column("decided_at", UTCDateTime),
    Column("decision_reason", Text),
    Column("expires_at", UTCDateTime),
    Index(None, "status", "requested_at"),
    Index(None, "party_id"),
)


# ---------------------------------------------------------------------------------------------- keys
class DataKey(Base):
    """A wrapped data key (:mod:`crmbridge.sync.security.crypto`). ``wrapped`` is NULL once destroyed
    (crypto-shredding); the row stays as a tombstone."""

    __tablename__ = "crypto_data_keys"
    __table_args__ = (UniqueConstraint("scope", "version", name="uq_crypto_data_keys_scope_version"),)

    kid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    scope: Mapped[str] = mapped_column(String(96), index=True)
    version: Mapped[int] = mapped_column(Integer)
    algorithm: Mapped[str] = mapped_column(String(16))
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


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


# ---------------------------------------------------------------------------------------------- scheduler
#: APScheduler 3's SQLAlchemyJobStore table (:mod:`crmbridge.sync.runners.scheduler`), declared here so migrations
#: create it (0003) and the models-match check covers it; APScheduler finds it present and uses it as is.
apscheduler_jobs = Table(
    "apscheduler_jobs", Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25)),
    Column("job_state", LargeBinary, nullable=False),
    Index("ix_apscheduler_jobs_next_run_time", "next_run_time"),
)
