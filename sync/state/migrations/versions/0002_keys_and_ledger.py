"""Keys and ledger: data keys, re-encryption progress, the ledger (entries, checkpoints, head)
(crmbridge.sync.security.crypto, crmbridge.sync.security.protect, crmbridge.sync.state.ledger).

On PostgreSQL, triggers make ``ledger_entries`` and ``ledger_checkpoints`` append-only: UPDATE, DELETE and
TRUNCATE raise an error (erasure never needs them: it destroys keys, see crmbridge.sync.security.privacy).
``ledger_head`` stays updatable: it is the appenders' lock row and holds the Merkle frontier.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 14:39:56
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_APPEND_ONLY = ("ledger_entries", "ledger_checkpoints")
_PG_IMMUTABLE_FUNCTION = """
CREATE OR REPLACE FUNCTION crmbridge_ledger_immutable() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'crmbridge ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('crypto_data_keys',
    sa.Column('kid', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('scope', sa.String(length=96), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('algorithm', sa.String(length=16), nullable=False),
    sa.Column('kek_id', sa.String(length=64), nullable=False),
    sa.Column('wrapped', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('destroyed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_crypto_data_keys')),
    sa.UniqueConstraint('scope', 'version', name='uq_crypto_data_keys_scope_version')
    )
    op.create_index(op.f('ix_crypto_data_keys_scope'), 'crypto_data_keys', ['scope'], unique=False)

    op.create_table('crypto_reencrypt_progress',
    sa.Column('table_name', sa.String(length=128), nullable=False),
    sa.Column('column_name', sa.String(length=128), nullable=False),
    sa.Column('target_version', sa.Integer(), nullable=False),
    sa.Column('last_key', sa.Text(), nullable=True),
    sa.Column('rows_done', sa.Integer(), nullable=False),
    sa.Column('finished', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('table_name', 'column_name', name=op.f('pk_crypto_reencrypt_progress'))
    )
    op.create_table('ledger_checkpoints',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tree_size', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('root_hash', sa.String(length=64), nullable=False),
    sa.Column('chain_head', sa.String(length=64), nullable=False),
    sa.Column('hash_alg', sa.String(length=8), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_checkpoints'))
    )
    op.create_index(op.f('ix_ledger_checkpoints_tree_size'), 'ledger_checkpoints', ['tree_size'], unique=False)

    op.create_table('ledger_entries',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.Column('hash_alg', sa.String(length=8), nullable=False),
    sa.Column('recorded_at', sa.String(length=32), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('job', sa.String(length=128), nullable=True),
    sa.Column('source_system', sa.String(length=64), nullable=True),
    sa.Column('source_object', sa.String(length=128), nullable=True),
    sa.Column('source_id', sa.String(length=255), nullable=True),
    sa.Column('target_system', sa.String(length=64), nullable=True),
    sa.Column('target_object', sa.String(length=128), nullable=True),
    sa.Column('target_id', sa.String(length=255), nullable=True),
    sa.Column('party_id', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('changed_fields', sa.Text(), nullable=False),
    sa.Column('masked_before', sa.Text(), nullable=False),
    sa.Column('masked_after', sa.Text(), nullable=False),
    sa.Column('diff_enc', sa.Text(), nullable=True),
    sa.Column('mapping_version', sa.String(length=64), nullable=True),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_ledger_entries'))
    )
    op.create_index('ix_ledger_entries_job_recorded_at', 'ledger_entries', ['job', 'recorded_at'], unique=False)
    op.create_index('ix_ledger_entries_party_id', 'ledger_entries', ['party_id'], unique=False)
    op.create_index('ix_ledger_entries_recorded_at', 'ledger_entries', ['recorded_at'], unique=False)
    op.create_index('ix_ledger_entries_run_id', 'ledger_entries', ['run_id'], unique=False)

    op.create_table('ledger_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.Column('hash_alg', sa.String(length=8), nullable=False),
    sa.Column('frontier', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_head'))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_IMMUTABLE_FUNCTION)
        for table in _APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION crmbridge_ledger_immutable()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION crmbridge_ledger_immutable()")


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        for table in _APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS crmbridge_ledger_immutable()")
    op.drop_table('ledger_head')
    op.drop_index('ix_ledger_entries_run_id', table_name='ledger_entries')
    op.drop_index('ix_ledger_entries_recorded_at', table_name='ledger_entries')
    op.drop_index('ix_ledger_entries_party_id', table_name='ledger_entries')
    op.drop_index('ix_ledger_entries_job_recorded_at', table_name='ledger_entries')

    op.drop_table('ledger_entries')
    op.drop_index(op.f('ix_ledger_checkpoints_tree_size'), table_name='ledger_checkpoints')

    op.drop_table('ledger_checkpoints')
    op.drop_table('crypto_reencrypt_progress')
    op.drop_index(op.f('ix_crypto_data_keys_scope'), table_name='crypto_data_keys')

    op.drop_table('crypto_data_keys')
