"""A run's ledger entries in order from one index: ``(run_id, seq)`` replaces ``(run_id)``.

The console pages a run's records on the ledger's seq (``WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT n``).
With an index on ``run_id`` alone PostgreSQL reads every entry of the run and sorts them for each page (SQLite's
index carries the rowid, which is the seq, so it was already in order); with ``(run_id, seq)`` a page reads its own
rows only, however large the run. The composite index serves every lookup by run the old one did.

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-08 00:20:00
"""
from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic. Only down_revision names another migration (re-chain it there).
revision: str = '0015'
down_revision: str | Sequence[str] | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index('ix_ledger_entries_run_id_seq', 'ledger_entries', ['run_id', 'seq'], unique=False)
    op.drop_index('ix_ledger_entries_run_id', table_name='ledger_entries')


def downgrade() -> None:
    """Downgrade schema."""
    op.create_index('ix_ledger_entries_run_id', 'ledger_entries', ['run_id'], unique=False)
    op.drop_index('ix_ledger_entries_run_id_seq', table_name='ledger_entries')
