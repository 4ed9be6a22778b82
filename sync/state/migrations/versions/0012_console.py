"""Console users, sessions and four-eyes requests (``crmbridge console``, ``crmbridge users``).

``console_users`` holds Argon2id password hashes and roles; ``console_sessions`` the SHA-256 of each session
cookie's token with its CSRF token and expiry; ``console_requests`` the four-eyes requests (reveal, erasure).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 00:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic. Only down_revision names another migration (re-chain it there).
revision: str = '0012'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'console_users',
        sa.Column('username', sa.String(64), nullable=False),
        sa.Column('password_hash', sa.String(255), nullable=False),
        sa.Column('roles', sa.JSON(), nullable=False),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('failed_attempts', sa.Integer(), nullable=False),
        sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(128), nullable=False),
        sa.Column('password_changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_sign_in_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('username', name=op.f('pk_console_users')),
    )
    op.create_table(
        'console_sessions',
        sa.Column('token_hash', sa.String(64), nullable=False),
        sa.Column('username', sa.String(64), nullable=False),
        sa.Column('csrf_token', sa.String(64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_console_sessions')),
    )
    op.create_index(op.f('ix_console_sessions_username'), 'console_sessions', ['username'])
    op.create_index(op.f('ix_console_sessions_expires_at'), 'console_sessions', ['expires_at'])
    op.create_table(
        'console_requests',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('party_id', sa.String(64), nullable=False),
        sa.Column('fields', sa.JSON(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('requested_by', sa.String(64), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('decided_by', sa.String(64), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('decision_reason', sa.Text(), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_console_requests')),
    )
    op.create_index(op.f('ix_console_requests_status'), 'console_requests', ['status', 'requested_at'])
    op.create_index(op.f('ix_console_requests_party_id'), 'console_requests', ['party_id'])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('console_requests')
    op.drop_table('console_sessions')
    op.drop_table('console_users')
