"""One test per validation rule, through `validate_invoice` (pure: no Kafka, no clock)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from invoice_validator import samples as s
from invoice_validator.domain.model import BillingState, ObligationView, Reason, SlaCredit
from invoice_validator.domain.rules import MatchKind, expected_unit_price, match_contract
from invoice_validator.domain.validate import Outcome, validate_invoice

from contract_schema import ContractStatus, Escalation, TierBasis, VerdictStatus, VolumeTier

NOW = datetime(2026, 4, 1, tzinfo=UTC)


def run(invoice=None, contract=None, *, billing=None, obligations=None, duplicate_of=None) -> Outcome:  # type: ignore[no-untyped-def]
    return validate_invoice(invoice or s.invoice(), contract or s.contract(),
                            obligations=obligations or ObligationView(), billing=billing or BillingState(),
                            duplicate_of=duplicate_of, now=NOW)


def test_matching_invoice_is_approved_with_totals() -> None:
    v = run().verdict
    assert v.status is VerdictStatus.APPROVED
    assert v.total_billed == Decimal("1000.00") and v.total_expected == Decimal("1000.00")
    assert v.prevented_overpayment == 0 and v.contract_version == 1


def test_match_by_contract_ref() -> None:
    c = s.contract("C-9")
    assert match_contract(s.invoice(contract_ref="C-9"), c, []).contract is c


def test_match_by_vendor_when_no_ref() -> None:
    c = s.contract("C-9", vendor="V-7")
    m = match_contract(s.invoice(contract_ref=None, vendor="V-7"), None, [c])
    assert m.kind == MatchKind.FOUND and m.contract is c


def test_match_none_is_unknown_and_several_is_ambiguous() -> None:
    inv = s.invoice(contract_ref=None, vendor="V-7")
    assert match_contract(inv, None, []).kind == MatchKind.UNKNOWN
    both = [s.contract("C-8", vendor="V-7"), s.contract("C-9", vendor="V-7")]
    m = match_contract(inv, None, both)
    assert m.kind == MatchKind.AMBIGUOUS and m.candidates == ("C-8", "C-9")


def test_match_other_tenant_is_unknown() -> None:
    assert match_contract(s.invoice(), s.contract(tenant="other"), []).kind == MatchKind.UNKNOWN


def test_contract_not_active_on_service_date_is_rejected() -> None:
    v = run(s.invoice(lines=(s.line(service_date=date(2028, 2, 1)),))).verdict
    assert v.status is VerdictStatus.REJECTED and v.reason_codes == ("CONTRACT_NOT_ACTIVE",)
    terminated = s.contract(status=ContractStatus.TERMINATED, terminated_on=date(2026, 2, 1))
    assert run(contract=terminated).verdict.reason_codes == ("CONTRACT_NOT_ACTIVE",)


def test_vendor_mismatch_is_rejected() -> None:
    v = run(s.invoice(vendor="V-OTHER")).verdict
    assert v.status is VerdictStatus.REJECTED and "VENDOR_MISMATCH" in v.reason_codes
    assert v.prevented_overpayment == Decimal("1000.00")


def test_currency_mismatch_is_rejected() -> None:
    v = run(s.invoice(currency="USD")).verdict
    assert v.status is VerdictStatus.REJECTED and v.reason_codes == ("CURRENCY_MISMATCH",)


def test_item_not_on_rate_card_is_rejected() -> None:
    v = run(s.invoice(lines=(s.line(item_code="GOLD-PLATING"),))).verdict
    assert v.status is VerdictStatus.REJECTED and v.reason_codes == ("NOT_ON_RATE_CARD",)
    assert v.prevented_overpayment == Decimal("1000.00")


def test_unit_of_measure_differs_is_rejected() -> None:
    v = run(s.invoice(lines=(s.line(unit="DAY"),))).verdict
    assert v.status is VerdictStatus.REJECTED and v.reason_codes == ("UNIT_MISMATCH",)


def test_price_above_contract_is_rejected_with_variance() -> None:
    v = run(s.invoice(lines=(s.line(unit_price="110.00"),))).verdict
    assert v.status is VerdictStatus.REJECTED and v.reason_codes == ("PRICE_ABOVE_CONTRACT",)
    assert v.lines[0].expected_unit_price == Decimal("100") and v.lines[0].variance == Decimal("100.00")
    assert v.prevented_overpayment == Decimal("100.00")
    assert "contract price is 100" in v.lines[0].message


def test_price_above_within_tolerance_is_approved() -> None:
    c = s.contract(versions=(s.terms(rate_card=(s.rate_line(tolerance_percent=Decimal(5)),)),))
    v = run(s.invoice(lines=(s.line(unit_price="104.00"),)), c).verdict
    assert v.status is VerdictStatus.APPROVED and v.reason_codes == ("PRICE_WITHIN_TOLERANCE",)
    c2 = s.contract(versions=(s.terms(rate_card=(s.rate_line(tolerance_absolute=Decimal(3)),)),))
    assert run(s.invoice(lines=(s.line(unit_price="104.00"),)), c2).verdict.status is VerdictStatus.REJECTED


def test_price_below_contract_is_approved_with_note() -> None:
    v = run(s.invoice(lines=(s.line(unit_price="90.00"),))).verdict
    assert v.status is VerdictStatus.APPROVED and v.reason_codes == ("PRICE_BELOW_CONTRACT",)
    assert v.lines[0].variance == Decimal("-100.00")


def test_expected_price_applies_escalation_tier_and_discount() -> None:
    rate = s.rate_line(unit_price="100",
                       escalations=(Escalation(effective_date=date(2026, 2, 1), percent=Decimal(10)),),
                       tiers=(VolumeTier(from_quantity=Decimal(0), to_quantity=Decimal(50), unit_price=Decimal(100)),
                              VolumeTier(from_quantity=Decimal(50), unit_price=Decimal(80))),
                       discount_percent=Decimal(5))
    assert expected_unit_price(rate, date(2026, 1, 15), Decimal(10)) == Decimal("95.000000")
    assert expected_unit_price(rate, date(2026, 3, 1), Decimal(10)) == Decimal("104.500000")
    assert expected_unit_price(rate, date(2026, 3, 1), Decimal(60)) == Decimal("83.600000")


def test_per_invoice_tier_uses_the_invoice_quantity() -> None:
    rate = s.rate_line(tiers=(VolumeTier(from_quantity=Decimal(0), to_quantity=Decimal(20), unit_price=Decimal(100)),
                              VolumeTier(from_quantity=Decimal(20), unit_price=Decimal(90))))
    c = s.contract(versions=(s.terms(rate_card=(rate,)),))
    inv = s.invoice(lines=(s.line(1, quantity="15", unit_price="90"), s.line(2, quantity="15", unit_price="90")))
    assert run(inv, c).verdict.status is VerdictStatus.APPROVED  # 30 on the invoice: tier 2
    assert run(s.invoice(lines=(s.line(quantity="15", unit_price="90"),)), c).verdict.reason_codes == \
        ("PRICE_BELOW_CONTRACT",)


def test_cumulative_tier_counts_what_was_billed_before() -> None:
    rate = s.rate_line(tier_basis=TierBasis.CUMULATIVE,
                       tiers=(VolumeTier(from_quantity=Decimal(0), to_quantity=Decimal(100), unit_price=Decimal(100)),
                              VolumeTier(from_quantity=Decimal(100), unit_price=Decimal(90))))
    c = s.contract(versions=(s.terms(rate_card=(rate,)),))
    inv = s.invoice(lines=(s.line(quantity="10", unit_price="100"),))
    assert run(inv, c).verdict.status is VerdictStatus.APPROVED
    after = BillingState(quantity_by_line={"L-DEV-HOUR": Decimal(95)})
    v = run(inv, c, billing=after).verdict
    assert v.status is VerdictStatus.REJECTED and v.lines[0].expected_unit_price == Decimal(90)


def test_arithmetic_error_is_rejected() -> None:
    v = run(s.invoice(lines=(s.line(quantity="10", unit_price="100.00", amount="1100.00"),))).verdict
    assert v.status is VerdictStatus.REJECTED and "ARITHMETIC" in v.reason_codes
    assert v.prevented_overpayment == Decimal("100.00")
    # Half a cent of rounding is not an arithmetic error.
    ok = s.line(quantity="3", unit_price="33.335", amount="100.00")
    c = s.contract(versions=(s.terms(rate_card=(s.rate_line(unit_price="33.335"),)),))
    assert run(s.invoice(lines=(ok,)), c).verdict.status is VerdictStatus.APPROVED


def test_line_cap_exceeded_rejects_the_excess_with_headroom() -> None:
    c = s.contract(versions=(s.terms(rate_card=(s.rate_line(not_to_exceed=Decimal("5000")),)),))
    billed = BillingState(billed_by_line={"L-DEV-HOUR": Decimal("4500")}, billed_total=Decimal("4500"))
    v = run(contract=c, billing=billed).verdict
    assert v.status is VerdictStatus.REJECTED and v.reason_codes == ("CAP_EXCEEDED",)
    assert v.prevented_overpayment == Decimal("500.00")
    assert "500.00 EUR of headroom" in v.lines[0].message


def test_contract_cap_exceeded_is_rejected() -> None:
    c = s.contract(versions=(s.terms(not_to_exceed=Decimal("1500")),))
    v = run(s.invoice(lines=(s.line(1), s.line(2))), c).verdict
    assert [lv.status for lv in v.lines] == [VerdictStatus.APPROVED, VerdictStatus.REJECTED]
    assert v.reason_codes == ("CAP_EXCEEDED",) and v.prevented_overpayment == Decimal("500.00")


def test_cumulative_billing_counts_only_unrejected_invoices() -> None:
    out = run()
    assert out.billing.billed_total == Decimal("1000.00")
    rejected = run(s.invoice(lines=(s.line(unit_price="200"),)))
    assert rejected.billing == BillingState()


def milestone_line(amount: str = "5000.00") -> s.InvoiceLine:
    return s.line(item_code="MILESTONE", quantity="1", unit_price=amount, unit="EA", milestone_ref="M1")


def test_milestone_not_completed_is_rejected() -> None:
    v = run(s.invoice(lines=(milestone_line(),))).verdict
    assert v.status is VerdictStatus.REJECTED and v.reason_codes == ("MILESTONE_NOT_COMPLETED",)


def test_milestone_completed_is_billable_once() -> None:
    done = ObligationView(completed_milestones=frozenset({"M1"}))
    first = run(s.invoice(lines=(milestone_line(),)), obligations=done)
    assert first.verdict.status is VerdictStatus.APPROVED
    again = run(s.invoice("INV-2", lines=(milestone_line(),)), obligations=done, billing=first.billing).verdict
    assert again.status is VerdictStatus.REJECTED and again.reason_codes == ("MILESTONE_ALREADY_BILLED",)


def test_milestone_amount_must_match() -> None:
    done = ObligationView(completed_milestones=frozenset({"M1"}))
    v = run(s.invoice(lines=(milestone_line("6000.00"),)), obligations=done).verdict
    assert v.status is VerdictStatus.REJECTED and v.reason_codes == ("MILESTONE_AMOUNT",)
    assert v.prevented_overpayment == Decimal("1000.00")


def test_sla_credit_missing_needs_review_with_amount() -> None:
    credit = SlaCredit("i1", "SLA1", date(2026, 3, 1), date(2026, 3, 31), Decimal("250.00"), "EUR")
    obligations = ObligationView(sla_credits=(credit,))
    v = run(obligations=obligations).verdict
    assert v.status is VerdictStatus.NEEDS_REVIEW and v.reason_codes == ("SLA_CREDIT_MISSING",)
    assert "250.00 EUR" in v.messages[0]
    with_credit = s.invoice(lines=(s.line(1), s.line(2, item_code="SLA-CREDIT", quantity="1",
                                                     unit_price="-250.00", unit="EA")))
    assert run(with_credit, obligations=obligations).verdict.status is VerdictStatus.APPROVED


def test_sla_credit_outside_billed_period_is_not_required() -> None:
    credit = SlaCredit("i1", "SLA1", date(2026, 5, 1), date(2026, 5, 31), Decimal("250.00"), "EUR")
    assert run(obligations=ObligationView(sla_credits=(credit,))).verdict.status is VerdictStatus.APPROVED


def test_payment_terms_shorter_than_contract_need_review() -> None:
    v = run(s.invoice(payment_terms_days=14)).verdict
    assert v.status is VerdictStatus.NEEDS_REVIEW and v.reason_codes == ("PAYMENT_TERMS_SHORT",)
    by_due_date = s.invoice(payment_terms_days=None, due_date=date(2026, 4, 10))
    assert run(by_due_date).verdict.reason_codes == ("PAYMENT_TERMS_SHORT",)


def test_duplicate_invoice_is_rejected() -> None:
    v = run(s.invoice("INV-2", number="INV-1"), duplicate_of="INV-1").verdict
    assert v.status is VerdictStatus.REJECTED and v.reason_codes == ("DUPLICATE_INVOICE",)
    assert v.prevented_overpayment == Decimal("1000.00")


def test_amendment_boundary_prices_each_line_by_its_version() -> None:
    v1 = s.terms(1)
    v2 = s.terms(2, effective_from=date(2026, 3, 15), rate_card=(s.rate_line(unit_price="120.00"),))
    c = s.contract(versions=(v1, v2))
    before = s.line(1, unit_price="100.00", service_date=date(2026, 3, 14))
    after = s.line(2, unit_price="120.00", service_date=date(2026, 3, 15))
    v = run(s.invoice(lines=(before, after)), c).verdict
    assert v.status is VerdictStatus.APPROVED
    assert [lv.expected_unit_price for lv in v.lines] == [Decimal(100), Decimal(120)]
    wrong = run(s.invoice(lines=(s.line(1, unit_price="120.00", service_date=date(2026, 3, 14)),)), c).verdict
    assert wrong.reason_codes == ("PRICE_ABOVE_CONTRACT",)


def test_reason_codes_are_the_stable_set() -> None:
    assert {r.value for r in Reason} >= {
        "PRICE_ABOVE_CONTRACT", "NOT_ON_RATE_CARD", "UNIT_MISMATCH", "ARITHMETIC", "CAP_EXCEEDED",
        "MILESTONE_NOT_COMPLETED", "MILESTONE_ALREADY_BILLED", "MILESTONE_AMOUNT", "SLA_CREDIT_MISSING",
        "PAYMENT_TERMS_SHORT", "DUPLICATE_INVOICE", "CONTRACT_NOT_ACTIVE", "VENDOR_MISMATCH",
        "CURRENCY_MISMATCH", "CONTRACT_UNKNOWN", "CONTRACT_AMBIGUOUS"}


def test_unknown_contract_verdict_needs_review() -> None:
    from invoice_validator.domain.rules import contract_unknown_finding
    from invoice_validator.domain.validate import verdict_without_contract

    inv = s.invoice(contract_ref="C-404")
    v = verdict_without_contract(inv, contract_unknown_finding(inv), NOW)
    assert v.status is VerdictStatus.NEEDS_REVIEW and v.reason_codes == ("CONTRACT_UNKNOWN",)
    assert all(lv.status is VerdictStatus.NEEDS_REVIEW for lv in v.lines) and v.contract_id == "C-404"
