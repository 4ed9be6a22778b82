"""Ledger lineage (encoding 2): what was sent, what the vendor answered, who did it.

New nullable columns on ``ledger_entries`` (NULL on the entries written before: they stay encoding 1 and verify
as written): ``enc`` (the entry's encoding), ``payload`` (the masked vendor payload sent), ``answer`` (the vendor's
masked answer), ``correlation_id``, ``mapping_versions`` (mapping name → content hash) and ``actor_note`` (the
``--actor`` annotation beside the accountable operating-system user). Indexes for the auditors' lookups by a
system's record id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 21:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('ledger_entries') as batch_op:
        batch_op.add_column(sa.Column('enc', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('payload', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('answer', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('correlation_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('mapping_versions', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('actor_note', sa.Text(), nullable=True))
    op.create_index('ix_ledger_entries_source', 'ledger_entries',
                    ['source_system', 'source_object', 'source_id'], unique=False)
    op.create_index('ix_ledger_entries_target', 'ledger_entries',
                    ['target_system', 'target_object', 'target_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_ledger_entries_target', table_name='ledger_entries')
    op.drop_index('ix_ledger_entries_source', table_name='ledger_entries')
    with op.batch_alter_table('ledger_entries') as batch_op:
        for name in ('actor_note', 'mapping_versions', 'correlation_id', 'answer', 'payload', 'enc'):
            batch_op.drop_column(name)
