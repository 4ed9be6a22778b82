"""The crmbridge release of each run: ``runs.crmbridge_version``.

An auditor asks which code made a decision: each run records the installed crmbridge version (as
``crmbridge --version`` prints it). Runs recorded before this revision hold NULL.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08 00:05:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic. Only down_revision names another migration (re-chain it there).
revision: str = '0016'
down_revision: str | Sequence[str] | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('runs') as batch_op:
        batch_op.add_column(sa.Column('crmbridge_version', sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('runs') as batch_op:
        batch_op.drop_column('crmbridge_version')
