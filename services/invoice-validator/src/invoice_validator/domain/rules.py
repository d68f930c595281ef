"""The validation rules: one pure function per rule, and `validate_invoice` that applies them.

Every function takes plain data (contract_schema models and domain dataclasses) and returns
plain data; nothing here reads a clock, a topic or a table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from contract_schema import (
    ContractSnapshot,
    ContractStatus,
    ContractTerms,
    InvoiceLine,
    InvoiceReceived,
    ObligationDefinition,
    PricedBand,
    RateCardLine,
    TierBasis,
)
from contract_schema.money import minor_unit, round_money

from .model import Finding, Reason, Severity, SlaCredit
from .tiers import price_on, tier_price


def _money(amount: Decimal, currency: str) -> str:
    return f"{round_money(amount, currency):,} {currency}"


# --- matching -------------------------------------------------------------------------------


class MatchKind:
    FOUND = "found"
    UNKNOWN = "unknown"  # may still arrive: park the invoice
    AMBIGUOUS = "ambiguous"  # several candidates: a person must choose


@dataclass(frozen=True)
class Match:
    kind: str
    contract: ContractSnapshot | None = None
    candidates: tuple[str, ...] = ()


def match_contract(invoice: InvoiceReceived, by_ref: ContractSnapshot | None,
                   vendor_contracts: Sequence[ContractSnapshot]) -> Match:
    """The contract an invoice bills against: by its contract reference, else by its vendor.

    Several contracts of the vendor are narrowed to those active on the invoice's service dates.
    """
    if invoice.contract_ref:
        if by_ref is not None and by_ref.tenant_id == invoice.tenant_id:
            return Match(MatchKind.FOUND, by_ref)
        return Match(MatchKind.UNKNOWN)
    candidates = [c for c in vendor_contracts
                  if c.tenant_id == invoice.tenant_id and c.counterparty.erp_vendor_id == invoice.vendor_id]
    if len(candidates) > 1:
        dates = {line.service_date for line in invoice.lines}
        active = [c for c in candidates if all(c.active_on(d) for d in dates)]
        candidates = active or candidates
    if not candidates:
        return Match(MatchKind.UNKNOWN)
    if len(candidates) > 1:
        return Match(MatchKind.AMBIGUOUS, candidates=tuple(sorted(c.contract_id for c in candidates)))
    return Match(MatchKind.FOUND, candidates[0])


def contract_unknown_finding(invoice: InvoiceReceived) -> Finding:
    ref = (f"contract {invoice.contract_ref!r}" if invoice.contract_ref
           else f"a contract for vendor {invoice.vendor_id!r}")
    return Finding(Reason.CONTRACT_UNKNOWN, Severity.REVIEW,
                   f"No {ref} is known; the invoice could not be checked against contract terms.")


def contract_ambiguous_finding(invoice: InvoiceReceived, candidates: Sequence[str]) -> Finding:
    return Finding(Reason.CONTRACT_AMBIGUOUS, Severity.REVIEW,
                   f"Vendor {invoice.vendor_id!r} has several active contracts ({', '.join(candidates)}) and the "
                   "invoice names none; choose the contract it bills against.")


# --- per-contract and per-line rules ---------------------------------------------------------


def check_active(contract: ContractSnapshot, on: date) -> Finding | None:
    """A line can only bill a contract in force on its service date."""
    if contract.active_on(on):
        return None
    terms = contract.terms_on(on)
    if terms is None or on < terms.effective_date:
        why = "was not yet in effect"
    elif contract.terminated_on is not None and on >= contract.terminated_on:
        why = f"was terminated on {contract.terminated_on}"
    elif terms.end_date is not None and on > terms.end_date:
        why = f"expired on {terms.end_date}"
    else:
        why = f"is {contract.status.value}"
    return Finding(Reason.CONTRACT_NOT_ACTIVE, Severity.REJECT,
                   f"Contract {contract.contract_id} {why} on the service date {on}.")


def awaits_activation(contract: ContractSnapshot, dates: Iterable[date]) -> bool:
    """True when the contract is not in force on the service dates only because it is not activated yet.

    A draft's activation may be in flight (the registry publishes it as a newer snapshot), so the
    invoice waits like one whose contract is unknown; CONTRACT_NOT_ACTIVE is decided after the wait.
    A contract terminated or expired for a service date is final at once.
    """
    if contract.status is not ContractStatus.DRAFT:
        return False
    for on in dates:
        terms = contract.terms_on(on)
        if contract.terminated_on is not None and on >= contract.terminated_on:
            return False
        if terms is not None and terms.end_date is not None and on > terms.end_date:
            return False
    return True


def check_vendor(invoice: InvoiceReceived, contract: ContractSnapshot) -> Finding | None:
    expected = contract.counterparty.erp_vendor_id
    if expected is None or expected == invoice.vendor_id:
        return None
    return Finding(Reason.VENDOR_MISMATCH, Severity.REJECT,
                   f"The invoice is from vendor {invoice.vendor_id!r} but contract {contract.contract_id} is with "
                   f"vendor {expected!r}.")


def check_currency(currency: str, terms: ContractTerms) -> Finding | None:
    if currency == terms.currency:
        return None
    return Finding(Reason.CURRENCY_MISMATCH, Severity.REJECT,
                   f"The invoice is in {currency} but the contract is priced in {terms.currency}.")


def find_rate_line(terms: ContractTerms, line: InvoiceLine) -> tuple[RateCardLine | None, Finding | None]:
    """The rate-card line an invoice line bills, or why there is none (scope creep, wrong unit)."""
    rate = terms.rate_line_for(line.item_code, line.service_date)
    if rate is None:
        return None, Finding(Reason.NOT_ON_RATE_CARD, Severity.REJECT,
                             f"Item {line.item_code!r} is not on the rate card of contract version {terms.version} "
                             f"for {line.service_date}; it is outside the contract's scope.")
    if rate.unit != line.unit:
        return rate, Finding(Reason.UNIT_MISMATCH, Severity.REJECT,
                             f"Item {line.item_code!r} is billed per {line.unit!r} but the contract prices it "
                             f"per {rate.unit!r}.")
    return rate, None


def expected_unit_price(rate: RateCardLine, on: date, tier_quantity: Decimal) -> Decimal:
    """Volume mode: rate-card price x escalations in effect on `on` (compounded) x volume tier x (1 - discount)."""
    return price_on(rate, tier_price(rate, tier_quantity), on)


def tier_quantity(rate: RateCardLine, invoice_quantity: Decimal, billed_before: Decimal) -> Decimal:
    """The quantity that picks the volume tier: this invoice's, or everything billed so far plus this."""
    if rate.tier_basis is TierBasis.CUMULATIVE:
        return billed_before + invoice_quantity
    return invoice_quantity


