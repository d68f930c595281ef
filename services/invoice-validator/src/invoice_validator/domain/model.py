"""Plain data the rules work on: what the validator knows about a contract besides its snapshot,
and what has been billed against it so far. No I/O, no Kafka, no Faust."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Stable machine reason codes on verdicts. Never rename one: AP systems match on them."""

    CONTRACT_UNKNOWN = "CONTRACT_UNKNOWN"
    CONTRACT_AMBIGUOUS = "CONTRACT_AMBIGUOUS"
    CONTRACT_NOT_ACTIVE = "CONTRACT_NOT_ACTIVE"
    VENDOR_MISMATCH = "VENDOR_MISMATCH"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    NOT_ON_RATE_CARD = "NOT_ON_RATE_CARD"
    UNIT_MISMATCH = "UNIT_MISMATCH"
    PRICE_ABOVE_CONTRACT = "PRICE_ABOVE_CONTRACT"
    PRICE_BELOW_CONTRACT = "PRICE_BELOW_CONTRACT"  # a note: approved
    PRICE_WITHIN_TOLERANCE = "PRICE_WITHIN_TOLERANCE"  # a note: approved
    ARITHMETIC = "ARITHMETIC"
    CAP_EXCEEDED = "CAP_EXCEEDED"
    MILESTONE_UNKNOWN = "MILESTONE_UNKNOWN"
    MILESTONE_NOT_COMPLETED = "MILESTONE_NOT_COMPLETED"
    MILESTONE_ALREADY_BILLED = "MILESTONE_ALREADY_BILLED"
    MILESTONE_AMOUNT = "MILESTONE_AMOUNT"
    SLA_CREDIT_MISSING = "SLA_CREDIT_MISSING"
    PAYMENT_TERMS_SHORT = "PAYMENT_TERMS_SHORT"
    DUPLICATE_INVOICE = "DUPLICATE_INVOICE"
    CREDIT_LINE = "CREDIT_LINE"  # a note: a credit (negative) line, not priced from the rate card


class Severity(StrEnum):
    NOTE = "note"  # approved, with a remark
    REVIEW = "review"  # needs-review
    REJECT = "reject"  # rejected


@dataclass(frozen=True)
class Finding:
    """One rule's result: a reason code, how bad it is, a sentence for a clerk, and money at stake."""

    code: Reason
    severity: Severity
    message: str
    # Billed amount that should not be paid because of this finding (0 for notes and reviews).
    overpayment: Decimal = Decimal(0)


@dataclass(frozen=True)
class SlaCredit:
    """A service credit owed by the vendor for an SLA breach in a window."""

    instance_id: str
    obligation_id: str
    window_start: date
    window_end: date
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class ObligationView:
    """What the validator has heard from the obligation-engine about one contract."""

    completed_milestones: frozenset[str] = frozenset()
    sla_credits: tuple[SlaCredit, ...] = ()

    def with_completed(self, obligation_id: str) -> ObligationView:
        return replace(self, completed_milestones=self.completed_milestones | {obligation_id})

    def with_credit(self, credit: SlaCredit) -> ObligationView:
        if any(c.instance_id == credit.instance_id for c in self.sla_credits):
            return self
        return replace(self, sla_credits=self.sla_credits + (credit,))

    def to_json(self) -> dict[str, Any]:
        return {
            "completed": sorted(self.completed_milestones),
            "credits": [
                {"instance_id": c.instance_id, "obligation_id": c.obligation_id,
                 "window_start": c.window_start.isoformat(), "window_end": c.window_end.isoformat(),
                 "amount": str(c.amount), "currency": c.currency}
                for c in self.sla_credits
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ObligationView:
        if not data:
            return cls()
        return cls(
            completed_milestones=frozenset(data.get("completed", ())),
            sla_credits=tuple(
                SlaCredit(c["instance_id"], c["obligation_id"], date.fromisoformat(c["window_start"]),
                          date.fromisoformat(c["window_end"]), Decimal(c["amount"]), c["currency"])
                for c in data.get("credits", ())
            ),
        )


@dataclass(frozen=True)
class BillingState:
    """Cumulative amounts billed (and not rejected) against one contract."""

    billed_by_line: dict[str, Decimal] = field(default_factory=dict)
    quantity_by_line: dict[str, Decimal] = field(default_factory=dict)
    billed_total: Decimal = Decimal(0)
    milestones_billed: frozenset[str] = frozenset()

    def plus(self, other: BillingState) -> BillingState:
        """Both amounts together (cumulative state plus what one invoice added)."""
        return BillingState(
            billed_by_line=_add(self.billed_by_line, other.billed_by_line),
            quantity_by_line=_add(self.quantity_by_line, other.quantity_by_line),
            billed_total=self.billed_total + other.billed_total,
            milestones_billed=self.milestones_billed | other.milestones_billed,
        )

    def minus(self, before: BillingState) -> BillingState:
        """What this state adds over an earlier one: the part one invoice contributed."""
        negated = {k: -v for k, v in before.billed_by_line.items()}
        negated_qty = {k: -v for k, v in before.quantity_by_line.items()}
        return BillingState(
            billed_by_line={k: v for k, v in _add(self.billed_by_line, negated).items() if v},
            quantity_by_line={k: v for k, v in _add(self.quantity_by_line, negated_qty).items() if v},
            billed_total=self.billed_total - before.billed_total,
            milestones_billed=self.milestones_billed - before.milestones_billed,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "billed_by_line": {k: str(v) for k, v in self.billed_by_line.items()},
            "quantity_by_line": {k: str(v) for k, v in self.quantity_by_line.items()},
            "billed_total": str(self.billed_total),
            "milestones_billed": sorted(self.milestones_billed),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> BillingState:
        if not data:
            return cls()
        return cls(
            billed_by_line={k: Decimal(v) for k, v in data.get("billed_by_line", {}).items()},
            quantity_by_line={k: Decimal(v) for k, v in data.get("quantity_by_line", {}).items()},
            billed_total=Decimal(data.get("billed_total", "0")),
            milestones_billed=frozenset(data.get("milestones_billed", ())),
        )


def _add(a: dict[str, Decimal], b: dict[str, Decimal]) -> dict[str, Decimal]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, Decimal(0)) + value
    return out
