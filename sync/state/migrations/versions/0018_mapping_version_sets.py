"""Mapping-version sets stored once: ``mapping_version_sets`` (issue 19).

Ledger entries of encoding 4 and snapshots written from now on hold the key of their set of mapping versions
({mapping name: content hash}) instead of repeating the set; the set is stored once here. Rows written before keep
their full set and read as before.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08 01:35:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic. Only down_revision names another migration (re-chain it there).
revision: str = '0018'
down_revision: str | Sequence[str] | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'mapping_version_sets',
        sa.Column('ref', sa.String(length=32), nullable=False),
        sa.Column('versions', sa.Text(), nullable=False),
        sa.Column('first_seen', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('ref', name=op.f('pk_mapping_version_sets')),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('mapping_version_sets')
