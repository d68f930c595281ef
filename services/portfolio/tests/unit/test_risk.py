"""The vendor risk rules (risk_rules.toml) and the scorecard panel."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from portfolio import samples as s
from portfolio.domain.projections import project_scorecard
from portfolio.domain.risk import assess, load_rules
from portfolio.domain.rows import ScorecardRow
from portfolio.domain.scorecards import vendor_scorecards
from portfolio.domain.views import Filters
from pydantic import ValidationError

from contract_schema import VerdictStatus
from contract_schema.obligation import Scorecard, ScorecardScope

from .test_invoices_alerts import alert, invoice
from .test_panels import contract, obligation

RULES = load_rules()


def test_the_level_is_the_highest_that_holds_and_every_rule_that_holds_is_a_reason() -> None:
    level, reasons = assess({"open_red_alerts": 1, "on_time_rate": Decimal("0.6"), "overdue": 2}, RULES)
    assert level == "high"
    assert reasons == ["under 70 % of obligations completed on time", "a red alert is open",
                       "under 90 % of obligations completed on time", "an obligation is overdue"]
    assert assess({"overdue": 1}, RULES) == ("low", ["an obligation is overdue"])
    assert assess({"open_red_alerts": 0, "on_time_rate": Decimal(1)}, RULES) == ("stable", [])


def test_a_metric_without_a_value_holds_no_rule() -> None:
    assert assess({"sla_attainment": None, "on_time_rate": None}, RULES) == ("stable", [])


def test_a_rule_file_with_a_rule_of_two_bounds_fails_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rules]]\nlevel = "high"\nmetric = "overdue"\nbelow = 1\nat_least = 2\nreason = "both"\n')
    with pytest.raises(ValidationError, match="'both': give exactly one"):
        load_rules(bad)


def card(contract_id: str, met: int, measured: int, credits: str = "0") -> ScorecardRow:
    event = Scorecard(scorecard_id=f"acme/{contract_id}", scope=ScorecardScope.CONTRACT, counterparty_id="acme",
                      contract_id=contract_id, window_start=s.TODAY - timedelta(days=365), window_end=s.TODAY,
                      sla_measurements=measured, sla_met=met, credits_earned=Decimal(credits), currency="EUR",
                      updated_at=s.T0)
    row = project_scorecard(s.envelope(event), "clm.scorecard.v1").rows[0]
    assert isinstance(row, ScorecardRow)
    return row


def test_scorecard_panel_sums_the_tenants_contract_scorecards_per_counterparty() -> None:
    contracts = [contract(contract_id="C-1"), contract(contract_id="C-2"), contract(contract_id="C-3", party="globex")]
    view = vendor_scorecards(
        contracts, [card("C-1", 9, 10, "120"), card("C-2", 10, 10, "30")],
        [obligation(s.completed("C-1", "a#1")), obligation(s.completed("C-2", "a#2", on_time=False))],
        [invoice(s.verdict("I-1", contract_id="C-3", status=VerdictStatus.REJECTED)),
         invoice(s.verdict("I-2", contract_id="C-3"))],
        [alert(s.alert("A-1", contract_id="C-3"))], [], RULES, s.T0, Filters())
    acme, globex = view.counterparties
    assert (acme.sla_met, acme.sla_measurements, acme.sla_attainment) == (19, 20, Decimal("0.9500"))
    assert [(m.currency, m.amount) for m in acme.credits_earned] == [("EUR", Decimal("150.00"))]
    assert (acme.on_time_rate, acme.level) == (Decimal("0.5000"), "high")
    assert (globex.rejected_invoice_rate, globex.open_red_alerts, globex.level) == (Decimal("0.5000"), 1, "medium")
    assert "a red alert is open" in globex.reasons
    assert len(view.rules) == len(RULES) and view.rules[0].rule == "open_red_alerts >= 2"


def test_a_counterparty_scorecard_is_kept_for_the_record_only() -> None:
    event = Scorecard(scorecard_id="acme", scope=ScorecardScope.COUNTERPARTY, counterparty_id="acme",
                      window_start=s.TODAY, window_end=s.TODAY, updated_at=s.T0)
    assert project_scorecard(s.envelope(event), "clm.scorecard.v1").rows == ()
