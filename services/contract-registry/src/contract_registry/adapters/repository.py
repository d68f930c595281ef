"""The contract repository on PostgreSQL: ContractSnapshot <-> rows, obligation states, the audit log,
the outbox, idempotency keys and inbound dedup ids. Every method runs inside the unit of work's session."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from psycopg import sql
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from contract_schema.contract import ContractSnapshot, ContractTerms, ObligationState

from .orm import (
    AuditRow,
    ContractRow,
    ContractVersionRow,
    IdempotencyKeyRow,
    ImportRow,
    ObligationStateRow,
    OutboxRow,
    ProcessedEventRow,
)
from .ports import AuditEntry, ContractFilter, ContractHead, ImportState, KeyClaim, ObligationRecord, OutboxRecord


class SqlContractRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, tenant_id: str, contract_id: str, *, for_update: bool = False) -> ContractSnapshot | None:
        query = select(ContractRow).where(ContractRow.id == contract_id, ContractRow.tenant_id == tenant_id)
        if for_update:
            # Serialises every change to one contract: this is what makes outbox order = commit order per contract.
            query = query.with_for_update()
        row = self.session.scalars(query).one_or_none()
        if row is None:
            return None
        versions = self.session.scalars(select(ContractVersionRow)
                                        .where(ContractVersionRow.contract_id == contract_id)
                                        .order_by(ContractVersionRow.version)).all()
        states = self.session.scalars(select(ObligationStateRow).where(ObligationStateRow.contract_id == contract_id)
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

    def add(self, snapshot: ContractSnapshot, *, now: datetime, actor: str) -> None:
        self.session.add(ContractRow(id=snapshot.contract_id, tenant_id=snapshot.tenant_id, created_at=now,
                                     **_header(snapshot)))
        self.session.flush()
        for terms in snapshot.versions:
            self.session.add(_version_row(snapshot.contract_id, terms, now, actor))

    def update(self, before: ContractSnapshot, after: ContractSnapshot, *, now: datetime, actor: str) -> None:
        row = self.session.get_one(ContractRow, after.contract_id)
        for name, value in _header(after).items():
            setattr(row, name, value)
        for terms in after.versions:
            if terms.version > before.current.version:
                self.session.add(_version_row(after.contract_id, terms, now, actor))

    def head(self, contract_id: str, *, for_update: bool = False) -> ContractHead | None:
        query = select(ContractRow).where(ContractRow.id == contract_id)
        row = self.session.scalars(query.with_for_update() if for_update else query).one_or_none()
        return None if row is None else ContractHead(row.tenant_id, row.current_version, row.renewal_decision)

    def set_renewal_decision(self, contract_id: str, decision: dict[str, Any]) -> None:
        self.session.get_one(ContractRow, contract_id).renewal_decision = decision

    def obligation(self, contract_id: str, obligation_id: str) -> ObligationRecord | None:
        row = self.session.get(ObligationStateRow, (contract_id, obligation_id))
        return None if row is None else ObligationRecord(row.status, row.completed_at, row.updated_at)

    def put_obligation(self, contract_id: str, obligation_id: str, *, status: str, completed_at: datetime | None,
                       source_system: str | None, event_type: str, details: dict[str, Any], at: datetime) -> None:
        values = {"status": status, "completed_at": completed_at, "source_system": source_system,
                  "last_event_type": event_type, "details": details, "updated_at": at}
        self.session.execute(pg_insert(ObligationStateRow)
                             .values(contract_id=contract_id, obligation_id=obligation_id, **values)
                             .on_conflict_do_update(index_elements=["contract_id", "obligation_id"], set_=values))

    def audit(self, entry: AuditEntry) -> None:
        self.session.add(AuditRow(tenant_id=entry.tenant_id, contract_id=entry.contract_id, action=entry.action,
                                  actor=entry.actor, request_id=entry.request_id, version=entry.version,
                                  at=entry.at, details=entry.details))

    def audit_log(self, tenant_id: str, contract_id: str) -> list[dict[str, Any]] | None:
        exists = self.session.scalar(select(ContractRow.id).where(ContractRow.id == contract_id,
                                                                  ContractRow.tenant_id == tenant_id))
        if exists is None:
            return None
        rows = self.session.scalars(select(AuditRow).where(AuditRow.tenant_id == tenant_id,
                                                           AuditRow.contract_id == contract_id)
                                    .order_by(AuditRow.id)).all()
        return [{"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action, "version": r.version,
                 "request_id": r.request_id, "details": r.details} for r in rows]

    def enqueue(self, record: OutboxRecord) -> None:
        self.session.add(OutboxRow(**_outbox_values(record)))

    # ---- bulk import: one multi-row INSERT per table and batch ------------------------------------

    def claim_keys(self, tenant_id: str, claims: list[KeyClaim], at: datetime) -> set[str]:
        if not claims:
            return set()
        # One statement over arrays (compiled once, whatever the batch size). ON CONFLICT waits for a
        # concurrent transaction holding the same key, then skips it: race-free.
        taken = self.session.execute(text(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, contract_id, status_code, created_at) "
            "SELECT :tenant, k, h, c, 201, :at FROM unnest(CAST(:keys AS text[]), CAST(:hashes AS text[]), "
            "CAST(:cids AS text[])) AS t(k, h, c) ON CONFLICT DO NOTHING RETURNING key"),
            {"tenant": tenant_id, "at": at, "keys": [c.key for c in claims],
             "hashes": [c.request_hash for c in claims], "cids": [c.contract_id for c in claims]}).scalars().all()
        return set(taken)

    def idempotency_keys(self, tenant_id: str, keys: list[str]) -> dict[str, tuple[str, str]]:
        if not keys:
            return {}
        rows = self.session.execute(select(IdempotencyKeyRow.key, IdempotencyKeyRow.request_hash,
                                           IdempotencyKeyRow.contract_id)
                                    .where(IdempotencyKeyRow.tenant_id == tenant_id,
                                           IdempotencyKeyRow.key.in_(keys))).all()
        return {key: (request_hash, contract_id) for key, request_hash, contract_id in rows}

    def add_many(self, snapshots: list[ContractSnapshot], *, now: datetime, actor: str) -> None:
        rows = [{"id": s.contract_id, "tenant_id": s.tenant_id, "created_at": now, **_header(s)} for s in snapshots]
        for row in rows:
            for name in ("counterparty", "owner", "backup_owner"):
                row[name] = None if row[name] is None else json.dumps(row[name])
        self._copy("contracts", rows)
        self._copy("contract_versions", [_version_values(s.contract_id, t, now, actor, as_text=True)
                                         for s in snapshots for t in s.versions])

    def audit_many(self, entries: list[AuditEntry]) -> None:
        self._copy("audit_log", [
            {"tenant_id": e.tenant_id, "contract_id": e.contract_id, "action": e.action, "actor": e.actor,
             "request_id": e.request_id, "version": e.version, "at": e.at, "details": json.dumps(e.details)}
            for e in entries])

    def enqueue_many(self, records: list[OutboxRecord]) -> None:
        rows = [_outbox_values(r) for r in records]
        for row in rows:
            row["headers"] = json.dumps(row["headers"])
        self._copy("outbox", rows)

    def _copy(self, table: str, rows: list[dict[str, Any]]) -> None:
        """COPY rows (same keys each, JSON columns as text) in the session's transaction: the fastest bulk path."""
        if not rows:
            return
        columns = list(rows[0])
        conn = self.session.connection().connection.driver_connection
        assert conn is not None, "the session's connection is checked out for this transaction"
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])

    def add_import(self, state: ImportState) -> None:
        self.session.add(ImportRow(id=state.id, tenant_id=state.tenant_id, actor=state.actor,
                                   received=state.received, created=state.created, existing=state.existing,
                                   rejected=state.rejected, rejections=state.rejections,
                                   created_at=state.created_at, updated_at=state.updated_at))

    def get_import(self, tenant_id: str, import_id: str, *, for_update: bool = False) -> ImportState | None:
        query = select(ImportRow).where(ImportRow.id == import_id, ImportRow.tenant_id == tenant_id)
        row = self.session.scalars(query.with_for_update() if for_update else query).one_or_none()
        if row is None:
            return None
        return ImportState(row.id, row.tenant_id, row.actor, row.created_at, row.updated_at, row.received,
                           row.created, row.existing, row.rejected, list(row.rejections))

    def save_import(self, state: ImportState) -> None:
        row = self.session.get_one(ImportRow, state.id)
        row.received, row.created, row.existing = state.received, state.created, state.existing
        row.rejected, row.rejections, row.updated_at = state.rejected, list(state.rejections), state.updated_at

    def idempotency_key(self, tenant_id: str, key: str) -> tuple[str, str] | None:
        row = self.session.get(IdempotencyKeyRow, (tenant_id, key))
        return None if row is None else (row.request_hash, row.contract_id)

    def remember_key(self, tenant_id: str, key: str, *, request_hash: str, contract_id: str, at: datetime) -> None:
        self.session.add(IdempotencyKeyRow(tenant_id=tenant_id, key=key, request_hash=request_hash,
                                           contract_id=contract_id, status_code=201, created_at=at))

    def first_delivery(self, event_id: str, kind: str, at: datetime) -> bool:
        first = self.session.execute(pg_insert(ProcessedEventRow).values(event_id=event_id, topic=kind, processed_at=at)
                                     .on_conflict_do_nothing().returning(ProcessedEventRow.event_id)).first()
        return first is not None

    def page(self, tenant_id: str, where: ContractFilter, *, after: int | None,
             limit: int) -> list[tuple[int, dict[str, Any]]]:
        query = select(ContractRow).where(ContractRow.tenant_id == tenant_id)
        if where.status:
            query = query.where(ContractRow.status == where.status)
        if where.counterparty:
            query = query.where(ContractRow.counterparty_id == where.counterparty)
        if where.owner:
            query = query.where(ContractRow.owner_email == where.owner)
        if where.ending_before:
            query = query.where(ContractRow.end_date < where.ending_before)
        if where.tag:
            query = query.where(ContractRow.tags.contains([where.tag]))
        if after is not None:
            query = query.where(ContractRow.seq > after)
        rows = self.session.scalars(query.order_by(ContractRow.seq).limit(limit)).all()
        return [(r.seq, {"contract_id": r.id, "title": r.title, "status": r.status, "counterparty": r.counterparty,
                         "owner": r.owner, "tags": list(r.tags), "version": r.current_version,
                         "currency": r.currency, "end_date": r.end_date.isoformat() if r.end_date else None,
                         "updated_at": r.updated_at.isoformat()}) for r in rows]

    def due(self, before: date, limit: int) -> list[tuple[str, str]]:
        # A partial index holds only running contracts with an end date: the cost is the number due.
        rows = self.session.execute(
            select(ContractRow.id, ContractRow.tenant_id)
            .where(ContractRow.status.in_(["active", "renewed"]), ContractRow.end_date.is_not(None),
                   ContractRow.end_date < before)
            .order_by(ContractRow.end_date).limit(limit)).all()
        return [(contract_id, tenant) for contract_id, tenant in rows]


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
    return ContractVersionRow(**_version_values(contract_id, terms, now, actor))


def _version_values(contract_id: str, terms: ContractTerms, now: datetime, actor: str,
                    as_text: bool = False) -> dict[str, Any]:
    """The row's values; `as_text` gives the terms as JSON text (for COPY)."""
    return {"contract_id": contract_id, "version": terms.version, "effective_from": terms.effective_from,
            "effective_date": terms.effective_date, "end_date": terms.end_date, "currency": terms.currency,
            "total_value": terms.total_value, "reason": terms.reason,
            "terms": terms.model_dump_json() if as_text else terms.model_dump(mode="json"),
            "created_at": now, "created_by": actor}


def _outbox_values(record: OutboxRecord) -> dict[str, Any]:
    r = record.record
    return {"id": record.id, "tenant_id": record.tenant_id, "aggregate_id": record.aggregate_id,
            "topic": record.topic, "ce_type": record.ce_type, "key": r.key.decode(), "value": r.value.decode(),
            "headers": [[k, v.decode()] for k, v in r.headers], "created_at": record.created_at}
