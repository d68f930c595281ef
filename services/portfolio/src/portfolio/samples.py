"""Events as the mesh publishes them, for the portfolio's tests and its benchmark."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from contract_schema import (
    Alert,
    ContractSnapshot,
    ContractStatus,
    ContractTerms,
    Direction,
    Envelope,
    Event,
    InvoiceValidated,
    NotificationKind,
    NotificationRecorded,
    ObligationKind,
    Party,
    Person,
    Tier,
    VerdictStatus,
)
from contract_schema.obligation import ObligationCompleted, ObligationEvent, ObligationOverdue, ObligationScheduled
from contract_schema.renewal import RenewalDecision, RenewalDecisionKind, RenewalOpportunity, RenewalStage

OWNER = Person(name="Olivia Owner", email="olivia@example.com")
BACKUP = Person(name="Ben Backup", email="ben@example.com")
T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
TODAY = T0.date()
SOURCE = "/contract-mesh/test"


def snapshot(contract_id: str = "C-1", *, tenant: str = "tenant-a", days_to_deadline: int = 45, notice: int = 30,
             value: str = "365000", currency: str = "EUR", auto_renew: bool = False,
             status: ContractStatus = ContractStatus.ACTIVE, owner: Person = OWNER, party: str = "acme",
             contract_type: str = "msa", tags: tuple[str, ...] = (), at: datetime = T0, version: int = 1,
             today: date = TODAY) -> ContractSnapshot:
    """A one-year contract whose notice deadline is `days_to_deadline` days after `today` (its annual
    value is then `value` for a 365-day term)."""
    end = today + timedelta(days=days_to_deadline + notice)
    terms = tuple(ContractTerms(version=v, effective_from=end - timedelta(days=364), currency=currency,
                                total_value=Decimal(value), effective_date=end - timedelta(days=364), end_date=end,
                                auto_renew=auto_renew, notice_period_days=notice) for v in range(1, version + 1))
    return ContractSnapshot(
        contract_id=contract_id, tenant_id=tenant, title=f"Contract {contract_id}",
        counterparty=Party(party_id=party, name=party.title()), direction=Direction.BUY_SIDE,
        contract_type=contract_type, owner=owner, backup_owner=BACKUP, tags=tags, status=status, versions=terms,
        updated_at=at)


def opportunity(contract_id: str = "C-1", *, tenant: str = "tenant-a", stage: RenewalStage = RenewalStage.DAYS_60,
                decision: str | None = None, at: datetime = T0) -> RenewalOpportunity:
    return RenewalOpportunity(contract_id=contract_id, tenant_id=tenant, stage=stage, close_date=None,
                              amount=Decimal("1000"), currency="EUR", owner=OWNER, decision=decision, updated_at=at)


def decision(contract_id: str = "C-1", *, tenant: str = "tenant-a",
             kind: RenewalDecisionKind = RenewalDecisionKind.RENEW, at: datetime = T0) -> RenewalDecision:
    return RenewalDecision(contract_id=contract_id, tenant_id=tenant, decision=kind, decided_by="cfo", decided_at=at)


def _obligation(cls: type[ObligationEvent], contract_id: str, instance: str, due_in_days: float, tenant: str,
                at: datetime, **extra: object) -> ObligationEvent:
    return cls(contract_id=contract_id, tenant_id=tenant, obligation_id=instance.split("#")[0], instance_id=instance,
               kind=ObligationKind.DELIVERABLE, title=f"Deliver {instance}", due_at=T0 + timedelta(days=due_in_days),
               owner=OWNER, occurred_at=at, **extra)


def scheduled(contract_id: str = "C-1", instance: str = "o1#1", *, due_in_days: float = 10,
              tenant: str = "tenant-a", at: datetime = T0) -> ObligationEvent:
    return _obligation(ObligationScheduled, contract_id, instance, due_in_days, tenant, at)


def overdue(contract_id: str = "C-1", instance: str = "o1#1", *, due_in_days: float = -1,
            tenant: str = "tenant-a", at: datetime = T0) -> ObligationEvent:
    return _obligation(ObligationOverdue, contract_id, instance, due_in_days, tenant, at)


def completed(contract_id: str = "C-1", instance: str = "o1#1", *, on_time: bool = True, due_in_days: float = 10,
              tenant: str = "tenant-a", at: datetime = T0) -> ObligationEvent:
    return _obligation(ObligationCompleted, contract_id, instance, due_in_days, tenant, at, completed_at=at,
                       on_time=on_time, origin="erp", source_system="erp")


def verdict(invoice_id: str = "I-1", *, tenant: str = "tenant-a", contract_id: str | None = "C-1",
            status: VerdictStatus = VerdictStatus.APPROVED, billed: str = "1000", expected: str = "1000",
            prevented: str = "0", currency: str = "EUR", reasons: tuple[str, ...] = (), vendor: str = "V-1",
            at: datetime = T0) -> InvoiceValidated:
    return InvoiceValidated(invoice_id=invoice_id, tenant_id=tenant, vendor_id=vendor, invoice_number=f"N-{invoice_id}",
                            contract_id=contract_id, status=status, currency=currency, total_billed=Decimal(billed),
                            total_expected=Decimal(expected), prevented_overpayment=Decimal(prevented),
                            reason_codes=reasons, validated_at=at)


def alert(alert_id: str = "A-1", *, tenant: str = "tenant-a", contract_id: str = "C-1", tier: Tier = Tier.RED,
          owner: Person | None = OWNER, at: datetime = T0) -> Alert:
    return Alert(alert_id=alert_id, tenant_id=tenant, contract_id=contract_id, alert_type="invoice.overbilled",
                 tier=tier, title=f"Alert {alert_id}", what="something to act on", owner=owner,
                 dedup_key=f"x:{alert_id}", source_service="invoice-validator", raised_at=at)


def notification(alert_id: str = "A-1", kind: NotificationKind = NotificationKind.DELIVERED, *,
                 contract_id: str | None = "C-1", at: datetime = T0, notification_id: str | None = None,
                 ) -> NotificationRecorded:
    return NotificationRecorded(notification_id=notification_id or f"{alert_id}/{kind.value}/{at.isoformat()}",
                                alert_id=alert_id, contract_id=contract_id, kind=kind, channel="email", at=at)


def envelope(event: Event, event_id: str | None = None, source: str = SOURCE) -> Envelope:
    return Envelope(event=event, id=event_id or str(uuid.uuid4()), source=source, type=event.ce_type,
                    time=datetime.now(UTC))
