"""Contracts as the registry publishes them: a snapshot with every version (amendment)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, JsonValue, field_validator

from .base import Event, Identifier, Model, Person, Timestamp, TimeZone
from .money import Amount, Currency, NonNegativeAmount, Percent

Quantity = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class Direction(StrEnum):
    BUY_SIDE = "buy-side"
    SELL_SIDE = "sell-side"


class ContractStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    TERMINATED = "terminated"
    RENEWED = "renewed"


class Party(Model):
    party_id: Identifier
    name: Annotated[str, Field(min_length=1)]
    erp_vendor_id: str | None = None
    crm_account_id: str | None = None


class TierBasis(StrEnum):
    PER_INVOICE = "per-invoice"
    CUMULATIVE = "cumulative"


class TierMode(StrEnum):
    """How tiers price a quantity (docs/adr/0018).

    volume: the band the quantity reaches prices every unit. graduated: each unit is priced by the
    band it falls in, so a quantity crossing bands is split across them.
    """

    VOLUME = "volume"
    GRADUATED = "graduated"


class VolumeTier(Model):
    """Price for quantities in [from_quantity, to_quantity); to_quantity None means no upper bound."""

    from_quantity: Quantity
    to_quantity: Quantity | None = None
    unit_price: NonNegativeAmount


class Escalation(Model):
    """A scheduled price change: every price on the line moves by `percent` from `effective_date`."""

    effective_date: date
    percent: Annotated[Decimal, Field(ge=-100, le=1000, allow_inf_nan=False)]


class RateCardLine(Model):
    line_id: Identifier
    item_code: Identifier
    description: str = ""
    unit: Annotated[str, Field(min_length=1, description="unit of measure, e.g. HUR, EA, MON")]
    unit_price: NonNegativeAmount
    currency: Currency
    valid_from: date
    valid_to: date | None = None
    tiers: tuple[VolumeTier, ...] = ()
    tier_basis: TierBasis = TierBasis.PER_INVOICE
    # Absent on lines written before tier modes existed: they keep the volume pricing they had.
    tier_mode: TierMode = TierMode.VOLUME
    escalations: tuple[Escalation, ...] = ()
    discount_percent: Percent = Decimal(0)
    not_to_exceed: NonNegativeAmount | None = None
    tolerance_absolute: NonNegativeAmount = Decimal(0)
    tolerance_percent: Percent = Decimal(0)

    def covers(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)


class ObligationKind(StrEnum):
    DELIVERABLE = "deliverable"
    MILESTONE = "milestone"
    PAYMENT = "payment"
    NOTICE = "notice"
    COMPLIANCE = "compliance"
    SLA = "sla"


class SlaComparison(StrEnum):
    AT_LEAST = "at-least"  # e.g. availability >= 99.9
    AT_MOST = "at-most"  # e.g. p95 response time <= 300


class SlaTerms(Model):
    """An SLA and its service-credit rule: credit_percent of the monthly fee per `step` missed, capped."""

    metric: Identifier
    target: Amount
    comparison: SlaComparison = SlaComparison.AT_LEAST
    window: Annotated[str, Field(pattern="^(daily|weekly|monthly|quarterly)$")] = "monthly"
    monthly_fee: NonNegativeAmount
    credit_percent_per_step: Percent
    step: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
    credit_cap_percent: Percent


class ObligationDefinition(Model):
    obligation_id: Identifier
    kind: ObligationKind
    title: Annotated[str, Field(min_length=1)]
    owner: Person | None = None
    due_date: date | None = None
    recurrence: str | None = Field(default=None, description="RFC 5545 RRULE, e.g. FREQ=MONTHLY;BYMONTHDAY=1")
    lead_time_days: Annotated[int, Field(ge=0)] | None = None
    amount: NonNegativeAmount | None = Field(default=None, description="milestone amount billable on completion")
    acceptance_criteria: str | None = None
    sla: SlaTerms | None = None


class ContractTerms(Model):
    """One version of a contract: what is in force from `effective_from` until the next version."""

    version: Annotated[int, Field(ge=1)]
    effective_from: date
    reason: str | None = None
    currency: Currency
    total_value: NonNegativeAmount
    signed_date: date | None = None
    effective_date: date
    end_date: date | None = None
    auto_renew: bool = False
    renewal_term_months: Annotated[int, Field(ge=0)] | None = None
    notice_period_days: Annotated[int, Field(ge=0)] = 0
    termination_terms: str | None = None
    payment_terms_days: Annotated[int, Field(ge=0)] = 30
    not_to_exceed: NonNegativeAmount | None = None
    rate_card: tuple[RateCardLine, ...] = ()
    obligations: tuple[ObligationDefinition, ...] = ()

    def rate_line_for(self, item_code: str, on: date) -> RateCardLine | None:
        for line in self.rate_card:
            if line.item_code == item_code and line.covers(on):
                return line
        return None

    def obligation(self, obligation_id: str) -> ObligationDefinition | None:
        return next((o for o in self.obligations if o.obligation_id == obligation_id), None)


class ObligationState(Model):
    """Where an obligation stands, as the registry last heard from the obligation-engine."""

    obligation_id: Identifier
    status: str
    completed_at: Timestamp | None = None
    source_system: str | None = None


class ContractSnapshot(Event):
    """Full latest state of a contract, on the compacted state topic."""

    contract_id: Identifier
    tenant_id: Identifier
    title: str
    counterparty: Party
    direction: Direction
    contract_type: str
    business_unit: str | None = None
    owner: Person
    backup_owner: Person | None = None
    timezone: TimeZone = "UTC"
    tags: tuple[str, ...] = ()
    status: ContractStatus
    terminated_on: date | None = None
    versions: Annotated[tuple[ContractTerms, ...], Field(min_length=1)]
    obligation_states: tuple[ObligationState, ...] = ()
    updated_at: Timestamp

    @field_validator("versions")
    @classmethod
    def _versions_in_order(cls, value: tuple[ContractTerms, ...]) -> tuple[ContractTerms, ...]:
        numbers = [v.version for v in value]
        if numbers != sorted(set(numbers)):
            raise ValueError("versions must be in increasing version order without repeats")
        return value

    @property
    def current(self) -> ContractTerms:
        return self.versions[-1]

    def terms_on(self, on: date) -> ContractTerms | None:
        """The version in force on a date: the latest whose effective_from is not after it."""
        in_force = [v for v in self.versions if v.effective_from <= on]
        return in_force[-1] if in_force else None

    def active_on(self, on: date) -> bool:
        terms = self.terms_on(on)
        if terms is None or on < terms.effective_date:
            return False
        if terms.end_date is not None and on > terms.end_date:
            return False
        if self.terminated_on is not None and on >= self.terminated_on:
            return False
        return self.status in (ContractStatus.ACTIVE, ContractStatus.RENEWED, ContractStatus.EXPIRED,
                               ContractStatus.TERMINATED)


class ContractEvent(Event, abstract=True):
    contract_id: Identifier
    tenant_id: Identifier
    version: Annotated[int, Field(ge=1)]
    occurred_at: Timestamp


class ContractActivated(ContractEvent):
    pass


class FieldChange(Model):
    field: str
    old: JsonValue = None
    new: JsonValue = None


class ContractAmended(ContractEvent):
    effective_from: date
    reason: str | None = None
    changes: tuple[FieldChange, ...] = ()


class ContractRenewed(ContractEvent):
    new_end_date: date | None = None
    renewal_term_months: int | None = None


class ContractTerminated(ContractEvent):
    terminated_on: date
    reason: str | None = None


class ContractExpired(ContractEvent):
    expired_on: date


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> tuple[FieldChange, ...]:
    """Top-level differences between two JSON-mode dumps of ContractTerms."""
    skip = {"version", "effective_from", "reason"}
    return tuple(
        FieldChange(field=k, old=old.get(k), new=new.get(k))
        for k in sorted(set(old) | set(new))
        if k not in skip and old.get(k) != new.get(k)
    )
