"""partial index for the expiry sweep: running contracts by end date

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 14:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contracts_running_end_date", "contracts", ["end_date"], unique=False,
                    postgresql_where=sa.text("status IN ('active', 'renewed') AND end_date IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_contracts_running_end_date", table_name="contracts",
                  postgresql_where=sa.text("status IN ('active', 'renewed') AND end_date IS NOT NULL"))
