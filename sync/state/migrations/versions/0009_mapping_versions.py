"""Mapping versions: the text of every mapping version a run used, by content hash.

``mapping_versions`` holds one row per distinct mapping file content (the SHA-256 of its bytes, the
``mapping_versions`` hashes ledger entries and snapshots record), with its system, object, file name and when it
was first seen, so ``crmbridge mapping history|show --version|diff`` can show what produced a record long after the
file changed. Rows are only ever inserted.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 21:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic. Only down_revision names another migration (re-chain it there).
revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('mapping_versions',
    sa.Column('content_hash', sa.String(length=128), nullable=False),
    sa.Column('system', sa.String(length=64), nullable=False),
    sa.Column('object', sa.String(length=128), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('content_hash', name=op.f('pk_mapping_versions'))
    )
    op.create_index(op.f('ix_mapping_versions_system'), 'mapping_versions', ['system', 'object'], unique=False)
    op.create_index(op.f('ix_mapping_versions_file_name'), 'mapping_versions', ['file_name'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_mapping_versions_file_name'), table_name='mapping_versions')
    op.drop_index(op.f('ix_mapping_versions_system'), table_name='mapping_versions')
    op.drop_table('mapping_versions')
