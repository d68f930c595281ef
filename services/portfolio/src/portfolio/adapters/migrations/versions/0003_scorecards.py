"""contract scorecards

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'scorecards',
        sa.Column('tenant_id', sa.String(length=200), nullable=False),
        sa.Column('key', sa.String(length=500), nullable=False),
        sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint('tenant_id', 'key', name=op.f('pk_scorecards')),
    )


def downgrade() -> None:
    op.drop_table('scorecards')