def check_price(line: InvoiceLine, expected_unit: Decimal, rate: RateCardLine, currency: str) -> Finding | None:
    """Billed unit price against the expected one; above beyond the tolerance is rejected."""
    diff = line.unit_price - expected_unit
    if diff == 0:
        return None
    if diff < 0:
        return Finding(Reason.PRICE_BELOW_CONTRACT, Severity.NOTE,
                       f"Billed {line.unit_price} per {line.unit}, below the contract price of {expected_unit}.")
    tolerance = max(rate.tolerance_absolute, expected_unit * rate.tolerance_percent / 100)
    if diff <= tolerance:
        return Finding(Reason.PRICE_WITHIN_TOLERANCE, Severity.NOTE,
                       f"Billed {line.unit_price} per {line.unit}, {diff} above the contract price of "
                       f"{expected_unit} but within the tolerance of {tolerance.normalize()}.")
    over = round_money(diff * line.quantity, currency)
    return Finding(Reason.PRICE_ABOVE_CONTRACT, Severity.REJECT,
                   f"Billed {line.unit_price} per {line.unit} but the contract price is {expected_unit}: "
                   f"{_money(over, currency)} too much on {line.quantity.normalize()} {line.unit}.",
                   overpayment=over)


def check_arithmetic(line: InvoiceLine, currency: str) -> Finding | None:
    """quantity x unit price must equal the line amount up to rounding in the currency's minor unit."""
    computed = line.quantity * line.unit_price
    if abs(computed - line.amount) <= minor_unit(currency) / 2:
        return None
    over = max(Decimal(0), round_money(line.amount - computed, currency))
    return Finding(Reason.ARITHMETIC, Severity.REJECT,
                   f"Line amount {_money(line.amount, currency)} does not equal quantity {line.quantity.normalize()} "
                   f"x unit price {line.unit_price} = {_money(computed, currency)}.", overpayment=over)


def check_cap(*, billed_before: Decimal, amount: Decimal, cap: Decimal | None, scope: str,
              currency: str) -> Finding | None:
    """Cumulative billing must stay within a not-to-exceed cap; the excess is rejected."""
    if cap is None or billed_before + amount <= cap:
        return None
    excess = billed_before + amount - cap
    headroom = max(Decimal(0), cap - billed_before)
    return Finding(Reason.CAP_EXCEEDED, Severity.REJECT,
                   f"This line would take {scope} past its not-to-exceed cap of {_money(cap, currency)} by "
                   f"{_money(excess, currency)}; only {_money(headroom, currency)} of headroom was left.",
                   overpayment=round_money(excess, currency))


