"""Distributed mode: ``dist_batches``, the staged batches of a distributed run (crmbridge.sync.runners.distributed).

A row per batch a dispatcher hands out: its run, place in the run, kind (retry / extract / delete), status
(pending / running / done / failed), the claiming worker and its heartbeat, the batch's watermark (for the
cursor) and its raw records, encrypted (``payload``, erased when the run ends), and its outcome counts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 15:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('dist_batches',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('job', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('lease_holder', sa.String(length=255), nullable=False),
    sa.Column('record_count', sa.Integer(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=True),
    sa.Column('watermark', sa.String(length=64), nullable=True),
    sa.Column('at_watermark', sa.JSON(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_by', sa.String(length=255), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_dist_batches_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dist_batches')),
    sa.UniqueConstraint('run_id', 'seq', name=op.f('uq_dist_batches_run_id'))
    )
    op.create_index(op.f('ix_dist_batches_run_id'), 'dist_batches', ['run_id', 'status'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_dist_batches_run_id'), table_name='dist_batches')
    op.drop_table('dist_batches')
