"""The service layer: one unit of work (transaction) per command, the change, its audit entry and its
outbox records together.

The HTTP API calls the commands and queries of `Registry`; the inbound consumer calls `handle`, and
HANDLERS (at the end) says what happens on each event type the registry consumes."""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from contract_schema.base import Event
from contract_schema.codec import Envelope, encode
from contract_schema.contract import ContractSnapshot
from contract_schema.obligation import (
    ObligationCancelled,
    ObligationCompleted,
    ObligationDueSoon,
    ObligationEscalated,
    ObligationEvent,
    ObligationOverdue,
    ObligationScheduled,
    ObligationWaived,
    SlaBreached,
    SlaMeasured,
)
from contract_schema.renewal import RenewalDecision
from mesh_common.clock import Clock
from mesh_common.tracing import current_traceparent

from .adapters.ports import AuditEntry, ContractFilter, ContractHead, DuplicateKey, OutboxRecord, UnitOfWork
from .domain import contracts
from .domain.model import Amendment, ContractDraft, MilestoneCompletion, Renewal, Termination
from .settings import SOURCE, RegistrySettings

log = logging.getLogger(__name__)

# What an inbound handler did: (audit action, details), or None when the event changed nothing.
Applied = tuple[str, dict[str, Any]] | None


class NotFound(Exception):
    pass


class PreconditionFailed(Exception):
    """If-Match does not match the current version (HTTP 412)."""


class PreconditionRequired(Exception):
    """If-Match missing where it is mandatory (HTTP 428)."""


class IdempotencyKeyReused(Exception):
    """Same Idempotency-Key, different request body (HTTP 422)."""


@dataclass(frozen=True)
class Caller:
    subject: str
    tenant: str
    request_id: str | None = None


@dataclass(frozen=True)
class CreateResult:
    snapshot: ContractSnapshot
    replayed: bool


@dataclass(frozen=True)
class ContractPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def etag_matches(if_match: str, version: int) -> bool:
    """If-Match may list several tags, weak or strong, or `*`."""
    for tag in (t.strip() for t in if_match.split(",")):
        if tag == "*" or tag.removeprefix("W/").strip('"') == str(version):
            return True
    return False


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("cursor is not one this service issued") from exc


