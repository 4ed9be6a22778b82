"""Scheduler job store: APScheduler's ``apscheduler_jobs`` table (crmbridge.sync.runners.scheduler).

APScheduler 3's SQLAlchemyJobStore would create this table itself on first start; creating it here instead keeps
the whole schema under migrations (the service account needs no DDL rights at run time) and lets the "models
match migrations" check cover it. The layout is APScheduler's own: id, next_run_time (epoch seconds, indexed),
job_state (the pickled job).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 15:12:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('apscheduler_jobs',
    sa.Column('id', sa.Unicode(length=191), nullable=False),
    sa.Column('next_run_time', sa.Float(precision=25), nullable=True),
    sa.Column('job_state', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apscheduler_jobs'))
    )
    with op.batch_alter_table('apscheduler_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_apscheduler_jobs_next_run_time'), ['next_run_time'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('apscheduler_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_apscheduler_jobs_next_run_time'))
    op.drop_table('apscheduler_jobs')
