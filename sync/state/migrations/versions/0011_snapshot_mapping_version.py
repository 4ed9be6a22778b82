"""Snapshot mapping versions: ``snapshots.mapping_versions``.

Each snapshot (the last canonical state written per party and target) records the version (content hash) of each
mapping that produced it, by file name, as ledger entries do: ``{"corebank_soap_customer.yaml": "3f2a…",
"zoho_contacts.yaml": "9b1c…"}``. Snapshots written before this revision hold NULL.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 22:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic. Only down_revision names another migration (re-chain it there).
revision: str = '0011'
down_revision: str | Sequence[str] | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('snapshots') as batch_op:
        batch_op.add_column(sa.Column('mapping_versions', sa.JSON(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('snapshots') as batch_op:
        batch_op.drop_column('mapping_versions')
