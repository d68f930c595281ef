"""In-memory stand-ins for the registry's storage, for service-layer tests that run in milliseconds.

They keep what the service layer relies on (tenant scoping, versions, obligation states, the audit
log, the outbox, idempotency keys, inbound dedup, rollback of an uncommitted unit of work), not
PostgreSQL's locking: the real repository is proven by the integration tests."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from contract_schema.contract import ContractSnapshot, ObligationState

from .ports import (
    AuditEntry,
    ContractFilter,
    ContractHead,
    DuplicateKey,
    ImportState,
    KeyClaim,
    ObligationRecord,
    OutboxRecord,
)

if TYPE_CHECKING:
    from .ports import ContractRepository, UnitOfWork

RUNNING = ("active", "renewed")


@dataclass
class _Obligation:
    record: ObligationRecord
    source_system: str | None
    event_type: str
    details: dict[str, Any]


@dataclass
class FakeContractRepository:
    contracts: dict[str, ContractSnapshot] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    obligations: dict[tuple[str, str], _Obligation] = field(default_factory=dict)
    audits: list[AuditEntry] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)
    keys: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    processed: set[str] = field(default_factory=set)
    imports: dict[str, ImportState] = field(default_factory=dict)

    def _snapshot(self, contract_id: str) -> ContractSnapshot:
        states = tuple(ObligationState(obligation_id=oid, status=o.record.status, completed_at=o.record.completed_at,
                                       source_system=o.source_system)
                       for (cid, oid), o in sorted(self.obligations.items()) if cid == contract_id)
        return self.contracts[contract_id].model_copy(update={"obligation_states": states})

    def get(self, tenant_id: str, contract_id: str, *, for_update: bool = False) -> ContractSnapshot | None:
        found = self.contracts.get(contract_id)
        return None if found is None or found.tenant_id != tenant_id else self._snapshot(contract_id)

    def add(self, snapshot: ContractSnapshot, *, now: datetime, actor: str) -> None:
        if snapshot.contract_id in self.contracts:
            raise DuplicateKey(snapshot.contract_id)
        self.contracts[snapshot.contract_id] = snapshot
        self.seq[snapshot.contract_id] = len(self.seq) + 1

    def update(self, before: ContractSnapshot, after: ContractSnapshot, *, now: datetime, actor: str) -> None:
        self.contracts[after.contract_id] = after

    def head(self, contract_id: str, *, for_update: bool = False) -> ContractHead | None:
        found = self.contracts.get(contract_id)
        if found is None:
            return None
        return ContractHead(found.tenant_id, found.current.version, self.decisions.get(contract_id))

    def set_renewal_decision(self, contract_id: str, decision: dict[str, Any]) -> None:
        self.decisions[contract_id] = decision

    def obligation(self, contract_id: str, obligation_id: str) -> ObligationRecord | None:
        found = self.obligations.get((contract_id, obligation_id))
        return None if found is None else found.record

    def put_obligation(self, contract_id: str, obligation_id: str, *, status: str, completed_at: datetime | None,
                       source_system: str | None, event_type: str, details: dict[str, Any], at: datetime) -> None:
        self.obligations[(contract_id, obligation_id)] = _Obligation(ObligationRecord(status, completed_at, at),
                                                                     source_system, event_type, details)

    def audit(self, entry: AuditEntry) -> None:
        self.audits.append(entry)

    def audit_log(self, tenant_id: str, contract_id: str) -> list[dict[str, Any]] | None:
        if self.get(tenant_id, contract_id) is None:
            return None
        return [{"id": n, "at": a.at.isoformat(), "actor": a.actor, "action": a.action, "version": a.version,
                 "request_id": a.request_id, "details": a.details}
                for n, a in enumerate(self.audits, 1) if a.contract_id == contract_id and a.tenant_id == tenant_id]

    def enqueue(self, record: OutboxRecord) -> None:
        self.outbox.append(record)

    def idempotency_key(self, tenant_id: str, key: str) -> tuple[str, str] | None:
        return self.keys.get((tenant_id, key))

    def remember_key(self, tenant_id: str, key: str, *, request_hash: str, contract_id: str, at: datetime) -> None:
        if (tenant_id, key) in self.keys:
            raise DuplicateKey(key)
        self.keys[(tenant_id, key)] = (request_hash, contract_id)

    def claim_keys(self, tenant_id: str, claims: list[KeyClaim], at: datetime) -> set[str]:
        taken = set()
        for c in claims:
            if (tenant_id, c.key) not in self.keys:
                self.keys[(tenant_id, c.key)] = (c.request_hash, c.contract_id)
                taken.add(c.key)
        return taken

    def idempotency_keys(self, tenant_id: str, keys: list[str]) -> dict[str, tuple[str, str]]:
        return {k: self.keys[(tenant_id, k)] for k in keys if (tenant_id, k) in self.keys}

    def add_many(self, snapshots: list[ContractSnapshot], *, now: datetime, actor: str) -> None:
        for snapshot in snapshots:
            self.add(snapshot, now=now, actor=actor)

    def audit_many(self, entries: list[AuditEntry]) -> None:
        self.audits.extend(entries)

    def enqueue_many(self, records: list[OutboxRecord]) -> None:
        self.outbox.extend(records)

    def add_import(self, state: ImportState) -> None:
        self.imports[state.id] = copy.deepcopy(state)

    def get_import(self, tenant_id: str, import_id: str, *, for_update: bool = False) -> ImportState | None:
        found = self.imports.get(import_id)
        return None if found is None or found.tenant_id != tenant_id else copy.deepcopy(found)

    def save_import(self, state: ImportState) -> None:
        self.imports[state.id] = copy.deepcopy(state)

    def first_delivery(self, event_id: str, kind: str, at: datetime) -> bool:
        if event_id in self.processed:
            return False
        self.processed.add(event_id)
        return True

    def page(self, tenant_id: str, where: ContractFilter, *, after: int | None,
             limit: int) -> list[tuple[int, dict[str, Any]]]:
        def matches(s: ContractSnapshot) -> bool:
            end = s.current.end_date
            return (s.tenant_id == tenant_id and where.status in (None, s.status.value)
                    and where.counterparty in (None, s.counterparty.party_id)
                    and where.owner in (None, s.owner.email) and where.tag in (None, *s.tags)
                    and (where.ending_before is None or (end is not None and end < where.ending_before)))

        rows = sorted((self.seq[cid], s) for cid, s in self.contracts.items()
                      if matches(s) and (after is None or self.seq[cid] > after))
        return [(n, {"contract_id": s.contract_id, "title": s.title, "status": s.status.value,
                     "counterparty": s.counterparty.model_dump(mode="json"), "owner": s.owner.model_dump(mode="json"),
                     "tags": list(s.tags), "version": s.current.version, "currency": s.current.currency,
                     "end_date": s.current.end_date.isoformat() if s.current.end_date else None,
                     "updated_at": s.updated_at.isoformat()}) for n, s in rows[:limit]]

    def due(self, before: date, limit: int) -> list[tuple[str, str]]:
        due = sorted((s.current.end_date, s.contract_id, s.tenant_id) for s in self.contracts.values()
                     if s.status.value in RUNNING and s.current.end_date is not None and s.current.end_date < before)
        return [(cid, tenant) for _, cid, tenant in due[:limit]]


class FakeUnitOfWork:
    """Implements ports.UnitOfWork over one FakeContractRepository; changes not committed are undone."""

    def __init__(self, contracts: FakeContractRepository | None = None) -> None:
        self.contracts = contracts or FakeContractRepository()
        self.commits = 0

    def __call__(self) -> Self:  # the registry asks its factory for a unit of work per transaction
        return self

    def __enter__(self) -> Self:
        self._before = copy.deepcopy(self.contracts.__dict__)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.contracts.__dict__.update(self._before)  # roll back whatever was not committed

    def commit(self) -> None:
        self.commits += 1
        self._before = copy.deepcopy(self.contracts.__dict__)


if TYPE_CHECKING:
    def _implements(uow: FakeUnitOfWork, repo: FakeContractRepository) -> tuple[UnitOfWork, ContractRepository]:
        return uow, repo  # mypy checks the fakes against the ports here
