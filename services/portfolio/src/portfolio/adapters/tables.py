"""SQLAlchemy Core tables of the read model. The Alembic migrations must match these (a test checks).

Each panel table holds one row per (tenant, key) as JSONB: the panels read a tenant's rows and compute
their figures in pure code, so the rows' shape lives once, in domain/rows.py."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, MetaData, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

events = Table(
    "events", metadata,
    # CloudEvents: an event is identified by source and id together.
    Column("source", String(500), primary_key=True),
    Column("id", String(500), primary_key=True),
    Column("topic", String(300), nullable=False),
    Column("type", String(200), nullable=False),
    Column("tenant_id", String(200), nullable=True),
    Column("contract_id", String(200), nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("summary", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Index("ix_events_contract", "contract_id", "occurred_at"),
)


def _rows(name: str) -> Table:
    return Table(name, metadata,
                 Column("tenant_id", String(200), primary_key=True),
                 Column("key", String(500), primary_key=True),
                 Column("data", JSONB, nullable=False))


contracts = _rows("contracts")
renewals = _rows("renewals")
decisions = _rows("decisions")
obligations = _rows("obligations")
invoices = _rows("invoices")
alerts = _rows("alerts")
deliveries = _rows("deliveries")  # tenant "-": notifications carry none; read through the tenant's alerts
scorecards = _rows("scorecards")  # tenant "-": scorecards carry none; read through the tenant's contracts
ROW_TABLES = {t.name: t for t in (contracts, renewals, decisions, obligations, invoices, alerts, deliveries,
                                  scorecards)}

model_version = Table(
    "model_version", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)
