"""Canonical objects beside the party as last read: ``object_records`` (issue 20).

Holdings (and later interactions) synced by object jobs, each under its own canonical id and its owning party,
sealed with the party's data key: the rules engine reads a party's holdings from here.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 00:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic. Only down_revision names another migration (re-chain it there).
revision: str = '0017'
down_revision: str | Sequence[str] | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'object_records',
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('object_id', sa.String(length=64), nullable=False),
        sa.Column('party_id', sa.String(length=64), nullable=False),
        sa.Column('content_hash', sa.String(length=128), nullable=False),
        sa.Column('blob', sa.LargeBinary(), nullable=False),
        sa.Column('closed', sa.Boolean(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('kind', 'object_id', name=op.f('pk_object_records')),
    )
    with op.batch_alter_table('object_records') as batch_op:
        batch_op.create_index(batch_op.f('ix_object_records_party_id'), ['party_id', 'kind'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('object_records') as batch_op:
        batch_op.drop_index(batch_op.f('ix_object_records_party_id'))
    op.drop_table('object_records')
