"""Durable erasure (PIPL Art. 47): ``erasures`` and ``erasure_keys``.

``erasures``: one row per erased party (party id, C1 party type, reason, actor, when; lifted when, by whom, why).
``erasure_keys``: what suppresses it: blind-indexed identifiers (scheme, bidx) and the vendor records (system,
object, external id) it was known as, each with the keyed hash last suppressed per job; a CRM record's key also
carries the erasure's propagation to that CRM (pending → deleted / deactivated / gone).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 18:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('erasures',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('party_id', sa.String(length=64), nullable=False),
    sa.Column('party_type', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lifted_by', sa.String(length=128), nullable=True),
    sa.Column('lift_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erasures')),
    sa.UniqueConstraint('party_id', name=op.f('uq_erasures_party_id'))
    )
    op.create_table('erasure_keys',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('erasure_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('scheme', sa.String(length=64), nullable=True),
    sa.Column('bidx', sa.String(length=128), nullable=True),
    sa.Column('system', sa.String(length=64), nullable=True),
    sa.Column('object', sa.String(length=128), nullable=True),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('seen', sa.JSON(), nullable=False),
    sa.Column('propagation', sa.String(length=16), nullable=True),
    sa.Column('propagated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['erasure_id'], ['erasures.id'], name=op.f('fk_erasure_keys_erasure_id_erasures'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erasure_keys'))
    )
    op.create_index(op.f('ix_erasure_keys_scheme'), 'erasure_keys', ['scheme', 'bidx'], unique=False)
    op.create_index(op.f('ix_erasure_keys_system'), 'erasure_keys', ['system', 'object', 'external_id'],
                    unique=False)
    op.create_index(op.f('ix_erasure_keys_erasure_id'), 'erasure_keys', ['erasure_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_erasure_keys_erasure_id'), table_name='erasure_keys')
    op.drop_index(op.f('ix_erasure_keys_system'), table_name='erasure_keys')
    op.drop_index(op.f('ix_erasure_keys_scheme'), table_name='erasure_keys')
    op.drop_table('erasure_keys')
    op.drop_table('erasures')
