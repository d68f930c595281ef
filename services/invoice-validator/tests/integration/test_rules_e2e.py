"""Each rule through the real broker: contracts and obligation events in, verdicts out."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from invoice_validator import samples as s

from contract_schema import (
    ContractSnapshot,
    ObligationCompleted,
    ObligationKind,
    Origin,
    SlaBreached,
    TierBasis,
    TierMode,
    VerdictStatus,
    VolumeTier,
)
from mesh_common.signing import verify
from mesh_testing import unique_name, wait_for

from .conftest import CLOCK_START
from .harness import Running, Webhook


def contract(validator: Running, **kw: object) -> ContractSnapshot:
    c = s.contract(unique_name("C"), vendor=unique_name("V"), **kw)  # type: ignore[arg-type]
    validator.produce(c)
    return c


def bill(validator: Running, c: ContractSnapshot, *lines: s.InvoiceLine, **kw: object) -> s.InvoiceReceived:
    inv = s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=c.counterparty.erp_vendor_id or "",
                    lines=lines or (s.line(),), **kw)  # type: ignore[arg-type]
    validator.produce(inv)
    return inv


def codes(validator: Running, inv: s.InvoiceReceived) -> tuple[VerdictStatus, tuple[str, ...]]:
    v = validator.verdict(inv.invoice_id)
    return v.status, v.reason_codes


def test_rate_card_rules_give_their_verdicts(validator: Running) -> None:
    c = contract(validator, versions=(s.terms(not_to_exceed=Decimal("3000")),))
    ok = bill(validator, c)
    above = bill(validator, c, s.line(unit_price="120.00"))
    scope = bill(validator, c, s.line(item_code="GOLD-PLATING"))
    unit = bill(validator, c, s.line(unit="DAY"))
    sums = bill(validator, c, s.line(amount="1234.00"))
    short = bill(validator, c, payment_terms_days=10)
    inactive = bill(validator, c, s.line(service_date=date(2025, 6, 1)))
    currency = bill(validator, c, currency="USD")
    assert codes(validator, ok) == (VerdictStatus.APPROVED, ())
    assert codes(validator, above) == (VerdictStatus.REJECTED, ("PRICE_ABOVE_CONTRACT",))
    assert validator.verdict(above.invoice_id).prevented_overpayment == Decimal("200.00")
    assert codes(validator, scope) == (VerdictStatus.REJECTED, ("NOT_ON_RATE_CARD",))
    assert codes(validator, unit) == (VerdictStatus.REJECTED, ("UNIT_MISMATCH",))
    assert codes(validator, sums) == (VerdictStatus.REJECTED, ("ARITHMETIC",))
    assert codes(validator, short) == (VerdictStatus.NEEDS_REVIEW, ("PAYMENT_TERMS_SHORT",))
    assert codes(validator, inactive) == (VerdictStatus.REJECTED, ("CONTRACT_NOT_ACTIVE",))
    assert codes(validator, currency) == (VerdictStatus.REJECTED, ("CURRENCY_MISMATCH",))
    # Cumulative cap of 3000: ok (1000) + short (1000) are billed; 1500 more passes it by 500.
    capped = bill(validator, c, s.line(quantity="15"))
    v = validator.verdict(capped.invoice_id)
    assert (v.status, v.reason_codes) == (VerdictStatus.REJECTED, ("CAP_EXCEEDED",))
    assert v.prevented_overpayment == Decimal("500.00") and "1,000.00 EUR of headroom" in v.lines[0].message


def test_vendor_match_and_vendor_mismatch(validator: Running) -> None:
    c = contract(validator)
    vendor = c.counterparty.erp_vendor_id or ""
    by_vendor = s.invoice(unique_name("INV"), contract_ref=None, vendor=vendor)
    validator.produce(by_vendor)
    v = validator.verdict(by_vendor.invoice_id)
    assert v.status is VerdictStatus.APPROVED and v.contract_id == c.contract_id
    wrong = s.invoice(unique_name("INV"), contract_ref=c.contract_id, vendor=unique_name("V"))
    validator.produce(wrong)
    assert codes(validator, wrong) == (VerdictStatus.REJECTED, ("VENDOR_MISMATCH",))


def test_two_contracts_for_a_vendor_without_reference_need_review(validator: Running) -> None:
    vendor = unique_name("V")
    for _ in range(2):
        validator.produce(s.contract(unique_name("C"), vendor=vendor))

    # Contracts reach the vendor's partition asynchronously: until both have, an invoice matches the one
    # known. Once both are known, an invoice naming no contract needs review.
    def ambiguous() -> tuple[str, ...] | None:
        inv = s.invoice(unique_name("INV"), contract_ref=None, vendor=vendor)
        validator.produce(inv)
        v = validator.verdict(inv.invoice_id)
        return v.reason_codes if v.status is VerdictStatus.NEEDS_REVIEW else None
    assert wait_for(ambiguous, timeout=30, interval=0.2) == ("CONTRACT_AMBIGUOUS",)


def test_milestone_billable_once_after_completion(validator: Running) -> None:
    c = contract(validator)
    milestone = s.line(item_code="MILESTONE", quantity="1", unit_price="5000.00", unit="EA", milestone_ref="M1")
    early = bill(validator, c, milestone)
    assert codes(validator, early) == (VerdictStatus.REJECTED, ("MILESTONE_NOT_COMPLETED",))
    validator.produce(ObligationCompleted(
        contract_id=c.contract_id, tenant_id="t1", obligation_id="M1", instance_id="M1-1",
        kind=ObligationKind.MILESTONE, occurred_at=CLOCK_START, completed_at=CLOCK_START, on_time=True,
        origin=Origin.ERP, source_system="erp"))
    # Obligation events and invoices travel on different topics: poll until the completion is seen.
    def billed_once() -> s.InvoiceReceived | None:
        inv = bill(validator, c, milestone)
        return inv if validator.verdict(inv.invoice_id).status is VerdictStatus.APPROVED else None
    wait_for(billed_once, timeout=30, interval=0.5)
    again = bill(validator, c, milestone)
    assert codes(validator, again) == (VerdictStatus.REJECTED, ("MILESTONE_ALREADY_BILLED",))
    wrong_amount = bill(validator, c, s.line(item_code="MILESTONE", quantity="1", unit_price="6000.00",
                                             unit="EA", milestone_ref="M1"))
    assert "MILESTONE_ALREADY_BILLED" in codes(validator, wrong_amount)[1]


def test_sla_credit_missing_needs_review(validator: Running) -> None:
    c = contract(validator)
    validator.produce(SlaBreached(
        contract_id=c.contract_id, tenant_id="t1", obligation_id="SLA-1", instance_id=str(uuid.uuid4()),
        kind=ObligationKind.SLA, occurred_at=CLOCK_START, metric="availability",
        window_start=datetime(2026, 3, 1, tzinfo=UTC), window_end=datetime(2026, 3, 31, tzinfo=UTC),
        measured=Decimal("98.5"), target=Decimal("99.9"), service_credit=Decimal("300.00"), currency="EUR"))

    def review() -> tuple[str, ...] | None:
        inv = bill(validator, c)
        v = validator.verdict(inv.invoice_id)
        return v.messages if v.status is VerdictStatus.NEEDS_REVIEW else None
    messages = wait_for(review, timeout=30, interval=0.5)
    assert "300.00 EUR" in messages[0]


def test_amendment_boundary_prices_each_line_by_the_version_in_force(validator: Running) -> None:
    v2 = s.terms(2, effective_from=date(2026, 3, 15), rate_card=(s.rate_line(unit_price="120.00"),))
    c = contract(validator, versions=(s.terms(1), v2))
    inv = bill(validator, c, s.line(1, unit_price="100.00", service_date=date(2026, 3, 14)),
               s.line(2, unit_price="120.00", service_date=date(2026, 3, 15)))
    v = validator.verdict(inv.invoice_id)
    assert v.status is VerdictStatus.APPROVED
    assert [lv.expected_unit_price for lv in v.lines] == [Decimal(100), Decimal(120)]
    old_price_late = bill(validator, c, s.line(1, unit_price="120.00", service_date=date(2026, 3, 14)))
    assert codes(validator, old_price_late) == (VerdictStatus.REJECTED, ("PRICE_ABOVE_CONTRACT",))


def test_duplicate_invoice_number_is_rejected(validator: Running) -> None:
    c = contract(validator)
    first = bill(validator, c)
    assert codes(validator, first)[0] is VerdictStatus.APPROVED
    dup = bill(validator, c, number=first.invoice_number)
    assert codes(validator, dup) == (VerdictStatus.REJECTED, ("DUPLICATE_INVOICE",))


def test_big_rejection_raises_red_alert_and_every_verdict_is_signed_to_ap(validator: Running,
                                                                           webhook: Webhook) -> None:
    from contract_schema import Alert, decode
    from contract_schema.topics import ALERTS

    c = contract(validator)
    big = bill(validator, c, s.line(quantity="100", unit_price="150.00"))  # 15,000 billed, 5,000 too much
    small = bill(validator, c, s.line(unit_price="150.00"))  # 1,500 billed: under the alert threshold
    assert codes(validator, big)[0] is VerdictStatus.REJECTED
    assert codes(validator, small)[0] is VerdictStatus.REJECTED

    def alerts() -> list[Alert]:
        found = [decode(m.value(), m.headers()).event for m in validator.reader(ALERTS.name).drain()]
        return [a for a in found if isinstance(a, Alert) and a.contract_id == c.contract_id]
    red = wait_for(alerts, timeout=20)
    assert len(red) == 1 and red[0].tier.value == "red" and red[0].amount_at_stake == Decimal("5000.00")
    assert big.invoice_number in red[0].title

    def delivered() -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in webhook.received if big.invoice_id.encode() in b]
    headers, body = wait_for(delivered, timeout=20)[0]
    verify("ap-secret", body, headers.get("X-Mesh-Signature"))  # raises when the signature is wrong


def test_graduated_tiers_price_each_band_at_its_rate(validator: Running) -> None:
    """Bands [0, 100) and [100, ∞) (half-open, docs/adr/0018) on a graduated line."""
    def graduated(low: str, high: str, basis: TierBasis) -> ContractSnapshot:
        bands = (VolumeTier(from_quantity=Decimal(0), to_quantity=Decimal(100), unit_price=Decimal(low)),
                 VolumeTier(from_quantity=Decimal(100), unit_price=Decimal(high)))
        line = s.rate_line(unit_price=low, tiers=bands, tier_mode=TierMode.GRADUATED, tier_basis=basis)
        return contract(validator, versions=(s.terms(rate_card=(line,)),))

    def amount(quantity: str, total: str) -> s.InvoiceLine:
        unit = (Decimal(total) / Decimal(quantity)).quantize(Decimal("0.000001"))
        return s.line(quantity=quantity, unit_price=str(unit), amount=total)

    # The issue's example: 120 units cost 100 x 50.00 + 20 x 45.00 = 5,900.00, or 5,400.00 at the volume price.
    issue = graduated("50.00", "45.00", TierBasis.PER_INVOICE)
    at_split = validator.verdict(bill(validator, issue, amount("120", "5900.00")).invoice_id)
    assert (at_split.status, at_split.reason_codes) == (VerdictStatus.APPROVED, ())
    assert [(b.quantity, b.unit_price, b.amount) for b in at_split.lines[0].bands] == [
        (100, Decimal(50), Decimal("5000.00")), (20, Decimal(45), Decimal("900.00"))]
    at_volume = validator.verdict(bill(validator, issue, s.line(quantity="120", unit_price="45.00")).invoice_id)
    assert (at_volume.status, at_volume.reason_codes) == (VerdictStatus.APPROVED, ("PRICE_BELOW_CONTRACT",))
    assert at_volume.lines[0].variance == Decimal("-500.00")

    # Overage pricing, cumulative: 90 units billed first fill [0, 100), so 30 more are 10 x 45.00 + 20 x 50.00.
    overage = graduated("45.00", "50.00", TierBasis.CUMULATIVE)
    assert codes(validator, bill(validator, overage, s.line(quantity="90", unit_price="45.00"))) == \
        (VerdictStatus.APPROVED, ())
    volume_priced = validator.verdict(bill(validator, overage, s.line(quantity="30", unit_price="50.00")).invoice_id)
    assert (volume_priced.status, volume_priced.reason_codes) == (VerdictStatus.REJECTED, ("PRICE_ABOVE_CONTRACT",))
    assert volume_priced.prevented_overpayment == Decimal("50.00")
    graduated_priced = validator.verdict(bill(validator, overage, amount("30", "1450.00")).invoice_id)
    assert (graduated_priced.status, graduated_priced.reason_codes) == (VerdictStatus.APPROVED, ())
    assert [(b.from_quantity, b.quantity) for b in graduated_priced.lines[0].bands] == [(0, 10), (100, 20)]
