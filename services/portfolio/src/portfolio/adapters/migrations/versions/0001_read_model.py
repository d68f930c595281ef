"""read model: events (idempotency and timeline), panel rows, model version

Revision ID: 0001
Revises:
Create Date: 2026-12-02 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

ROW_TABLES = ("contracts", "renewals", "decisions", "obligations")


def upgrade() -> None:
    op.create_table(
        'events',
        sa.Column('source', sa.String(length=500), nullable=False),
        sa.Column('id', sa.String(length=500), nullable=False),
        sa.Column('topic', sa.String(length=300), nullable=False),
        sa.Column('type', sa.String(length=200), nullable=False),
        sa.Column('tenant_id', sa.String(length=200), nullable=True),
        sa.Column('contract_id', sa.String(length=200), nullable=True),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint('source', 'id', name=op.f('pk_events')),
    )
    op.create_index('ix_events_contract', 'events', ['contract_id', 'occurred_at'], unique=False)
    for name in ROW_TABLES:
        op.create_table(
            name,
            sa.Column('tenant_id', sa.String(length=200), nullable=False),
            sa.Column('key', sa.String(length=500), nullable=False),
            sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
            sa.PrimaryKeyConstraint('tenant_id', 'key', name=op.f(f'pk_{name}')),
        )
    op.create_table(
        'model_version',
        sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_version')),
    )
    op.execute("INSERT INTO model_version (id, version) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table('model_version')
    for name in ROW_TABLES:
        op.drop_table(name)
    op.drop_index('ix_events_contract', table_name='events')
    op.drop_table('events')
