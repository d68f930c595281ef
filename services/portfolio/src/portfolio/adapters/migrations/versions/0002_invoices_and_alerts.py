"""invoice verdicts, alerts and their deliveries

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 18:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

ROW_TABLES = ("invoices", "alerts", "deliveries")


def upgrade() -> None:
    for name in ROW_TABLES:
        op.create_table(
            name,
            sa.Column('tenant_id', sa.String(length=200), nullable=False),
            sa.Column('key', sa.String(length=500), nullable=False),
            sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
            sa.PrimaryKeyConstraint('tenant_id', 'key', name=op.f(f'pk_{name}')),
        )


def downgrade() -> None:
    for name in ROW_TABLES:
        op.drop_table(name)
