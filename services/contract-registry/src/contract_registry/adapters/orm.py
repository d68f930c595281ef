"""SQLAlchemy 2 models: the registry's tables. Alembic migrations must match these (a test checks)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ContractRow(Base):
    """Header of a contract plus denormalised columns of its current version, for filtering."""

    __tablename__ = "contracts"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # Stable creation order for cursor pagination.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(Text)
    counterparty_id: Mapped[str] = mapped_column(String(200))
    counterparty: Mapped[dict[str, Any]] = mapped_column(JSONB)
    direction: Mapped[str] = mapped_column(String(20))
    contract_type: Mapped[str] = mapped_column(String(100))
    business_unit: Mapped[str | None] = mapped_column(String(200))
    owner_email: Mapped[str] = mapped_column(String(320))
    owner: Mapped[dict[str, Any]] = mapped_column(JSONB)
    backup_owner: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    timezone: Mapped[str] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    status: Mapped[str] = mapped_column(String(20))
    terminated_on: Mapped[date | None] = mapped_column(Date)
    current_version: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    end_date: Mapped[date | None] = mapped_column(Date)
    renewal_decision: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_contracts_tenant_status", "tenant_id", "status", "seq"),
        Index("ix_contracts_tenant_counterparty", "tenant_id", "counterparty_id"),
        Index("ix_contracts_tenant_owner", "tenant_id", "owner_email"),
        Index("ix_contracts_tenant_end_date", "tenant_id", "end_date"),
        Index("ix_contracts_tags", "tags", postgresql_using="gin"),
        # The expiry sweep reads exactly the running contracts past their end date, earliest first.
        Index("ix_contracts_running_end_date", "end_date",
              postgresql_where=text("status IN ('active', 'renewed') AND end_date IS NOT NULL")),
    )


class ContractVersionRow(Base):
    """One version (amendment) of a contract: ContractTerms as JSON plus columns to filter on."""

    __tablename__ = "contract_versions"

    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    effective_from: Mapped[date] = mapped_column(Date)
    effective_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    total_value: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    reason: Mapped[str | None] = mapped_column(Text)
    terms: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))

    __table_args__ = (Index("ix_contract_versions_effective", "contract_id", "effective_from"),)


class AuditRow(Base):
    """Who changed what, when, and from which request."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(200))
    contract_id: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    actor: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB)

    __table_args__ = (Index("ix_audit_log_contract", "tenant_id", "contract_id", "id"),)


class OutboxRow(Base):
    """A Kafka record written in the same transaction as the change it describes.

    `id` is the CloudEvents ce_id (stable across re-sends); `seq` orders publication, and
    per contract it follows commit order because every change locks the contract row first.
    """

    __tablename__ = "outbox"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(200))
    aggregate_id: Mapped[str] = mapped_column(String(200))
    topic: Mapped[str] = mapped_column(String(249))
    ce_type: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(Text)
    value: Mapped[str] = mapped_column(Text)
    headers: Mapped[list[list[str]]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_outbox_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_aggregate_unpublished", "aggregate_id", "seq",
              postgresql_where=text("published_at IS NULL")),
    )


class IdempotencyKeyRow(Base):
    """The first result of a create, returned again when the client retries with the same key."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    contract_id: Mapped[str] = mapped_column(String(200))
    status_code: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ObligationStateRow(Base):
    """Mirror of where each obligation stands, from the obligation-engine (and our own completions)."""

    __tablename__ = "obligation_states"

    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"), primary_key=True)
    obligation_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(50))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source_system: Mapped[str | None] = mapped_column(String(200))
    last_event_type: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProcessedEventRow(Base):
    """Inbound events already applied, by ce_id: redeliveries are no-ops."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(249))
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ImportRow(Base):
    """A bulk import's progress; its counters move in the same transaction as the contracts of each batch."""

    __tablename__ = "imports"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(200))
    received: Mapped[int] = mapped_column(Integer)
    created: Mapped[int] = mapped_column(Integer)
    existing: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    rejections: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
