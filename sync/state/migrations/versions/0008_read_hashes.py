"""Per-job read hashes get their own table: ``read_hashes``.

The keyed hash (and version) of the record each job last read from a system, by the record's external id, so an
overlap re-read of a record already handled is recognised. They used to be kept in ``snapshots`` under made-up
object names (``<object>@read:<job>``, keyed by party); the upgrade carries them over (one row per external id
cross-referenced to the party) and deletes those rows; the downgrade puts them back.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 21:30:00
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: the made-up snapshot object name of a job's read hashes: ``<object>@read:<job>``
READ_MARK = "@read:"

_snapshots = sa.table("snapshots", sa.column("party_id", sa.String), sa.column("system", sa.String),
                      sa.column("object", sa.String), sa.column("content_hash", sa.String),
                      sa.column("blob", sa.LargeBinary), sa.column("written_hash", sa.String),
                      sa.column("version", sa.String), sa.column("synced_at", sa.DateTime(timezone=True)))
_xref = sa.table("xref", sa.column("system", sa.String), sa.column("object", sa.String),
                 sa.column("external_id", sa.String), sa.column("party_id", sa.String))
_read_hashes = sa.table("read_hashes", sa.column("job", sa.String), sa.column("system", sa.String),
                        sa.column("object", sa.String), sa.column("external_id", sa.String),
                        sa.column("record_hash", sa.String), sa.column("version", sa.String),
                        sa.column("updated_at", sa.DateTime(timezone=True)))


def _insert(conn: sa.Connection, table: sa.TableClause, rows: list[dict]) -> None:
    for i in range(0, len(rows), 500):
        conn.execute(table.insert(), rows[i:i + 500])


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('read_hashes',
    sa.Column('job', sa.String(length=128), nullable=False),
    sa.Column('system', sa.String(length=64), nullable=False),
    sa.Column('object', sa.String(length=128), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('record_hash', sa.String(length=128), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('job', 'system', 'object', 'external_id', name=op.f('pk_read_hashes'))
    )
    conn = op.get_bind()
    fake = _snapshots.c.object.like(f"%{READ_MARK}%")
    rows = conn.execute(sa.select(
        _snapshots.c.party_id, _snapshots.c.system, _snapshots.c.object, _snapshots.c.content_hash,
        _snapshots.c.version, _snapshots.c.synced_at, _xref.c.object.label("x_object"), _xref.c.external_id,
    ).select_from(_snapshots.join(_xref, sa.and_(_xref.c.system == _snapshots.c.system,
                                                   _xref.c.party_id == _snapshots.c.party_id))).where(fake)).all()
    out: dict[tuple[str, str, str, str], dict] = {}
    for r in rows:
        obj, _, job = r.object.partition(READ_MARK)
        if r.x_object != obj:
            continue
        out[(job, r.system, obj, r.external_id)] = {
            "job": job, "system": r.system, "object": obj, "external_id": r.external_id,
            "record_hash": r.content_hash, "version": r.version, "updated_at": r.synced_at or datetime.now(UTC)}
    _insert(conn, _read_hashes, list(out.values()))
    conn.execute(_snapshots.delete().where(fake))


def downgrade() -> None:
    """Downgrade schema."""
    conn = op.get_bind()
    rows = conn.execute(sa.select(
        _read_hashes.c.job, _read_hashes.c.system, _read_hashes.c.object, _read_hashes.c.record_hash,
        _read_hashes.c.version, _read_hashes.c.updated_at, _xref.c.party_id,
    ).select_from(_read_hashes.join(_xref, sa.and_(_xref.c.system == _read_hashes.c.system,
                                                     _xref.c.object == _read_hashes.c.object,
                                                     _xref.c.external_id == _read_hashes.c.external_id)))
    ).all()
    back: dict[tuple[str, str, str], dict] = {}
    for r in sorted(rows, key=lambda r: (r.updated_at is not None, r.updated_at)):   # the newest read wins
        key = (r.party_id, r.system, f"{r.object}{READ_MARK}{r.job}")
        back[key] = {"party_id": r.party_id, "system": r.system, "object": key[2], "content_hash": r.record_hash,
                     "blob": b"", "written_hash": None, "version": r.version, "synced_at": r.updated_at}
    _insert(conn, _snapshots, list(back.values()))
    op.drop_table('read_hashes')
