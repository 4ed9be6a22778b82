"""Per-job mapping versions: ``job_mapping_versions``.

The mapping versions (content hashes) each job last completed a run with, their mapping text, and the versions of
a re-derivation under way: a changed mapping makes the next run re-derive every record the job has written
(resumable after a crash), and a dry run shows what the change does in the vendor's terms.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 22:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('job_mapping_versions',
    sa.Column('job', sa.String(length=128), nullable=False),
    sa.Column('versions', sa.JSON(), nullable=False),
    sa.Column('texts', sa.JSON(), nullable=False),
    sa.Column('pending', sa.JSON(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('job', name=op.f('pk_job_mapping_versions'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('job_mapping_versions')
