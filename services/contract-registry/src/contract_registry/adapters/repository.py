"""ContractSnapshot <-> rows, the audit log and the outbox. Every function runs inside the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from contract_schema.base import Event
from contract_schema.codec import encode
from contract_schema.contract import ContractSnapshot, ContractTerms, ObligationState
from mesh_common.tracing import current_traceparent

from .orm import AuditRow, ContractRow, ContractVersionRow, ObligationStateRow, OutboxRow


def load(session: Session, tenant_id: str, contract_id: str, *, for_update: bool = False) -> ContractSnapshot | None:
    """The contract as a snapshot, or None when it does not exist *for this tenant*."""
    query = select(ContractRow).where(ContractRow.id == contract_id, ContractRow.tenant_id == tenant_id)
    if for_update:
        # Serialises every change to one contract: this is what makes outbox order = commit order per contract.
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        return None
    versions = session.scalars(select(ContractVersionRow).where(ContractVersionRow.contract_id == contract_id)
                               .order_by(ContractVersionRow.version)).all()
    states = session.scalars(select(ObligationStateRow).where(ObligationStateRow.contract_id == contract_id)
                             .order_by(ObligationStateRow.obligation_id)).all()
    return ContractSnapshot.model_validate({
        "contract_id": row.id, "tenant_id": row.tenant_id, "title": row.title, "counterparty": row.counterparty,
        "direction": row.direction, "contract_type": row.contract_type, "business_unit": row.business_unit,
        "owner": row.owner, "backup_owner": row.backup_owner, "timezone": row.timezone, "tags": tuple(row.tags),
        "status": row.status, "terminated_on": row.terminated_on,
        "versions": tuple(ContractTerms.model_validate(v.terms) for v in versions),
        "obligation_states": tuple(ObligationState(obligation_id=s.obligation_id, status=s.status,
                                                   completed_at=s.completed_at, source_system=s.source_system)
                                   for s in states),
        "updated_at": row.updated_at})


def renewal_decision(session: Session, contract_id: str) -> dict[str, Any] | None:
    return session.scalar(select(ContractRow.renewal_decision).where(ContractRow.id == contract_id))


def _header(snapshot: ContractSnapshot) -> dict[str, Any]:
    current = snapshot.current
    return {
        "title": snapshot.title, "counterparty_id": snapshot.counterparty.party_id,
        "counterparty": snapshot.counterparty.model_dump(mode="json"), "direction": snapshot.direction.value,
        "contract_type": snapshot.contract_type, "business_unit": snapshot.business_unit,
        "owner_email": snapshot.owner.email, "owner": snapshot.owner.model_dump(mode="json"),
        "backup_owner": snapshot.backup_owner.model_dump(mode="json") if snapshot.backup_owner else None,
        "timezone": snapshot.timezone, "tags": list(snapshot.tags), "status": snapshot.status.value,
        "terminated_on": snapshot.terminated_on, "current_version": current.version, "currency": current.currency,
        "end_date": current.end_date, "updated_at": snapshot.updated_at,
    }


def _version_row(contract_id: str, terms: ContractTerms, now: datetime, actor: str) -> ContractVersionRow:
    return ContractVersionRow(
        contract_id=contract_id, version=terms.version, effective_from=terms.effective_from,
        effective_date=terms.effective_date, end_date=terms.end_date, currency=terms.currency,
        total_value=terms.total_value, reason=terms.reason, terms=terms.model_dump(mode="json"),
        created_at=now, created_by=actor)


def insert(session: Session, snapshot: ContractSnapshot, *, now: datetime, actor: str) -> None:
    session.add(ContractRow(id=snapshot.contract_id, tenant_id=snapshot.tenant_id, created_at=now,
                            **_header(snapshot)))
    session.flush()
    for terms in snapshot.versions:
        session.add(_version_row(snapshot.contract_id, terms, now, actor))


def update(session: Session, before: ContractSnapshot, after: ContractSnapshot, *, now: datetime,
           actor: str) -> None:
    row = session.get_one(ContractRow, after.contract_id)
    for name, value in _header(after).items():
        setattr(row, name, value)
    for terms in after.versions:
        if terms.version > before.current.version:
            session.add(_version_row(after.contract_id, terms, now, actor))


def audit(session: Session, *, tenant_id: str, contract_id: str, action: str, actor: str,
          request_id: str | None, version: int, at: datetime, details: dict[str, Any]) -> None:
    session.add(AuditRow(tenant_id=tenant_id, contract_id=contract_id, action=action, actor=actor,
                         request_id=request_id, version=version, at=at, details=details))


def enqueue(session: Session, *, event: Event, topic: str, tenant_id: str, source: str, now: datetime) -> uuid.UUID:
    """Write one Kafka record to the outbox. Its row id is the record's ce_id, so a re-send keeps its identity."""
    event_id = uuid.uuid4()
    record = encode(event, source=source, event_id=str(event_id), time=now, traceparent=current_traceparent())
    session.add(OutboxRow(id=event_id, tenant_id=tenant_id, aggregate_id=event.key, topic=topic,
                          ce_type=event.ce_type, key=record.key.decode(), value=record.value.decode(),
                          headers=[[k, v.decode()] for k, v in record.headers], created_at=now))
    return event_id


def notify(session: Session, channel: str) -> None:
    """Wake the relays; PostgreSQL delivers the notification only when (and if) the transaction commits."""
    session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


def unpublished_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None))) or 0
