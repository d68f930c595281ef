"""The service layer: one transaction per command, the change and its outbox records together."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from contract_schema.codec import Envelope
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

from .adapters import repository as repo
from .adapters.orm import AuditRow, ContractRow, IdempotencyKeyRow, ObligationStateRow, ProcessedEventRow
from .config import RegistrySettings
from .domain import contracts
from .domain.model import Amendment, ContractDraft, MilestoneCompletion, Renewal, Termination

log = logging.getLogger(__name__)


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
    def __init__(self, sessions: sessionmaker[Session], settings: RegistrySettings, clock: Clock) -> None:
        self.sessions = sessions
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
        except IntegrityError:
            # A concurrent retry with the same key committed first: answer with its result.
            if idempotency_key:
                earlier = self._replay(caller, idempotency_key, request_hash)
                if earlier is not None:
                    return earlier
            raise

    def _replay(self, caller: Caller, key: str, request_hash: str) -> CreateResult | None:
        with self.sessions() as session:
            row = session.get(IdempotencyKeyRow, (caller.tenant, key))
            if row is None:
                return None
            if row.request_hash != request_hash:
                raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was used for a different request body")
            snapshot = repo.load(session, caller.tenant, row.contract_id)
            assert snapshot is not None
            return CreateResult(snapshot, replayed=True)

    def _create(self, caller: Caller, draft: ContractDraft, key: str | None, request_hash: str) -> CreateResult:
        now = self.clock.now()
        change = contracts.create(draft, contract_id=str(uuid.uuid4()), tenant_id=caller.tenant, now=now)
        with self.sessions.begin() as session:
            if key:
                session.add(IdempotencyKeyRow(tenant_id=caller.tenant, key=key, request_hash=request_hash,
                                              contract_id=change.snapshot.contract_id, status_code=201,
                                              created_at=now))
            repo.insert(session, change.snapshot, now=now, actor=caller.subject)
            self._record(session, caller, change, now)
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
                step: Callable[[ContractSnapshot, Any], contracts.Change]) -> ContractSnapshot:
        now = self.clock.now()
        with self.sessions.begin() as session:
            before = repo.load(session, caller.tenant, contract_id, for_update=True)
            if before is None:
                raise NotFound(contract_id)
            if if_match and not etag_matches(if_match, before.current.version):
                raise PreconditionFailed(f"If-Match {if_match} does not match the current version "
                                         f"\"{before.current.version}\"")
            change = step(before, now)
            repo.update(session, before, change.snapshot, now=now, actor=caller.subject)
            self._record(session, caller, change, now)
        return change.snapshot

    def _record(self, session: Session, caller: Caller, change: contracts.Change, now: Any) -> None:
        """Audit entry plus the outbox records (full snapshot, then the change event), same transaction."""
        snap = change.snapshot
        repo.audit(session, tenant_id=snap.tenant_id, contract_id=snap.contract_id, action=change.action,
                   actor=caller.subject, request_id=caller.request_id, version=snap.current.version, at=now,
                   details=change.details)
        repo.enqueue(session, event=snap, topic=self.settings.state_topic, tenant_id=snap.tenant_id,
                     source=self.settings.source, now=now)
        if change.event is not None:
            repo.enqueue(session, event=change.event, topic=self.settings.events_topic, tenant_id=snap.tenant_id,
                         source=self.settings.source, now=now)
        repo.notify(session, self.settings.notify_channel)

    def complete_obligation(self, caller: Caller, contract_id: str, obligation_id: str,
                            body: MilestoneCompletion) -> tuple[ContractSnapshot, bool]:
        """Record a contract-side completion and publish MilestoneCompleted(origin=contract) for the engine.

        Returns (snapshot, created); completing an already completed obligation publishes nothing.
        """
        now = self.clock.now()
        with self.sessions.begin() as session:
            snap = repo.load(session, caller.tenant, contract_id, for_update=True)
            if snap is None:
                raise NotFound(contract_id)
            existing = session.get(ObligationStateRow, (contract_id, obligation_id))
            if existing is not None and existing.status == "completed":
                return snap, False
            state, event = contracts.complete_milestone(snap, obligation_id, now=now, evidence_ref=body.evidence_ref)
            self._upsert_state(session, contract_id, obligation_id, status=state.status, completed_at=now,
                               source_system=state.source_system, event_type=event.ce_type,
                               details={"evidence_ref": body.evidence_ref}, at=now)
            repo.audit(session, tenant_id=snap.tenant_id, contract_id=contract_id, action="obligation-completed",
                       actor=caller.subject, request_id=caller.request_id, version=snap.current.version, at=now,
                       details={"obligation_id": obligation_id, "evidence_ref": body.evidence_ref})
            repo.enqueue(session, event=event, topic=self.settings.performance_topic, tenant_id=snap.tenant_id,
                         source=self.settings.source, now=now)
            repo.notify(session, self.settings.notify_channel)
            after = repo.load(session, caller.tenant, contract_id)
            assert after is not None
            return after, True

    def expire_due(self, limit: int = 100) -> int:
        """Expire (or auto-renew) running contracts past their end date. Returns how many changed.

        Reads only the due contracts through a partial index on end_date, so the cost is the number
        due, not the number of contracts. Safe on every replica at once: each change re-checks under
        the contract's row lock, so a second sweeper finds nothing left to do.
        """
        now = self.clock.now()
        horizon = now.date() + timedelta(days=1)  # no time zone is more than a day ahead of UTC
        changed = 0
        while True:
            with self.sessions() as session:
                due = session.execute(
                    select(ContractRow.id, ContractRow.tenant_id)
                    .where(ContractRow.status.in_(["active", "renewed"]), ContractRow.end_date.is_not(None),
                           ContractRow.end_date < horizon)
                    .order_by(ContractRow.end_date).limit(limit)).all()
            round_changed = 0
            for contract_id, tenant in due:
                caller = Caller(subject="contract-registry/expiry", tenant=tenant)
                if self._lapse(caller, contract_id, now):
                    round_changed += 1
            changed += round_changed
            if len(due) < limit or round_changed < len(due):
                # Either all due ones are done, or the rest are not due yet in their own time zone
                # (or were auto-renewed into a term that is also past: the next sweep continues).
                return changed

    def _lapse(self, caller: Caller, contract_id: str, now: Any) -> bool:
        with self.sessions.begin() as session:
            before = repo.load(session, caller.tenant, contract_id, for_update=True)
            if before is None:
                return False
            decision = repo.renewal_decision(session, contract_id)
            change = contracts.lapse(before, now=now, renewal_decision=(decision or {}).get("decision"))
            if change is None:
                return False
            repo.update(session, before, change.snapshot, now=now, actor=caller.subject)
            self._record(session, caller, change, now)
            return True

    # ---- queries --------------------------------------------------------------------------------

    def get(self, tenant: str, contract_id: str, as_of: date | None = None) -> tuple[ContractSnapshot,
                                                                                      dict[str, Any] | None]:
        with self.sessions() as session:
            snap = repo.load(session, tenant, contract_id)
            if snap is None:
                raise NotFound(contract_id)
            decision = repo.renewal_decision(session, contract_id)
        if as_of is not None:
            old = contracts.as_of(snap, as_of)
            if old is None:
                raise NotFound(f"{contract_id} had no version in force on {as_of}")
            snap = old
        return snap, decision

    def list_contracts(self, tenant: str, *, status: str | None = None, counterparty: str | None = None,
             owner: str | None = None, ending_before: date | None = None, tag: str | None = None,
             limit: int = 50, cursor: str | None = None) -> ContractPage:
        query = select(ContractRow).where(ContractRow.tenant_id == tenant)
        if status:
            query = query.where(ContractRow.status == status)
        if counterparty:
            query = query.where(ContractRow.counterparty_id == counterparty)
        if owner:
            query = query.where(ContractRow.owner_email == owner)
        if ending_before:
            query = query.where(ContractRow.end_date < ending_before)
        if tag:
            query = query.where(ContractRow.tags.contains([tag]))
        if cursor:
            query = query.where(ContractRow.seq > decode_cursor(cursor))
        with self.sessions() as session:
            rows = session.scalars(query.order_by(ContractRow.seq).limit(limit + 1)).all()
        page = rows[:limit]
        items = [{"contract_id": r.id, "title": r.title, "status": r.status, "counterparty": r.counterparty,
                  "owner": r.owner, "tags": list(r.tags), "version": r.current_version, "currency": r.currency,
                  "end_date": r.end_date.isoformat() if r.end_date else None,
                  "updated_at": r.updated_at.isoformat()} for r in page]
        return ContractPage(items, encode_cursor(page[-1].seq) if len(rows) > limit else None)

    def audit_log(self, tenant: str, contract_id: str) -> list[dict[str, Any]]:
        with self.sessions() as session:
            exists = session.scalar(select(ContractRow.id).where(ContractRow.id == contract_id,
                                                                  ContractRow.tenant_id == tenant))
            if exists is None:
                raise NotFound(contract_id)
            rows = session.scalars(select(AuditRow).where(AuditRow.tenant_id == tenant,
                                                          AuditRow.contract_id == contract_id)
                                   .order_by(AuditRow.id)).all()
        return [{"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action, "version": r.version,
                 "request_id": r.request_id, "details": r.details} for r in rows]

    # ---- inbound events -------------------------------------------------------------------------

    def handle(self, envelope: Envelope) -> bool:
        """Apply an inbound event once per ce_id. Returns False for a duplicate or an ignored event."""
        event = envelope.event
        if not isinstance(event, ObligationEvent | RenewalDecision):
            return False
        with self.sessions.begin() as session:
            first = session.execute(pg_insert(ProcessedEventRow).values(
                event_id=envelope.id, topic=type(event).__name__, processed_at=self.clock.now())
                .on_conflict_do_nothing().returning(ProcessedEventRow.event_id)).first()
            if first is None:
                return False
            row = session.scalars(select(ContractRow).where(ContractRow.id == event.contract_id)
                                  .with_for_update()).one_or_none()
            if row is None or row.tenant_id != event.tenant_id:
                log.warning("ignoring %s for unknown contract %s (tenant %s)", envelope.type, event.contract_id,
                            event.tenant_id)
                return False
            if isinstance(event, RenewalDecision):
                previous = row.renewal_decision
                if previous and datetime.fromisoformat(previous["decided_at"]) > event.decided_at:
                    return False  # an older decision arriving late does not replace a newer one
                row.renewal_decision = event.model_dump(mode="json") | {"event_id": envelope.id}
                action, details = "renewal-decision", {"decision": event.decision.value, "event_id": envelope.id}
            else:
                status, details = _obligation_status(event)
                current = session.get(ObligationStateRow, (event.contract_id, event.obligation_id))
                if current is not None and current.updated_at > event.occurred_at:
                    return False
                completed_at = event.completed_at if isinstance(event, ObligationCompleted) else None
                source = event.source_system if isinstance(event, ObligationCompleted) else envelope.source
                self._upsert_state(session, event.contract_id, event.obligation_id, status=status,
                                   completed_at=completed_at or (current.completed_at if current else None),
                                   source_system=source, event_type=envelope.type, details=details,
                                   at=event.occurred_at)
                action = f"obligation-{status}"
            repo.audit(session, tenant_id=row.tenant_id, contract_id=row.id, action=action, actor=envelope.source,
                       request_id=envelope.id, version=row.current_version, at=self.clock.now(), details=details)
        return True

    @staticmethod
    def _upsert_state(session: Session, contract_id: str, obligation_id: str, *, status: str, completed_at: Any,
                      source_system: str | None, event_type: str, details: dict[str, Any], at: Any) -> None:
        values = {"status": status, "completed_at": completed_at, "source_system": source_system,
                  "last_event_type": event_type, "details": details, "updated_at": at}
        session.execute(pg_insert(ObligationStateRow)
                        .values(contract_id=contract_id, obligation_id=obligation_id, **values)
                        .on_conflict_do_update(index_elements=["contract_id", "obligation_id"], set_=values))


_SIMPLE: dict[type[ObligationEvent], str] = {
    ObligationScheduled: "scheduled", ObligationDueSoon: "due-soon", ObligationOverdue: "overdue",
    ObligationEscalated: "escalated", ObligationCompleted: "completed", ObligationWaived: "waived",
    ObligationCancelled: "cancelled",
}


def _obligation_status(event: ObligationEvent) -> tuple[str, dict[str, Any]]:
    details: dict[str, Any] = {"instance_id": event.instance_id,
                               "due_at": event.due_at.isoformat() if event.due_at else None}
    if isinstance(event, SlaBreached):
        return "sla-breached", details | {"metric": event.metric, "measured": str(event.measured),
                                          "target": str(event.target), "window_end": event.window_end.isoformat(),
                                          "service_credit": str(event.service_credit), "currency": event.currency}
    if isinstance(event, SlaMeasured):
        return ("sla-met" if event.met else "sla-missed"), details | {
            "metric": event.metric, "measured": str(event.measured), "target": str(event.target),
            "window_end": event.window_end.isoformat()}
    if isinstance(event, ObligationCompleted):
        details |= {"on_time": event.on_time, "origin": event.origin.value, "evidence_ref": event.evidence_ref}
    return _SIMPLE.get(type(event), type(event).__name__), details


def snapshot_json(snapshot: ContractSnapshot) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(snapshot.model_dump_json())
    return body
