"""What the service layer needs of its storage: one unit of work (a transaction) holding the contract
repository. PostgreSQL through SQLAlchemy (adapters/repository.py, adapters/unit_of_work.py) in
production, in-memory fakes (adapters/fakes.py) in the service-layer tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from types import TracebackType
from typing import Any, Protocol, Self

from contract_schema.codec import Record
from contract_schema.contract import ContractSnapshot


class DuplicateKey(Exception):
    """A unique key was taken by a concurrent transaction (e.g. the same Idempotency-Key twice at once)."""


@dataclass(frozen=True)
class ContractHead:
    """What an inbound event needs to know of a contract (looked up by id alone)."""

    tenant_id: str
    version: int
    renewal_decision: dict[str, Any] | None


@dataclass(frozen=True)
class ObligationRecord:
    status: str
    completed_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    tenant_id: str
    contract_id: str
    action: str
    actor: str
    request_id: str | None
    version: int
    at: datetime
    details: dict[str, Any]


@dataclass(frozen=True)
class OutboxRecord:
    """One Kafka record, already encoded; its id is the record's ce_id, so a re-send keeps its identity."""

    id: uuid.UUID
    tenant_id: str
    aggregate_id: str
    topic: str
    ce_type: str
    record: Record
    created_at: datetime


@dataclass(frozen=True)
class KeyClaim:
    """An idempotency key an imported record claims for the contract it would create."""

    key: str
    request_hash: str
    contract_id: str


@dataclass
class ImportState:
    """An import (POST /v1/contracts:import and its further parts): what was received and what became of it."""

    id: str
    tenant_id: str
    actor: str
    created_at: datetime
    updated_at: datetime
    received: int = 0
    created: int = 0
    existing: int = 0  # records imported before (same key, same content): no new contract
    rejected: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_REJECTIONS_KEPT

    @property
    def pending(self) -> int:
        return self.received - self.created - self.existing - self.rejected


@dataclass(frozen=True)
class ContractFilter:
    status: str | None = None
    counterparty: str | None = None  # party id
    owner: str | None = None  # e-mail
    ending_before: date | None = None
    tag: str | None = None


class ContractRepository(Protocol):
    """Every method runs inside the unit of work's transaction."""

    def get(self, tenant_id: str, contract_id: str, *, for_update: bool = False) -> ContractSnapshot | None:
        """The contract, or None when it does not exist *for this tenant*. `for_update` locks it until the
        end of the transaction: every change to one contract is serialised, so outbox order = commit order."""
        ...

    def add(self, snapshot: ContractSnapshot, *, now: datetime, actor: str) -> None: ...

    def update(self, before: ContractSnapshot, after: ContractSnapshot, *, now: datetime, actor: str) -> None: ...

    def head(self, contract_id: str, *, for_update: bool = False) -> ContractHead | None: ...

    def set_renewal_decision(self, contract_id: str, decision: dict[str, Any]) -> None: ...

    def obligation(self, contract_id: str, obligation_id: str) -> ObligationRecord | None: ...

    def put_obligation(self, contract_id: str, obligation_id: str, *, status: str, completed_at: datetime | None,
                       source_system: str | None, event_type: str, details: dict[str, Any], at: datetime) -> None: ...

    def audit(self, entry: AuditEntry) -> None: ...

    def audit_log(self, tenant_id: str, contract_id: str) -> list[dict[str, Any]] | None:
        """The contract's audit entries, oldest first; None when there is no such contract for the tenant."""
        ...

    def enqueue(self, record: OutboxRecord) -> None: ...

    def idempotency_key(self, tenant_id: str, key: str) -> tuple[str, str] | None:
        """(request hash, contract id) of the create that used this key first."""
        ...

    def remember_key(self, tenant_id: str, key: str, *, request_hash: str, contract_id: str, at: datetime) -> None:
        ...

    def claim_keys(self, tenant_id: str, claims: list[KeyClaim], at: datetime) -> set[str]:
        """Insert the keys not taken yet (waiting for a concurrent transaction holding one); the ones inserted."""
        ...

    def idempotency_keys(self, tenant_id: str, keys: list[str]) -> dict[str, tuple[str, str]]:
        """key -> (request hash, contract id) for those of `keys` that are taken."""
        ...

    def add_many(self, snapshots: list[ContractSnapshot], *, now: datetime, actor: str) -> None:
        """New contracts in one statement per table (an import's batch)."""
        ...

    def audit_many(self, entries: list[AuditEntry]) -> None: ...

    def enqueue_many(self, records: list[OutboxRecord]) -> None: ...

    def add_import(self, state: ImportState) -> None: ...

    def get_import(self, tenant_id: str, import_id: str, *, for_update: bool = False) -> ImportState | None: ...

    def save_import(self, state: ImportState) -> None: ...

    def first_delivery(self, event_id: str, kind: str, at: datetime) -> bool:
        """Record an inbound ce_id; False when it was processed before."""
        ...

    def page(self, tenant_id: str, where: ContractFilter, *, after: int | None,
             limit: int) -> list[tuple[int, dict[str, Any]]]:
        """(position, summary) of up to `limit` contracts in creation order after position `after`."""
        ...

    def due(self, before: date, limit: int) -> list[tuple[str, str]]:
        """(contract id, tenant) of running contracts whose end date is before `before`, earliest first."""
        ...


class UnitOfWork(Protocol):
    """One transaction: `with uow: ...; uow.commit()`; leaving the block without commit rolls back."""

    @property
    def contracts(self) -> ContractRepository: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def commit(self) -> None:
        """Commit; raises DuplicateKey when a unique key was taken meanwhile. Wakes the relays when
        outbox records were written."""
        ...
