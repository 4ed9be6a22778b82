"""Ledger trust and retention: ``ledger_published`` (how far each head-publishing target got) and
``ledger_anchor`` (the last archived entry: the database's chain continues from it).

On PostgreSQL the append-only trigger function is replaced by one that lets exactly one DELETE through: rows at or
below the archive anchor, in a transaction that set ``crmbridge.ledger_archive`` (``crmbridge ledger archive``,
run as the owner role: the service role has no DELETE on the ledger tables, see ``crmbridge db grant``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 21:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STRICT = """
CREATE OR REPLACE FUNCTION crmbridge_ledger_immutable() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'crmbridge ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""

_ARCHIVE_EXCEPTION = """
CREATE OR REPLACE FUNCTION crmbridge_ledger_immutable() RETURNS trigger AS $$
DECLARE
  anchor bigint;
BEGIN
  IF TG_OP = 'DELETE' AND coalesce(current_setting('crmbridge.ledger_archive', true), '') = 'on' THEN
    SELECT seq INTO anchor FROM ledger_anchor WHERE id = 1;
    IF anchor IS NOT NULL THEN
      IF TG_TABLE_NAME = 'ledger_entries' THEN
        IF OLD.seq <= anchor THEN RETURN OLD; END IF;
      ELSIF TG_TABLE_NAME = 'ledger_checkpoints' THEN
        IF OLD.tree_size <= anchor THEN RETURN OLD; END IF;
      END IF;
    END IF;
  END IF;
  RAISE EXCEPTION 'crmbridge ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('ledger_published',
    sa.Column('target', sa.String(length=255), nullable=False),
    sa.Column('checkpoint_id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('target', name=op.f('pk_ledger_published'))
    )
    op.create_table('ledger_anchor',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.Column('hash_alg', sa.String(length=8), nullable=False),
    sa.Column('frontier', sa.Text(), nullable=False),
    sa.Column('segment', sa.String(length=255), nullable=False),
    sa.Column('archived_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_anchor'))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_ARCHIVE_EXCEPTION)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_STRICT)
    op.drop_table('ledger_anchor')
    op.drop_table('ledger_published')
