"""Pricing a quantity by a rate-card line's tiers, in either tier mode; pure (docs/adr/0018).

Bands are half-open, [from_quantity, to_quantity), on the axis of the line's tier basis: the
invoice's own quantity (per-invoice) or everything billed on invoices not rejected so far
(cumulative). So bands 0-100 and 100+ put units 1 to 100 in the first band and the 101st in the
second: 120 units are 100 at the first band's price and 20 at the second's.

- volume: the band the quantity reaches prices every unit (`tier_price`);
- graduated: the units [start, start + quantity) are split across the bands they fall in, each part
  priced at its band's rate (`graduated_split`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from contract_schema import InvoiceLine, PricedBand, RateCardLine
from contract_schema.money import round_money

from .model import Finding, Reason, Severity

PRICE_PLACES = Decimal("0.000001")  # expected unit prices keep 6 decimals; amounts round to the currency


def price_on(rate: RateCardLine, list_price: Decimal, on: date) -> Decimal:
    """A list price x every escalation in effect on `on` (compounded) x (1 - discount), to 6 places."""
    price = list_price
    for escalation in sorted(rate.escalations, key=lambda e: e.effective_date):
        if escalation.effective_date <= on:
            price = price * (1 + escalation.percent / 100)
    price = price * (1 - rate.discount_percent / 100)
    return price.quantize(PRICE_PLACES)


def tier_price(rate: RateCardLine, tier_quantity: Decimal) -> Decimal:
    """Volume mode: the list price of the band the quantity reaches; the line's own price outside every band."""
    for tier in rate.tiers:
        if tier.from_quantity <= tier_quantity and (tier.to_quantity is None or tier_quantity < tier.to_quantity):
            return tier.unit_price
    return rate.unit_price


def _bands(rate: RateCardLine) -> list[tuple[Decimal, Decimal | None, Decimal]]:
    """The tiers as a partition of [0, ∞): (from, to, list price), any hole priced at the line's own price.

    The registry only accepts tiers that are ordered and contiguous from zero; a hole or an overlap in
    a snapshot from elsewhere is resolved here rather than pricing a unit twice or not at all.
    """
    out: list[tuple[Decimal, Decimal | None, Decimal]] = []
    pos: Decimal | None = Decimal(0)
    for tier in sorted(rate.tiers, key=lambda t: t.from_quantity):
        if pos is None:
            break
        if tier.from_quantity > pos:
            out.append((pos, tier.from_quantity, rate.unit_price))
            pos = tier.from_quantity
        if tier.to_quantity is not None and tier.to_quantity <= pos:
            continue
        out.append((pos, tier.to_quantity, tier.unit_price))
        pos = tier.to_quantity
    if pos is not None:
        out.append((pos, None, rate.unit_price))
    return out


def graduated_split(rate: RateCardLine, *, start: Decimal, quantity: Decimal, on: date,
                    currency: str) -> tuple[PricedBand, ...]:
    """Graduated mode: units [start, start + quantity) split across the bands, each part at its band's price.

    `start` is where the line's units begin on the tier axis (units already counted fill the lower bands
    first). Each part's amount is rounded to the currency, and the line's expected amount is their sum,
    so the split on the verdict adds up to it exactly.
    """
    end = start + quantity
    parts: list[PricedBand] = []
    for lo, hi, list_price in _bands(rate):
        upper = end if hi is None else min(end, hi)
        in_band = upper - max(start, lo)
        if in_band <= 0:
            continue
        unit = price_on(rate, list_price, on)
        parts.append(PricedBand(from_quantity=lo, to_quantity=hi, quantity=in_band, unit_price=unit,
                                amount=round_money(unit * in_band, currency)))
    return tuple(parts)


def split_amount(bands: Sequence[PricedBand]) -> Decimal:
    return sum((b.amount for b in bands), Decimal(0))


def blended_unit_price(rate: RateCardLine, bands: Sequence[PricedBand], *, start: Decimal, on: date) -> Decimal:
    """The expected amount per unit (for the verdict's unit price); the price at `start` for no units."""
    quantity = sum((b.quantity for b in bands), Decimal(0))
    if not quantity:
        return price_on(rate, tier_price(rate, start), on)
    return (split_amount(bands) / quantity).quantize(PRICE_PLACES)


def describe(bands: Sequence[PricedBand], unit: str) -> str:
    """'100 HUR at 50.00 in band 0-100 + 20 HUR at 45.00 in band 100+'."""
    def bounds(b: PricedBand) -> str:
        lo = f"{b.from_quantity.normalize():f}"
        return f"{lo}+" if b.to_quantity is None else f"{lo}-{b.to_quantity.normalize():f}"
    return " + ".join(f"{b.quantity.normalize():f} {unit} at {_price(b.unit_price)} in band {bounds(b)}"
                      for b in bands) or f"no {unit}"


def _price(price: Decimal) -> str:
    """A unit price to cents when it has no finer part, else with the places it has."""
    cents = price.quantize(Decimal("0.01"))
    return f"{cents:,}" if cents == price else f"{price.normalize():,f}"


def check_graduated(line: InvoiceLine, bands: Sequence[PricedBand], rate: RateCardLine,
                    currency: str) -> Finding | None:
    """A graduated line is checked on its amount: the blended unit price is rarely a round number.

    Above the split's sum beyond the tolerance is rejected; the tolerance is the line's absolute one
    per unit times the quantity, or its percentage of the expected amount, whichever is larger.
    """
    expected = split_amount(bands)
    diff = line.amount - expected
    if diff == 0:
        return None
    split = describe(bands, line.unit)
    if diff < 0:
        return Finding(Reason.PRICE_BELOW_CONTRACT, Severity.NOTE,
                       f"Billed {line.amount:,} {currency}, below the graduated contract amount of "
                       f"{expected:,} {currency} ({split}).")
    tolerance = max(rate.tolerance_absolute * line.quantity, expected * rate.tolerance_percent / 100)
    if diff <= tolerance:
        return Finding(Reason.PRICE_WITHIN_TOLERANCE, Severity.NOTE,
                       f"Billed {line.amount:,} {currency}, {diff} above the graduated contract amount of "
                       f"{expected:,} {currency} ({split}) but within the tolerance of "
                       f"{round_money(tolerance, currency)}.")
    over = round_money(diff, currency)
    return Finding(Reason.PRICE_ABOVE_CONTRACT, Severity.REJECT,
                   f"Billed {line.amount:,} {currency} but the graduated contract amount is {expected:,} {currency} "
                   f"({split}): {over:,} {currency} too much.", overpayment=over)
