"""Tables of the engine's own bookkeeping beside the core state tables: the per-job read hashes and the batches
of distributed runs (their repository methods are :class:`~crmbridge.sync.state.store.StoreTx`'s)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, LargeBinary, String, Table, Text, UniqueConstraint

from crmbridge.sync.security.protect import register_encrypted_column
from crmbridge.sync.state.db import Base
from crmbridge.sync.state.store import UTCDateTime

__all__ = ["ReadHash", "dist_batches", "job_mapping_versions", "read_hashes"]

#: the keyed hash (and version) of the record each job last read from a system, by the record's external id: an
#: overlap re-read whose hash is unchanged was handled already (each job its own: two jobs reading the same
#: source must each handle a record once)
read_hashes = Table(
    "read_hashes", Base.metadata,
    Column("job", String(128), primary_key=True),
    Column("system", String(64), primary_key=True),
    Column("object", String(128), primary_key=True),
    Column("external_id", String(255), primary_key=True),
    Column("record_hash", String(128), nullable=False),
    Column("version", String(64)),
    Column("updated_at", UTCDateTime, nullable=False),
)

#: the mapping versions (content hashes, by mapping reference) each job last completed a run with, the mapping text
#: of those versions (to show what a changed mapping changes in the vendor's terms), and the versions of a
#: re-derivation under way (set when a run starts re-deriving every record after a mapping change or a full
#: refresh, cleared when a run completes it: a run that crashed in between resumes it from the cursor)
job_mapping_versions = Table(
    "job_mapping_versions", Base.metadata,
    Column("job", String(128), primary_key=True),
    Column("versions", JSON, nullable=False, default=dict),
    Column("texts", JSON, nullable=False, default=dict),
    Column("pending", JSON),
    Column("updated_at", UTCDateTime, nullable=False),
)

#: the staged batches of distributed runs (crmbridge.sync.runners.distributed)
dist_batches = Table(
    "dist_batches", Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("job", String(128), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("lease_holder", String(255), nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("payload", LargeBinary),
    Column("watermark", String(64)),
    Column("at_watermark", JSON, nullable=False, default=dict),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_by", String(255)),
    Column("heartbeat_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    Column("counts", JSON, nullable=False, default=dict),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("run_id", "seq"),
    Index(None, "run_id", "status"),
)

# a batch's records, bound to their run and place in it; no party key (a batch holds many parties): payloads are
# erased when their run ends
register_encrypted_column("dist_batches", "payload", record_columns=("run_id", "seq"))


@dataclass(frozen=True)
class ReadHash:
    """The keyed hash of a record as a job last read it, and the record's version then."""

    record_hash: str
    version: str | None
