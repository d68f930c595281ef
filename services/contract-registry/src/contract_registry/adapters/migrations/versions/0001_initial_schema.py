"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 14:18:56.618952
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.String(length=200), nullable=False),
    sa.Column('contract_id', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=50), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('request_id', sa.String(length=200), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_index('ix_audit_log_contract', 'audit_log', ['tenant_id', 'contract_id', 'id'], unique=False)
    op.create_table('contracts',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.String(length=200), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('counterparty_id', sa.String(length=200), nullable=False),
    sa.Column('counterparty', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('direction', sa.String(length=20), nullable=False),
    sa.Column('contract_type', sa.String(length=100), nullable=False),
    sa.Column('business_unit', sa.String(length=200), nullable=True),
    sa.Column('owner_email', sa.String(length=320), nullable=False),
    sa.Column('owner', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('backup_owner', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('tags', postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('terminated_on', sa.Date(), nullable=True),
    sa.Column('current_version', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('renewal_decision', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contracts')),
    sa.UniqueConstraint('seq', name=op.f('uq_contracts_seq'))
    )
    op.create_index('ix_contracts_tags', 'contracts', ['tags'], unique=False, postgresql_using='gin')
    op.create_index('ix_contracts_tenant_counterparty', 'contracts', ['tenant_id', 'counterparty_id'],
                    unique=False)
    op.create_index('ix_contracts_tenant_end_date', 'contracts', ['tenant_id', 'end_date'], unique=False)
    op.create_index('ix_contracts_tenant_owner', 'contracts', ['tenant_id', 'owner_email'], unique=False)
    op.create_index('ix_contracts_tenant_status', 'contracts', ['tenant_id', 'status', 'seq'], unique=False)
    op.create_table('idempotency_keys',
    sa.Column('tenant_id', sa.String(length=200), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('contract_id', sa.String(length=200), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('outbox',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.String(length=200), nullable=False),
    sa.Column('aggregate_id', sa.String(length=200), nullable=False),
    sa.Column('topic', sa.String(length=249), nullable=False),
    sa.Column('ce_type', sa.String(length=200), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('headers', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('seq', name=op.f('uq_outbox_seq'))
    )
    op.create_index('ix_outbox_aggregate_unpublished', 'outbox', ['aggregate_id', 'seq'],
                    unique=False,
                  postgresql_where=sa.text('published_at IS NULL'))
    op.create_index('ix_outbox_unpublished', 'outbox', ['seq'],
                    unique=False,
                  postgresql_where=sa.text('published_at IS NULL'))
    op.create_table('processed_events',
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('topic', sa.String(length=249), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_processed_events'))
    )
    op.create_table('contract_versions',
    sa.Column('contract_id', sa.String(length=200), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('effective_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('total_value', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('terms', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'],
                            name=op.f('fk_contract_versions_contract_id_contracts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('contract_id', 'version', name=op.f('pk_contract_versions'))
    )
    op.create_index('ix_contract_versions_effective', 'contract_versions', ['contract_id', 'effective_from'],
                    unique=False)
    op.create_table('obligation_states',
    sa.Column('contract_id', sa.String(length=200), nullable=False),
    sa.Column('obligation_id', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=50), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('source_system', sa.String(length=200), nullable=True),
    sa.Column('last_event_type', sa.String(length=200), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id'],
                            name=op.f('fk_obligation_states_contract_id_contracts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('contract_id', 'obligation_id', name=op.f('pk_obligation_states'))
    )


def downgrade() -> None:
    op.drop_table('obligation_states')
    op.drop_index('ix_contract_versions_effective', table_name='contract_versions')
    op.drop_table('contract_versions')
    op.drop_table('processed_events')
    op.drop_index('ix_outbox_unpublished', table_name='outbox',
                  postgresql_where=sa.text('published_at IS NULL'))
    op.drop_index('ix_outbox_aggregate_unpublished', table_name='outbox',
                  postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('outbox')
    op.drop_table('idempotency_keys')
    op.drop_index('ix_contracts_tenant_status', table_name='contracts')
    op.drop_index('ix_contracts_tenant_owner', table_name='contracts')
    op.drop_index('ix_contracts_tenant_end_date', table_name='contracts')
    op.drop_index('ix_contracts_tenant_counterparty', table_name='contracts')
    op.drop_index('ix_contracts_tags', table_name='contracts', postgresql_using='gin')
    op.drop_table('contracts')
    op.drop_index('ix_audit_log_contract', table_name='audit_log')
    op.drop_table('audit_log')