def check_milestone(line: InvoiceLine, milestone: ObligationDefinition | None, *, completed: bool,
                    already_billed: bool, currency: str) -> Finding | None:
    """A milestone is billable once it is completed, only once, and only at its amount."""
    ref = line.milestone_ref
    if milestone is None:
        return Finding(Reason.MILESTONE_UNKNOWN, Severity.REJECT,
                       f"Milestone {ref!r} is not part of the contract.", overpayment=max(Decimal(0), line.amount))
    if not completed:
        return Finding(Reason.MILESTONE_NOT_COMPLETED, Severity.REJECT,
                       f"Milestone {milestone.title!r} is not completed yet, so it cannot be billed.",
                       overpayment=max(Decimal(0), line.amount))
    if already_billed:
        return Finding(Reason.MILESTONE_ALREADY_BILLED, Severity.REJECT,
                       f"Milestone {milestone.title!r} has already been billed.",
                       overpayment=max(Decimal(0), line.amount))
    if milestone.amount is not None and line.amount != milestone.amount:
        diff = line.amount - milestone.amount
        return Finding(Reason.MILESTONE_AMOUNT, Severity.REJECT,
                       f"Milestone {milestone.title!r} is billed at {_money(line.amount, currency)} but the "
                       f"contract amount is {_money(milestone.amount, currency)}.",
                       overpayment=max(Decimal(0), diff))
    return None


def billed_period(invoice: InvoiceReceived) -> tuple[date, date]:
    """First and last service day the invoice bills (credit lines excluded)."""
    lines = [line for line in invoice.lines if line.amount >= 0] or list(invoice.lines)
    start = min(line.service_date for line in lines)
    end = max(line.service_period_end or line.service_date for line in lines)
    return start, end


def check_sla_credits(invoice: InvoiceReceived, credits: Sequence[SlaCredit]) -> Finding | None:
    """SLA service credits for breaches in the billed period must appear on the invoice as credit lines."""
    start, end = billed_period(invoice)
    owed = [c for c in credits
            if c.currency == invoice.currency and c.window_start <= end and c.window_end >= start]
    due = sum((c.amount for c in owed), Decimal(0))
    given = sum((-line.amount for line in invoice.lines if line.amount < 0), Decimal(0))
    missing = round_money(due - given, invoice.currency)
    if missing < minor_unit(invoice.currency):
        return None
    return Finding(Reason.SLA_CREDIT_MISSING, Severity.REVIEW,
                   f"SLA breaches between {start} and {end} earned a service credit of "
                   f"{_money(due, invoice.currency)}; "
                   f"{_money(missing, invoice.currency)} of it is missing from the invoice.")


def invoice_payment_days(invoice: InvoiceReceived) -> int | None:
    if invoice.payment_terms_days is not None:
        return invoice.payment_terms_days
    if invoice.due_date is not None:
        return (invoice.due_date - invoice.issue_date).days
    return None


def check_payment_terms(invoice: InvoiceReceived, terms: ContractTerms) -> Finding | None:
    days = invoice_payment_days(invoice)
    if days is None or days >= terms.payment_terms_days:
        return None
    return Finding(Reason.PAYMENT_TERMS_SHORT, Severity.REVIEW,
                   f"The invoice asks for payment in {days} days; the contract grants {terms.payment_terms_days}.")


def duplicate_finding(invoice: InvoiceReceived, first_invoice_id: str) -> Finding:
    return Finding(Reason.DUPLICATE_INVOICE, Severity.REJECT,
                   f"Vendor {invoice.vendor_id!r} invoice number {invoice.invoice_number!r} was already received "
                   f"as invoice {first_invoice_id}; this is a duplicate.")


@dataclass
class LineResult:
    """A line's findings and prices, before they become a LineVerdict."""

    line: InvoiceLine
    findings: list[Finding] = field(default_factory=list)
    expected_unit: Decimal | None = None
    expected_amount: Decimal | None = None
    rate_line_id: str | None = None
    bands: tuple[PricedBand, ...] = ()  # a graduated line's split across tier bands

    @property
    def severity(self) -> Severity:
        worst = Severity.NOTE
        for f in self.findings:
            if f.severity is Severity.REJECT:
                return Severity.REJECT
            if f.severity is Severity.REVIEW:
                worst = Severity.REVIEW
        return worst

    @property
    def rejected(self) -> bool:
        return self.severity is Severity.REJECT

    @property
    def overpayment(self) -> Decimal:
        rejects = [f.overpayment for f in self.findings if f.severity is Severity.REJECT]
        return max(rejects, default=Decimal(0))

