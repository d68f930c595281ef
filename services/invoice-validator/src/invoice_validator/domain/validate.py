"""Apply every rule to one invoice and build the verdict; pure."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from contract_schema import (
    ContractSnapshot,
    InvoiceReceived,
    InvoiceValidated,
    LineVerdict,
    TierBasis,
    TierMode,
    VerdictStatus,
)
from contract_schema.money import round_money

from . import rules, tiers
from .model import BillingState, Finding, ObligationView, Reason, Severity
from .rules import LineResult

_STATUS = {Severity.NOTE: VerdictStatus.APPROVED, Severity.REVIEW: VerdictStatus.NEEDS_REVIEW,
           Severity.REJECT: VerdictStatus.REJECTED}


@dataclass(frozen=True)
class Outcome:
    verdict: InvoiceValidated
    # Billing after this invoice; unchanged when the invoice is rejected (a rejected invoice is not paid).
    billing: BillingState


def validate_invoice(invoice: InvoiceReceived, contract: ContractSnapshot, *, obligations: ObligationView,
                     billing: BillingState, duplicate_of: str | None, now: datetime) -> Outcome:
    """The verdict for an invoice matched to `contract`, and the billing state it leaves behind."""
    currency = invoice.currency
    invoice_findings: list[Finding] = []
    lines = sorted(invoice.lines, key=lambda line: line.line_no)
    results = [LineResult(line) for line in lines]

    if duplicate_of is not None:
        dup = rules.duplicate_finding(invoice, duplicate_of)
        invoice_findings.append(dup)
        for r in results:
            r.findings.append(replace(dup, overpayment=max(Decimal(0), r.line.amount)))
        return Outcome(_verdict(invoice, contract, results, invoice_findings, now), billing)

    vendor = rules.check_vendor(invoice, contract)
    if vendor is not None:
        invoice_findings.append(vendor)

    # Per-invoice tier basis: the invoice's total quantity per item.
    invoice_qty: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        if line.amount >= 0 and not line.milestone_ref:
            invoice_qty[line.item_code] += line.quantity

    invoice_pos: dict[str, Decimal] = defaultdict(Decimal)  # graduated per-invoice: units placed so far
    billed_by_line = dict(billing.billed_by_line)
    qty_by_line = dict(billing.quantity_by_line)
    billed_total = billing.billed_total
    milestones = set(billing.milestones_billed)

    for r in results:
        line = r.line
        if vendor is not None:
            r.findings.append(replace(vendor, overpayment=max(Decimal(0), line.amount)))
            continue
        active = rules.check_active(contract, line.service_date)
        terms = contract.terms_on(line.service_date)
        if active is not None or terms is None:
            assert active is not None
            r.findings.append(replace(active, overpayment=max(Decimal(0), line.amount)))
            continue
        cur = rules.check_currency(currency, terms)
        if cur is not None:
            r.findings.append(replace(cur, overpayment=max(Decimal(0), line.amount)))
            continue
        arithmetic = rules.check_arithmetic(line, currency)
        if arithmetic is not None:
            r.findings.append(arithmetic)

        if line.amount < 0:  # a credit line (SLA credit, correction): nothing to price
            r.findings.append(Finding(Reason.CREDIT_LINE, Severity.NOTE,
                                      f"Credit of {-line.amount} {currency}."))
            r.expected_unit, r.expected_amount = line.unit_price, line.amount
        elif line.milestone_ref:
            milestone = terms.obligation(line.milestone_ref)
            found = rules.check_milestone(
                line, milestone, completed=line.milestone_ref in obligations.completed_milestones,
                already_billed=line.milestone_ref in milestones, currency=currency)
            if milestone is not None and milestone.amount is not None:
                r.expected_amount = milestone.amount
                r.expected_unit = (milestone.amount / line.quantity).quantize(tiers.PRICE_PLACES) \
                    if line.quantity else milestone.amount
            if found is not None:
                r.findings.append(found)
        else:
            rate, missing = rules.find_rate_line(terms, line)
            if missing is not None:
                r.findings.append(replace(missing, overpayment=max(Decimal(0), line.amount)))
                continue
            assert rate is not None
            r.rate_line_id = rate.line_id
            if rate.tier_mode is TierMode.GRADUATED:
                # The line's units follow those already counted on the tier axis: earlier lines of the
                # item on this invoice, plus (cumulative) what invoices not rejected billed before.
                start = (qty_by_line.get(rate.line_id, Decimal(0)) if rate.tier_basis is TierBasis.CUMULATIVE
                         else invoice_pos[rate.line_id])
                r.bands = tiers.graduated_split(rate, start=start, quantity=line.quantity, on=line.service_date,
                                                currency=currency)
                r.expected_amount = tiers.split_amount(r.bands)
                r.expected_unit = tiers.blended_unit_price(rate, r.bands, start=start, on=line.service_date)
                price = tiers.check_graduated(line, r.bands, rate, currency)
            else:
                basis = rules.tier_quantity(rate, invoice_qty[line.item_code],
                                            qty_by_line.get(rate.line_id, Decimal(0)))
                r.expected_unit = rules.expected_unit_price(rate, line.service_date, basis)
                r.expected_amount = round_money(r.expected_unit * line.quantity, currency)
                price = rules.check_price(line, r.expected_unit, rate, currency)
            invoice_pos[rate.line_id] += line.quantity
            if price is not None:
                r.findings.append(price)
            if not r.rejected:
                cap = rules.check_cap(billed_before=billed_by_line.get(rate.line_id, Decimal(0)),
                                      amount=line.amount, cap=rate.not_to_exceed,
                                      scope=f"rate-card line {rate.line_id}", currency=currency)
                if cap is not None:
                    r.findings.append(cap)

        if not r.rejected and line.amount > 0:
            contract_cap = rules.check_cap(billed_before=billed_total, amount=line.amount,
                                           cap=terms.not_to_exceed, scope=f"contract {contract.contract_id}",
                                           currency=currency)
            if contract_cap is not None:
                r.findings.append(contract_cap)
        if not r.rejected:
            billed_total += line.amount
            if r.rate_line_id is not None:
                billed_by_line[r.rate_line_id] = billed_by_line.get(r.rate_line_id, Decimal(0)) + line.amount
                qty_by_line[r.rate_line_id] = qty_by_line.get(r.rate_line_id, Decimal(0)) + line.quantity
            if line.milestone_ref and line.amount >= 0:
                milestones.add(line.milestone_ref)

    if vendor is None:
        sla = rules.check_sla_credits(invoice, obligations.sla_credits)
        if sla is not None:
            invoice_findings.append(sla)
        terms_at_issue = contract.terms_on(invoice.issue_date) or contract.current
        short = rules.check_payment_terms(invoice, terms_at_issue)
        if short is not None:
            invoice_findings.append(short)

    verdict = _verdict(invoice, contract, results, invoice_findings, now)
    if verdict.status is VerdictStatus.REJECTED:
        return Outcome(verdict, billing)
    return Outcome(verdict, BillingState(billed_by_line=billed_by_line, quantity_by_line=qty_by_line,
                                         billed_total=billed_total, milestones_billed=frozenset(milestones)))


def verdict_without_contract(invoice: InvoiceReceived, finding: Finding, now: datetime) -> InvoiceValidated:
    """Needs-review for an invoice that could not be matched to exactly one contract."""
    results = [LineResult(line) for line in sorted(invoice.lines, key=lambda line: line.line_no)]
    return _verdict(invoice, None, results, [finding], now)


def _verdict(invoice: InvoiceReceived, contract: ContractSnapshot | None, results: list[LineResult],
             invoice_findings: list[Finding], now: datetime) -> InvoiceValidated:
    currency = invoice.currency
    line_verdicts: list[LineVerdict] = []
    codes: list[str] = []
    messages: list[str] = []
    worst = Severity.NOTE
    total_expected = Decimal(0)
    prevented = Decimal(0)

    def note(finding: Finding) -> None:
        if finding.code.value not in codes:
            codes.append(finding.code.value)
        if finding.message not in messages and finding.severity is not Severity.NOTE:
            messages.append(finding.message)

    for f in invoice_findings:
        note(f)
        worst = _worse(worst, f.severity)
    for r in results:
        line = r.line
        sev = r.severity
        # An invoice-level review (e.g. contract unknown) also holds every line for review.
        line_sev = _worse(sev, Severity.REVIEW if any(f.severity is Severity.REVIEW for f in invoice_findings
                                                      if f.code in _HOLDS_LINES) else Severity.NOTE)
        worst = _worse(worst, sev)
        for f in r.findings:
            note(f)
        expected = r.expected_amount
        if sev is Severity.REJECT:
            prevented += r.overpayment
        # What the contract supports for the line: its expected amount, else nothing for a rejected line.
        total_expected += expected if expected is not None else (Decimal(0) if sev is Severity.REJECT else line.amount)
        variance = line.amount - expected if expected is not None else Decimal(0)
        if sev is Severity.REJECT and expected is None:
            variance = r.overpayment
        line_verdicts.append(LineVerdict(
            line_no=line.line_no, status=_STATUS[line_sev], item_code=line.item_code,
            billed_unit_price=line.unit_price, billed_amount=line.amount, expected_unit_price=r.expected_unit,
            expected_amount=expected, variance=variance, bands=r.bands,
            reason_codes=tuple(dict.fromkeys(f.code.value for f in r.findings)),
            message=" ".join(f.message for f in r.findings) or "Matches the contract.",
        ))
    terms = None
    if contract is not None:
        terms = contract.terms_on(min(line.service_date for line in invoice.lines)) or contract.current
    total_billed = sum((line.amount for line in invoice.lines), Decimal(0))
    return InvoiceValidated(
        invoice_id=invoice.invoice_id, tenant_id=invoice.tenant_id, vendor_id=invoice.vendor_id,
        invoice_number=invoice.invoice_number,
        contract_id=contract.contract_id if contract is not None else invoice.contract_ref,
        contract_version=terms.version if terms is not None else None,
        status=_STATUS[worst], currency=currency, lines=tuple(line_verdicts), reason_codes=tuple(codes),
        messages=tuple(messages) or (("Every line matches the contract.",) if worst is Severity.NOTE else ()),
        total_billed=round_money(total_billed, currency), total_expected=round_money(total_expected, currency),
        prevented_overpayment=round_money(prevented, currency), validated_at=now,
    )


_HOLDS_LINES = {Reason.CONTRACT_UNKNOWN, Reason.CONTRACT_AMBIGUOUS}
_ORDER = {Severity.NOTE: 0, Severity.REVIEW: 1, Severity.REJECT: 2}


def _worse(a: Severity, b: Severity) -> Severity:
    return a if _ORDER[a] >= _ORDER[b] else b
