"""Renewal opportunities (to the CRM) and renewal decisions (from the CRM)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from .base import Event, Identifier, Model, Person, Timestamp
from .money import Currency, NonNegativeAmount


class RenewalStage(StrEnum):
    DAYS_120 = "120d"
    DAYS_90 = "90d"
    DAYS_60 = "60d"
    DAYS_30 = "30d"
    NOTICE_DEADLINE = "notice-deadline"
    END_DATE = "end-date"
    REVIEW = "review"  # periodic review of an evergreen contract


class OpportunityStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class SlaRecord(Model):
    window_start: date
    window_end: date
    sla_measurements: Annotated[int, Field(ge=0)] = 0
    sla_met: Annotated[int, Field(ge=0)] = 0
    credits_earned: NonNegativeAmount = Decimal(0)
    currency: Currency | None = None


class RenewalOpportunity(Event):
    """Renewal opportunity state per contract, on the compacted crm.renewal.opportunity.v1."""

    contract_id: Identifier
    tenant_id: Identifier
    contract_title: str = ""
    counterparty_name: str = ""
    crm_account_id: str | None = None
    stage: RenewalStage
    status: OpportunityStatus = OpportunityStatus.OPEN
    close_date: date | None = Field(description="the notice deadline")
    end_date: date | None = None
    amount: NonNegativeAmount = Field(description="contract value, annualised")
    currency: Currency
    owner: Person
    backup_owner: Person | None = None
    auto_renewal_risk: bool = False
    decision: str | None = None
    sla_record: SlaRecord | None = None
    updated_at: Timestamp


class RenewalDecisionKind(StrEnum):
    RENEW = "renew"
    RENEGOTIATE = "renegotiate"
    TERMINATE = "terminate"


class RenewalDecision(Event):
    """A decision recorded in the CRM, on crm.renewal.decision.v1."""

    contract_id: Identifier
    tenant_id: Identifier
    decision: RenewalDecisionKind
    decided_by: str | None = None
    decided_at: Timestamp
    note: str | None = None
    crm_opportunity_id: str | None = None