class Registry:
    def __init__(self, uow: Callable[[], UnitOfWork], settings: RegistrySettings, clock: Clock) -> None:
        self.uow = uow  # a new unit of work per transaction: HTTP threads, the consumer and the sweeper share this
        self.settings = settings
        self.clock = clock

    # ---- commands -------------------------------------------------------------------------------

    def create(self, caller: Caller, draft: ContractDraft, idempotency_key: str | None = None) -> CreateResult:
        request_hash = hashlib.sha256(draft.model_dump_json().encode()).hexdigest()
        if idempotency_key:
            earlier = self._replay(caller, idempotency_key, request_hash)
            if earlier is not None:
                return earlier
        try:
            return self._create(caller, draft, idempotency_key, request_hash)
        except DuplicateKey:
            # A concurrent retry with the same key committed first: answer with its result.
            if idempotency_key:
                earlier = self._replay(caller, idempotency_key, request_hash)
                if earlier is not None:
                    return earlier
            raise

    def _replay(self, caller: Caller, key: str, request_hash: str) -> CreateResult | None:
        with self.uow() as uow:
            first = uow.contracts.idempotency_key(caller.tenant, key)
            if first is None:
                return None
            if first[0] != request_hash:
                raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was used for a different request body")
            snapshot = uow.contracts.get(caller.tenant, first[1])
            assert snapshot is not None
            return CreateResult(snapshot, replayed=True)

    def _create(self, caller: Caller, draft: ContractDraft, key: str | None, request_hash: str) -> CreateResult:
        now = self.clock.now()
        change = contracts.create(draft, contract_id=str(uuid.uuid4()), tenant_id=caller.tenant, now=now)
        with self.uow() as uow:
            if key:
                uow.contracts.remember_key(caller.tenant, key, request_hash=request_hash,
                                           contract_id=change.snapshot.contract_id, at=now)
            uow.contracts.add(change.snapshot, now=now, actor=caller.subject)
            self._record(uow, caller, change, now)
            uow.commit()
        return CreateResult(change.snapshot, replayed=False)

    def amend(self, caller: Caller, contract_id: str, amendment: Amendment, if_match: str | None) -> ContractSnapshot:
        if not if_match:
            raise PreconditionRequired("If-Match is required to amend a contract (use the ETag of your last read)")
        return self._mutate(caller, contract_id, if_match, lambda s, now: contracts.amend(s, amendment, now=now))

    def activate(self, caller: Caller, contract_id: str, if_match: str | None) -> ContractSnapshot:
        return self._mutate(caller, contract_id, if_match, lambda s, now: contracts.activate(s, now=now))

    def terminate(self, caller: Caller, contract_id: str, termination: Termination,
                  if_match: str | None) -> ContractSnapshot:
        return self._mutate(caller, contract_id, if_match,
                            lambda s, now: contracts.terminate(s, termination, now=now))

    def renew(self, caller: Caller, contract_id: str, renewal: Renewal, if_match: str | None) -> ContractSnapshot:
        return self._mutate(caller, contract_id, if_match, lambda s, now: contracts.renew(s, renewal, now=now))

    def _mutate(self, caller: Caller, contract_id: str, if_match: str | None,
                step: Callable[[ContractSnapshot, datetime], contracts.Change]) -> ContractSnapshot:
        now = self.clock.now()
        with self.uow() as uow:
            before = uow.contracts.get(caller.tenant, contract_id, for_update=True)
            if before is None:
                raise NotFound(contract_id)
            if if_match and not etag_matches(if_match, before.current.version):
                raise PreconditionFailed(f"If-Match {if_match} does not match the current version "
                                         f"\"{before.current.version}\"")
            change = step(before, now)
            uow.contracts.update(before, change.snapshot, now=now, actor=caller.subject)
            self._record(uow, caller, change, now)
            uow.commit()
        return change.snapshot

    def _record(self, uow: UnitOfWork, caller: Caller, change: contracts.Change, now: datetime) -> None:
        """Audit entry plus the outbox records (full snapshot, then the change event), same transaction."""
        snap = change.snapshot
        uow.contracts.audit(AuditEntry(snap.tenant_id, snap.contract_id, change.action, caller.subject,
                                       caller.request_id, snap.current.version, now, change.details))
        for record in self.outbox_records(change, now, current_traceparent()):
            uow.contracts.enqueue(record)

    def outbox_records(self, change: contracts.Change, now: datetime, traceparent: str | None) -> list[OutboxRecord]:
        """What a change publishes: the full snapshot, then the change event (a bulk import uses this too)."""
        snap = change.snapshot
        out = [_outbox(snap, self.settings.state_topic, snap.tenant_id, now, traceparent)]
        if change.event is not None:
            out.append(_outbox(change.event, self.settings.events_topic, snap.tenant_id, now, traceparent))
        return out

    def complete_obligation(self, caller: Caller, contract_id: str, obligation_id: str,
                            body: MilestoneCompletion) -> tuple[ContractSnapshot, bool]:
        """Record a contract-side completion and publish MilestoneCompleted(origin=contract) for the engine.

        Returns (snapshot, created); completing an already completed obligation publishes nothing.
        """
        now = self.clock.now()
        with self.uow() as uow:
            snap = uow.contracts.get(caller.tenant, contract_id, for_update=True)
            if snap is None:
                raise NotFound(contract_id)
            existing = uow.contracts.obligation(contract_id, obligation_id)
            if existing is not None and existing.status == "completed":
                return snap, False
            state, event = contracts.complete_milestone(snap, obligation_id, now=now, evidence_ref=body.evidence_ref)
            uow.contracts.put_obligation(contract_id, obligation_id, status=state.status, completed_at=now,
                                         source_system=state.source_system, event_type=event.ce_type,
                                         details={"evidence_ref": body.evidence_ref}, at=now)
            uow.contracts.audit(AuditEntry(snap.tenant_id, contract_id, "obligation-completed", caller.subject,
                                           caller.request_id, snap.current.version, now,
                                           {"obligation_id": obligation_id, "evidence_ref": body.evidence_ref}))
            uow.contracts.enqueue(_outbox(event, self.settings.performance_topic, snap.tenant_id, now,
                                          current_traceparent()))
            after = uow.contracts.get(caller.tenant, contract_id)
            assert after is not None
            uow.commit()
            return after, True

    def expire_due(self, limit: int = 100) -> int:
        """Expire (or auto-renew) running contracts past their end date. Returns how many changed.

        Reads only the due contracts (a partial index on end_date), so the cost is the number due,
        not the number of contracts. Safe on every replica at once: each change re-checks under the
        contract's row lock, so a second sweeper finds nothing left to do.
        """
        now = self.clock.now()
        horizon = now.date() + timedelta(days=1)  # no time zone is more than a day ahead of UTC
        changed = 0
        while True:
            with self.uow() as uow:
                due = uow.contracts.due(horizon, limit)
            round_changed = sum(self._lapse(Caller(subject="contract-registry/expiry", tenant=tenant), contract_id,
                                            now) for contract_id, tenant in due)
            changed += round_changed
            if len(due) < limit or round_changed < len(due):
                # Either all due ones are done, or the rest are not due yet in their own time zone
                # (or were auto-renewed into a term that is also past: the next sweep continues).
                return changed

    def _lapse(self, caller: Caller, contract_id: str, now: datetime) -> bool:
        with self.uow() as uow:
            before = uow.contracts.get(caller.tenant, contract_id, for_update=True)
            if before is None:
                return False
            head = uow.contracts.head(contract_id)
            decision = head.renewal_decision if head else None
            change = contracts.lapse(before, now=now, renewal_decision=(decision or {}).get("decision"))
            if change is None:
                return False
            uow.contracts.update(before, change.snapshot, now=now, actor=caller.subject)
            self._record(uow, caller, change, now)
            uow.commit()
            return True

    # ---- queries --------------------------------------------------------------------------------

    def get(self, tenant: str, contract_id: str, as_of: date | None = None) -> tuple[ContractSnapshot,
                                                                                      dict[str, Any] | None]:
        with self.uow() as uow:
            snap = uow.contracts.get(tenant, contract_id)
            if snap is None:
                raise NotFound(contract_id)
            head = uow.contracts.head(contract_id)
            decision = head.renewal_decision if head else None
        if as_of is not None:
            old = contracts.as_of(snap, as_of)
            if old is None:
                raise NotFound(f"{contract_id} had no version in force on {as_of}")
            snap = old
        return snap, decision

    def list_contracts(self, tenant: str, *, status: str | None = None, counterparty: str | None = None,
                       owner: str | None = None, ending_before: date | None = None, tag: str | None = None,
                       limit: int = 50, cursor: str | None = None) -> ContractPage:
        where = ContractFilter(status, counterparty, owner, ending_before, tag)
        after = decode_cursor(cursor) if cursor else None
        with self.uow() as uow:
            rows = uow.contracts.page(tenant, where, after=after, limit=limit + 1)
        page = rows[:limit]
        return ContractPage([item for _, item in page], encode_cursor(page[-1][0]) if len(rows) > limit else None)

    def audit_log(self, tenant: str, contract_id: str) -> list[dict[str, Any]]:
        with self.uow() as uow:
            entries = uow.contracts.audit_log(tenant, contract_id)
        if entries is None:
            raise NotFound(contract_id)
        return entries

    # ---- inbound events (HANDLERS at the end) -----------------------------------------------------

    def handle(self, envelope: Envelope) -> bool:
        """Apply an inbound event once per ce_id. Returns False for a duplicate or an event that changed
        nothing (unknown contract, another tenant's, older than what is known). An event of a type
        the registry does not consume is bad data: ValueError, so the consumer dead-letters it."""
        handler = HANDLERS.get(type(envelope.event))
        if handler is None:
            expected = ", ".join(t.__name__ for t in HANDLERS)
            raise ValueError(f"expected one of {expected}, got {type(envelope.event).__name__}")
        event: ObligationEvent | RenewalDecision = envelope.event  # type: ignore[assignment]  # a HANDLERS key
        now = self.clock.now()
        with self.uow() as uow:
            if not uow.contracts.first_delivery(envelope.id, type(event).__name__, now):
                return False
            head = uow.contracts.head(event.contract_id, for_update=True)
            applied: Applied = None
            if head is None or head.tenant_id != event.tenant_id:
                log.warning("ignoring %s for unknown contract %s (tenant %s)", envelope.type, event.contract_id,
                            event.tenant_id)
            else:
                applied = handler(self, uow, envelope, event, head)
            if head is not None and applied is not None:
                action, details = applied
                uow.contracts.audit(AuditEntry(head.tenant_id, event.contract_id, action, envelope.source,
                                               envelope.id, head.version, now, details))
            uow.commit()  # the dedup id too: a redelivery of an ignored event is ignored at once
        return applied is not None

    def on_renewal_decision(self, uow: UnitOfWork, envelope: Envelope, event: RenewalDecision,
                            head: ContractHead) -> Applied:
        previous = head.renewal_decision
        if previous and datetime.fromisoformat(previous["decided_at"]) > event.decided_at:
            return None  # an older decision arriving late does not replace a newer one
        uow.contracts.set_renewal_decision(event.contract_id, event.model_dump(mode="json") | {"event_id": envelope.id})
        return "renewal-decision", {"decision": event.decision.value, "event_id": envelope.id}

    def on_completed(self, uow: UnitOfWork, envelope: Envelope, event: ObligationCompleted,
                     _head: ContractHead) -> Applied:
        return self._obligation(uow, envelope, event, "completed",
                                {"on_time": event.on_time, "origin": event.origin.value,
                                 "evidence_ref": event.evidence_ref},
                                completed_at=event.completed_at, source_system=event.source_system)

    def on_sla_measured(self, uow: UnitOfWork, envelope: Envelope, event: SlaMeasured,
                        _head: ContractHead) -> Applied:
        return self._obligation(uow, envelope, event, "sla-met" if event.met else "sla-missed", _sla(event))

    def on_sla_breached(self, uow: UnitOfWork, envelope: Envelope, event: SlaBreached,
                        _head: ContractHead) -> Applied:
        return self._obligation(uow, envelope, event, "sla-breached",
                                _sla(event) | {"service_credit": str(event.service_credit),
                                               "currency": event.currency})

    def _obligation(self, uow: UnitOfWork, envelope: Envelope, event: ObligationEvent, status: str,
                    extra: dict[str, Any], *, completed_at: datetime | None = None,
                    source_system: str | None = None) -> Applied:
        current = uow.contracts.obligation(event.contract_id, event.obligation_id)
        if current is not None and current.updated_at > event.occurred_at:
            return None  # an older status arriving late does not replace a newer one
        details = {"instance_id": event.instance_id,
                   "due_at": event.due_at.isoformat() if event.due_at else None} | extra
        uow.contracts.put_obligation(event.contract_id, event.obligation_id, status=status,
                                     completed_at=completed_at or (current.completed_at if current else None),
                                     source_system=source_system or envelope.source,
                                     event_type=envelope.type, details=details, at=event.occurred_at)
        return f"obligation-{status}", details


