from decimal import Decimal

import pytest
from obligation_engine.domain.sla import evaluate
from obligation_engine.samples import sla_terms

from contract_schema import SlaComparison


@pytest.mark.parametrize(("measured", "met", "credit"), [
    ("99.95", True, "0.00"),
    ("99.9", True, "0.00"),
    ("99.85", False, "500.00"),  # 0.05 short = 1 step of 0.1 -> 5%
    ("99.7", False, "1000.00"),  # 0.2 short = 2 steps -> 10%
    ("99.65", False, "1500.00"),  # 0.25 short = 3 steps (ceil) -> 15%
    ("90", False, "3000.00"),  # capped at 30%
])
def test_at_least_target_credit_per_step_capped(measured: str, met: bool, credit: str) -> None:
    result = evaluate(sla_terms(), Decimal(measured), "EUR")
    assert result.met is met
    assert result.credit == Decimal(credit)


def test_at_most_target_counts_the_excess() -> None:
    terms = sla_terms(metric="p95_ms", target=Decimal(300), comparison=SlaComparison.AT_MOST, step=Decimal(50),
                      credit_percent_per_step=Decimal("2.5"), monthly_fee=Decimal("2000"))
    assert evaluate(terms, Decimal(300), "EUR").met
    r = evaluate(terms, Decimal(351), "EUR")
    assert (r.met, r.steps, r.credit) == (False, 2, Decimal("100.00"))


def test_credit_rounds_to_the_currency_minor_unit() -> None:
    terms = sla_terms(monthly_fee=Decimal("999"), credit_percent_per_step=Decimal("3.333"))
    r = evaluate(terms, Decimal("99.85"), "JPY")
    assert r.credit == Decimal("33")
