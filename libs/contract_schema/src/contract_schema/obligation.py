"""Obligation lifecycle and SLA events (obligation-engine), inbound performance events (ERP),
outbound milestone commands (to ERP), and counterparty scorecards."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field

from .base import Event, Identifier, Origin, Person, Timestamp
from .contract import ObligationKind
from .money import Amount, Currency, NonNegativeAmount


class ObligationEvent(Event, abstract=True):
    contract_id: Identifier
    tenant_id: Identifier
    obligation_id: Identifier
    instance_id: Identifier = Field(description="one occurrence of a (possibly recurring) obligation")
    kind: ObligationKind
    title: str = ""
    due_at: Timestamp | None = None
    owner: Person | None = None
    occurred_at: Timestamp


class ObligationScheduled(ObligationEvent):
    pass


class ObligationDueSoon(ObligationEvent):
    pass


class ObligationOverdue(ObligationEvent):
    pass


class ObligationEscalated(ObligationEvent):
    overdue_since: Timestamp


class ObligationCompleted(ObligationEvent):
    completed_at: Timestamp
    on_time: bool
    origin: Origin
    source_system: str
    evidence_ref: str | None = None
    amount: NonNegativeAmount | None = None
    currency: Currency | None = None


class ObligationWaived(ObligationEvent):
    reason: str


class ObligationCancelled(ObligationEvent):
    reason: str


class SlaMeasured(ObligationEvent):
    metric: str
    window_start: Timestamp
    window_end: Timestamp
    measured: Amount
    target: Amount
    met: bool


class SlaBreached(ObligationEvent):
    metric: str
    window_start: Timestamp
    window_end: Timestamp
    measured: Amount
    target: Amount
    service_credit: NonNegativeAmount
    currency: Currency


class PerformanceEvent(Event, abstract=True):
    """Inbound from ERP, project or monitoring systems on erp.performance.v1."""

    contract_id: Identifier
    obligation_id: Identifier
    source_system: Identifier
    origin: Origin = Origin.ERP
    occurred_at: Timestamp


class MilestoneCompleted(PerformanceEvent):
    completed_at: Timestamp
    evidence_ref: str | None = None


class DeliverableAccepted(PerformanceEvent):
    accepted_at: Timestamp
    evidence_ref: str | None = None


class SlaMeasurement(PerformanceEvent):
    metric: Identifier
    window_start: Timestamp
    window_end: Timestamp
    value: Amount


class MilestoneCommand(Event, abstract=True):
    """Outbound to ERP on erp.milestone.commands.v1; always originates on the contract side."""

    contract_id: Identifier
    tenant_id: Identifier
    obligation_id: Identifier
    erp_vendor_id: str | None = None
    origin: Origin = Origin.CONTRACT
    occurred_at: Timestamp


class ReleaseMilestoneBilling(MilestoneCommand):
    amount: NonNegativeAmount
    currency: Currency
    completed_at: Timestamp


class ScorecardScope(StrEnum):
    COUNTERPARTY = "counterparty"
    CONTRACT = "contract"


class Scorecard(Event):
    """Rolling 12-month performance record, per counterparty (and per contract), on a compacted topic."""

    key_field: ClassVar[str] = "scorecard_id"

    scorecard_id: Identifier = Field(description="counterparty id, or counterparty id/contract id")
    scope: ScorecardScope
    counterparty_id: Identifier
    contract_id: Identifier | None = None
    window_start: date
    window_end: date
    obligations_due: Annotated[int, Field(ge=0)] = 0
    obligations_completed: Annotated[int, Field(ge=0)] = 0
    completed_on_time: Annotated[int, Field(ge=0)] = 0
    overdue: Annotated[int, Field(ge=0)] = 0
    sla_measurements: Annotated[int, Field(ge=0)] = 0
    sla_met: Annotated[int, Field(ge=0)] = 0
    credits_earned: NonNegativeAmount = Decimal(0)
    currency: Currency | None = None
    updated_at: Timestamp

    @property
    def completion_rate(self) -> Decimal | None:
        return _ratio(self.obligations_completed, self.obligations_due)

    @property
    def on_time_rate(self) -> Decimal | None:
        return _ratio(self.completed_on_time, self.obligations_completed)

    @property
    def sla_attainment(self) -> Decimal | None:
        return _ratio(self.sla_met, self.sla_measurements)


def _ratio(part: int, whole: int) -> Decimal | None:
    return None if whole == 0 else (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"))
