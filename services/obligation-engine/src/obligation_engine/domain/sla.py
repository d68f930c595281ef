"""SLA evaluation: a measurement against its target, and the service credit a miss earns."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from contract_schema import SlaComparison, SlaTerms, round_money


@dataclass(frozen=True)
class SlaResult:
    met: bool
    shortfall: Decimal
    steps: int
    credit_percent: Decimal
    credit: Decimal


def evaluate(terms: SlaTerms, measured: Decimal, currency: str) -> SlaResult:
    """credit = min(cap, credit_percent_per_step x ceil(shortfall / step)) % of the monthly fee."""
    if terms.comparison == SlaComparison.AT_LEAST:
        shortfall = terms.target - measured
    else:
        shortfall = measured - terms.target
    if shortfall <= 0:
        return SlaResult(True, Decimal(0), 0, Decimal(0), round_money(Decimal(0), currency))
    steps = int((shortfall / terms.step).to_integral_value(rounding=ROUND_CEILING))
    percent = min(terms.credit_cap_percent, terms.credit_percent_per_step * steps)
    credit = round_money(terms.monthly_fee * percent / Decimal(100), currency)
    return SlaResult(False, shortfall, steps, percent, credit)
