"""Tier modes (docs/adr/0018): graduated and volume pricing of the same quantities, pure.

Boundary convention (the one `VolumeTier` states and the volume pricing always used): a band is
half-open, [from_quantity, to_quantity). The issue's "0-99 at 50.00, 100+ at 45.00" is therefore
the bands [0, 100) and [100, ∞). Volume mode prices every unit by the band that contains the
quantity (100 units reach [100, ∞)); graduated mode puts unit n (counted from 1) in the band that
contains [n - 1, n), so units 1 to 100 fill [0, 100) and the 101st is the first in [100, ∞).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from invoice_validator import samples as s
from invoice_validator.domain.model import BillingState, ObligationView
from invoice_validator.domain.rules import expected_unit_price
from invoice_validator.domain.tiers import graduated_split, split_amount
from invoice_validator.domain.validate import Outcome, validate_invoice

from contract_schema import (
    ContractSnapshot,
    Escalation,
    InvoiceReceived,
    PricedBand,
    RateCardLine,
    TierBasis,
    TierMode,
    VerdictStatus,
    VolumeTier,
)
from contract_schema.money import round_money

NOW = datetime(2026, 4, 1, tzinfo=UTC)
ON = date(2026, 3, 1)
ISSUE_BANDS = (VolumeTier(from_quantity=Decimal(0), to_quantity=Decimal(100), unit_price=Decimal("50.00")),
               VolumeTier(from_quantity=Decimal(100), unit_price=Decimal("45.00")))
# Overage pricing: the band above the allowance costs more, so billing every unit at the band
# reached (the volume price) overcharges a graduated contract.
OVERAGE_BANDS = (VolumeTier(from_quantity=Decimal(0), to_quantity=Decimal(100), unit_price=Decimal("45.00")),
                 VolumeTier(from_quantity=Decimal(100), unit_price=Decimal("50.00")))


def rate(mode: TierMode = TierMode.GRADUATED, bands: tuple[VolumeTier, ...] = ISSUE_BANDS,
         **kw: object) -> RateCardLine:
    return s.rate_line(unit_price="50.00", tiers=bands, tier_mode=mode, **kw)


def contract(line: RateCardLine) -> ContractSnapshot:
    return s.contract(versions=(s.terms(rate_card=(line,)),))


def run(invoice: InvoiceReceived, line: RateCardLine, billing: BillingState | None = None) -> Outcome:
    return validate_invoice(invoice, contract(line), obligations=ObligationView(),
                            billing=billing or BillingState(), duplicate_of=None, now=NOW)


def billed(quantity: str, amount: str, invoice_id: str = "INV-1", line_no: int = 1) -> InvoiceReceived:
    """One line billing `amount` for `quantity` units (unit price to 6 places, as a blended price is sent)."""
    unit = (Decimal(amount) / Decimal(quantity)).quantize(Decimal("0.000001"))
    return s.invoice(invoice_id, lines=(s.line(line_no, quantity=quantity, unit_price=str(unit), amount=amount),))


def band(lo: int, hi: int | None, quantity: str, price: str, amount: str) -> PricedBand:
    return PricedBand(from_quantity=Decimal(lo), to_quantity=None if hi is None else Decimal(hi),
                      quantity=Decimal(quantity), unit_price=Decimal(price), amount=Decimal(amount))


def test_the_issue_example_120_units_cost_5900_graduated_and_5400_volume() -> None:
    split = graduated_split(rate(), start=Decimal(0), quantity=Decimal(120), on=ON, currency="EUR")
    assert split == (band(0, 100, "100", "50", "5000.00"), band(100, None, "20", "45", "900.00"))
    assert split_amount(split) == Decimal("5900.00")
    volume_unit = expected_unit_price(rate(TierMode.VOLUME), ON, Decimal(120))
    assert round_money(volume_unit * 120, "EUR") == Decimal("5400.00")


def test_the_band_boundary_is_half_open() -> None:
    def graduated(quantity: int) -> Decimal:
        return split_amount(graduated_split(rate(), start=Decimal(0), quantity=Decimal(quantity), on=ON,
                                            currency="EUR"))
    assert graduated(100) == Decimal("5000.00")  # units 1-100 all in [0, 100)
    assert graduated(101) == Decimal("5045.00")  # the 101st is the first unit of [100, ∞)
    assert expected_unit_price(rate(TierMode.VOLUME), ON, Decimal(99)) == Decimal(50)
    assert expected_unit_price(rate(TierMode.VOLUME), ON, Decimal(100)) == Decimal(45)  # 100 reaches [100, ∞)


def test_a_graduated_invoice_at_the_split_amount_is_approved_and_the_verdict_shows_the_split() -> None:
    v = run(billed("120", "5900.00"), rate()).verdict
    assert v.status is VerdictStatus.APPROVED and v.reason_codes == ()
    [line] = v.lines
    assert line.expected_amount == Decimal("5900.00") and line.variance == 0
    assert line.expected_unit_price == Decimal("49.166667")
    assert [(b.from_quantity, b.to_quantity, b.quantity, b.amount) for b in line.bands] == [
        (0, 100, 100, Decimal("5000.00")), (100, None, 20, Decimal("900.00"))]


def test_a_volume_line_is_priced_as_before_and_shows_no_split() -> None:
    v = run(billed("120", "5400.00"), rate(TierMode.VOLUME)).verdict
    assert v.status is VerdictStatus.APPROVED and v.reason_codes == ()
    assert v.lines[0].expected_unit_price == Decimal(45) and v.lines[0].bands == ()


def test_billing_a_graduated_line_at_the_volume_price_is_rejected_when_the_upper_band_costs_more() -> None:
    line = rate(bands=OVERAGE_BANDS)  # graduated: 100 x 45 + 20 x 50 = 5,500.00; volume: 120 x 50 = 6,000.00
    v = run(billed("120", "6000.00"), line).verdict
    assert v.status is VerdictStatus.REJECTED and v.reason_codes == ("PRICE_ABOVE_CONTRACT",)
    assert v.prevented_overpayment == Decimal("500.00") and v.lines[0].variance == Decimal("500.00")
    assert "100 HUR at 45.00 in band 0-100 + 20 HUR at 50.00 in band 100+" in v.lines[0].message
    assert run(billed("120", "5500.00"), line).verdict.status is VerdictStatus.APPROVED


def test_billing_a_graduated_line_below_the_split_is_a_note() -> None:
    v = run(billed("120", "5400.00"), rate()).verdict  # the volume price, cheaper with the issue's bands
    assert v.status is VerdictStatus.APPROVED and v.reason_codes == ("PRICE_BELOW_CONTRACT",)
    assert v.lines[0].variance == Decimal("-500.00")


def test_graduated_tolerance_is_per_unit_times_quantity_or_a_share_of_the_amount() -> None:
    assert run(billed("120", "5912.00"), rate(tolerance_absolute=Decimal("0.10"))).verdict.reason_codes == \
        ("PRICE_WITHIN_TOLERANCE",)  # 0.10 x 120 = 12.00
    assert run(billed("120", "5912.01"), rate(tolerance_absolute=Decimal("0.10"))).verdict.status is \
        VerdictStatus.REJECTED
    assert run(billed("120", "5959.00"), rate(tolerance_percent=Decimal(1))).verdict.reason_codes == \
        ("PRICE_WITHIN_TOLERANCE",)  # 1 % of 5,900.00


def test_each_band_price_is_escalated_and_discounted() -> None:
    line = rate(escalations=(Escalation(effective_date=date(2026, 2, 1), percent=Decimal(10)),),
                discount_percent=Decimal(5))
    split = graduated_split(line, start=Decimal(0), quantity=Decimal(120), on=ON, currency="EUR")
    assert [(b.unit_price, b.amount) for b in split] == [(Decimal("52.250000"), Decimal("5225.00")),
                                                          (Decimal("47.025000"), Decimal("940.50"))]


def test_per_invoice_lines_of_one_item_fill_the_bands_in_line_order() -> None:
    inv = s.invoice(lines=(s.line(1, quantity="80", unit_price="50.00"),
                           s.line(2, quantity="40", unit_price="47.50")))  # 20 x 50 + 20 x 45 = 1,900.00
    v = run(inv, rate()).verdict
    assert v.status is VerdictStatus.APPROVED and v.reason_codes == ()
    assert [lv.expected_amount for lv in v.lines] == [Decimal("4000.00"), Decimal("1900.00")]
    assert v.lines[1].bands == (band(0, 100, "20", "50", "1000.00"), band(100, None, "20", "45", "900.00"))
    # Per invoice, the next invoice starts again at zero: 40 units are all in the first band.
    again = run(billed("40", "2000.00", "INV-2"), rate(), run(inv, rate()).billing).verdict
    assert again.status is VerdictStatus.APPROVED and again.reason_codes == ()


def test_cumulative_units_billed_on_earlier_invoices_fill_the_lower_bands_first() -> None:
    line = rate(tier_basis=TierBasis.CUMULATIVE)
    first = run(billed("90", "4500.00"), line)
    assert first.verdict.status is VerdictStatus.APPROVED
    second = run(billed("30", "1400.00", "INV-2"), line, first.billing).verdict  # 10 x 50 + 20 x 45
    assert second.status is VerdictStatus.APPROVED and second.reason_codes == ()
    assert second.lines[0].bands == (band(0, 100, "10", "50", "500.00"), band(100, None, "20", "45", "900.00"))
    third = run(billed("10", "450.00", "INV-3"), line, first.billing.plus(BillingState(
        quantity_by_line={"L-DEV-HOUR": Decimal(30)}))).verdict
    assert third.status is VerdictStatus.APPROVED and third.lines[0].bands == (band(100, None, "10", "45", "450.00"),)


def test_a_rejected_invoice_does_not_fill_the_bands() -> None:
    line = rate(tier_basis=TierBasis.CUMULATIVE)
    rejected = run(billed("90", "5000.00"), line)  # 500.00 above 90 x 50
    assert rejected.verdict.status is VerdictStatus.REJECTED and rejected.billing == BillingState()
    reissued = run(billed("90", "4500.00", "INV-2"), line, rejected.billing).verdict
    assert reissued.status is VerdictStatus.APPROVED and reissued.lines[0].bands == (band(0, 100, "90", "50",
                                                                                          "4500.00"),)


def test_units_beyond_a_bounded_last_band_are_priced_at_the_line_price() -> None:
    bounded = (VolumeTier(from_quantity=Decimal(0), to_quantity=Decimal(100), unit_price=Decimal("45.00")),)
    split = graduated_split(rate(bands=bounded), start=Decimal(90), quantity=Decimal(20), on=ON, currency="EUR")
    assert split == (band(0, 100, "10", "45", "450.00"), band(100, None, "10", "50", "500.00"))
