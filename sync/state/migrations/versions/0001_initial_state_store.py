"""Initial state store: runs, cursors, xref, identity index, snapshots, dead letters, conflicts, job leases,
write intents (crmbridge.sync.state.store).

Timestamps are ``timestamp with time zone`` on PostgreSQL; on SQLite the model's ``UTCDateTime`` stores naive
UTC text. Names follow crmbridge.sync.state.db.NAMING.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 14:35:41
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('cursors',
    sa.Column('job', sa.String(length=128), nullable=False),
    sa.Column('object', sa.String(length=128), nullable=False),
    sa.Column('field', sa.String(length=128), nullable=False),
    sa.Column('value', sa.String(length=64), nullable=True),
    sa.Column('overlap_seconds', sa.Integer(), nullable=False),
    sa.Column('boundary', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('job', 'object', name=op.f('pk_cursors'))
    )
    op.create_table('identity_index',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('scheme', sa.String(length=64), nullable=False),
    sa.Column('bidx', sa.String(length=128), nullable=False),
    sa.Column('key_version', sa.Integer(), nullable=False),
    sa.Column('party_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_index')),
    sa.UniqueConstraint('scheme', 'bidx', 'party_id', name=op.f('uq_identity_index_scheme'))
    )
    op.create_index(op.f('ix_identity_index_party_id'), 'identity_index', ['party_id'], unique=False)
    op.create_table('job_leases',
    sa.Column('job', sa.String(length=128), nullable=False),
    sa.Column('holder', sa.String(length=255), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('job', name=op.f('pk_job_leases'))
    )
    op.create_table('runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=True),
    sa.Column('error_summary', sa.Text(), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    op.create_index(op.f('ix_runs_job'), 'runs', ['job', 'started_at'], unique=False)
    op.create_index(op.f('ix_runs_status'), 'runs', ['status'], unique=False)
    op.create_table('snapshots',
    sa.Column('party_id', sa.String(length=64), nullable=False),
    sa.Column('system', sa.String(length=64), nullable=False),
    sa.Column('object', sa.String(length=128), nullable=False),
    sa.Column('content_hash', sa.String(length=128), nullable=False),
    sa.Column('blob', sa.LargeBinary(), nullable=False),
    sa.Column('written_hash', sa.String(length=128), nullable=True),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('party_id', 'system', 'object', name=op.f('pk_snapshots'))
    )
    op.create_table('xref',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('system', sa.String(length=64), nullable=False),
    sa.Column('object', sa.String(length=128), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('party_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_xref')),
    sa.UniqueConstraint('system', 'object', 'external_id', name=op.f('uq_xref_system'))
    )
    op.create_index(op.f('ix_xref_party_id'), 'xref', ['party_id'], unique=False)
    op.create_table('conflicts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job', sa.String(length=128), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('party_id', sa.String(length=64), nullable=False),
    sa.Column('field_paths', sa.JSON(), nullable=False),
    sa.Column('base_value', sa.LargeBinary(), nullable=True),
    sa.Column('source_value', sa.LargeBinary(), nullable=True),
    sa.Column('target_value', sa.LargeBinary(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resolution', sa.String(length=32), nullable=True),
    sa.Column('actor', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_conflicts_run_id_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conflicts'))
    )
    op.create_index(op.f('ix_conflicts_job'), 'conflicts', ['job', 'status'], unique=False)
    op.create_index(op.f('ix_conflicts_party_id'), 'conflicts', ['party_id'], unique=False)
    op.create_index(op.f('ix_conflicts_run_id'), 'conflicts', ['run_id'], unique=False)
    op.create_table('dead_letters',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job', sa.String(length=128), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('source_system', sa.String(length=64), nullable=True),
    sa.Column('source_object', sa.String(length=128), nullable=True),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('reason_code', sa.String(length=64), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=True),
    sa.Column('record_hash', sa.String(length=128), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_dead_letters_run_id_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letters'))
    )
    op.create_index(op.f('ix_dead_letters_job'), 'dead_letters', ['job', 'status'], unique=False)
    op.create_index(op.f('ix_dead_letters_run_id'), 'dead_letters', ['run_id'], unique=False)
    op.create_index(op.f('ix_dead_letters_source_system'), 'dead_letters', ['source_system', 'source_object', 'external_id'], unique=False)
    op.create_index(op.f('ix_dead_letters_status'), 'dead_letters', ['status', 'next_attempt_at'], unique=False)
    op.create_table('write_intents',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job', sa.String(length=128), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('target_system', sa.String(length=64), nullable=False),
    sa.Column('target_object', sa.String(length=128), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('operation', sa.String(length=16), nullable=False),
    sa.Column('payload_hash', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_write_intents_run_id_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_write_intents'))
    )
    op.create_index(op.f('ix_write_intents_job'), 'write_intents', ['job', 'status'], unique=False)
    op.create_index(op.f('ix_write_intents_run_id'), 'write_intents', ['run_id'], unique=False)
    op.create_index(op.f('ix_write_intents_target_system'), 'write_intents', ['target_system', 'target_object', 'key'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_write_intents_target_system'), table_name='write_intents')
    op.drop_index(op.f('ix_write_intents_run_id'), table_name='write_intents')
    op.drop_index(op.f('ix_write_intents_job'), table_name='write_intents')
    op.drop_table('write_intents')
    op.drop_index(op.f('ix_dead_letters_status'), table_name='dead_letters')
    op.drop_index(op.f('ix_dead_letters_source_system'), table_name='dead_letters')
    op.drop_index(op.f('ix_dead_letters_run_id'), table_name='dead_letters')
    op.drop_index(op.f('ix_dead_letters_job'), table_name='dead_letters')
    op.drop_table('dead_letters')
    op.drop_index(op.f('ix_conflicts_run_id'), table_name='conflicts')
    op.drop_index(op.f('ix_conflicts_party_id'), table_name='conflicts')
    op.drop_index(op.f('ix_conflicts_job'), table_name='conflicts')
    op.drop_table('conflicts')
    op.drop_index(op.f('ix_xref_party_id'), table_name='xref')
    op.drop_table('xref')
    op.drop_table('snapshots')
    op.drop_index(op.f('ix_runs_status'), table_name='runs')
    op.drop_index(op.f('ix_runs_job'), table_name='runs')
    op.drop_table('runs')
    op.drop_table('job_leases')
    op.drop_index(op.f('ix_identity_index_party_id'), table_name='identity_index')
    op.drop_table('identity_index')
    op.drop_table('cursors')
