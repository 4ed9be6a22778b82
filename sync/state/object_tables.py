"""The canonical objects beside the party (holdings, interactions...) as crmbridge last read them, each under its
own canonical id and its owning party, sealed (their repository methods are
:class:`~crmbridge.sync.state.store.StoreTx`'s: ``put_object_record``, ``holdings_of``).

The rules engine reads a party's holdings from here (``crmbridge rules preview --party``); the blob is bound to the
owning party's data key, so erasing the party shreds its holdings with it."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, LargeBinary, String, Table

from crmbridge.sync.security.protect import register_encrypted_column
from crmbridge.sync.state.db import Base
from crmbridge.sync.state.store import UTCDateTime

__all__ = ["object_records"]

object_records = Table(
    "object_records", Base.metadata,
    Column("kind", String(32), primary_key=True),          # the canonical object: Holding, Interaction...
    Column("object_id", String(64), primary_key=True),     # its canonical id (holding_id...)
    Column("party_id", String(64), nullable=False),        # the owning party (canonical id)
    Column("content_hash", String(128), nullable=False),   # keyed hash of the canonical form
    Column("blob", LargeBinary, nullable=False),           # the canonical object, sealed (AES-256-GCM)
    Column("closed", Boolean, nullable=False, default=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "party_id", "kind"),
)

register_encrypted_column("object_records", "blob", record_columns=("kind", "object_id"), party_column="party_id")