def _outbox(event: Event, topic: str, tenant_id: str, now: datetime, traceparent: str | None) -> OutboxRecord:
    """One outbox record; its id is the record's ce_id, so a re-send keeps its identity."""
    event_id = uuid.uuid4()
    record = encode(event, source=SOURCE, event_id=str(event_id), time=now, traceparent=traceparent)
    return OutboxRecord(event_id, tenant_id, event.key, topic, event.ce_type, record, now)


def _sla(event: SlaMeasured | SlaBreached) -> dict[str, Any]:
    return {"metric": event.metric, "measured": str(event.measured), "target": str(event.target),
            "window_end": event.window_end.isoformat()}


def _status(status: str) -> Callable[[Registry, UnitOfWork, Envelope, Any, ContractHead], Applied]:
    """The handler of an obligation event that only moves the obligation's status."""
    def handler(registry: Registry, uow: UnitOfWork, envelope: Envelope, event: ObligationEvent,
                _head: ContractHead) -> Applied:
        return registry._obligation(uow, envelope, event, status, {})
    return handler


# What happens on each event type the registry consumes (clm.obligation.events.v1, crm.renewal.decision.v1).
# Inbound updates publish nothing by themselves: the next contract change carries them.
HANDLERS: Mapping[type, Callable[[Registry, UnitOfWork, Envelope, Any, ContractHead], Applied]] = {
    ObligationScheduled: _status("scheduled"),
    ObligationDueSoon: _status("due-soon"),
    ObligationOverdue: _status("overdue"),
    ObligationEscalated: _status("escalated"),
    ObligationCompleted: Registry.on_completed,
    ObligationWaived: _status("waived"),
    ObligationCancelled: _status("cancelled"),
    SlaMeasured: Registry.on_sla_measured,
    SlaBreached: Registry.on_sla_breached,
    RenewalDecision: Registry.on_renewal_decision,
}
