"""One test per business rule: each names the offending field."""

from __future__ import annotations

from typing import Any

import pytest
from contract_registry.domain.model import TermsInput
from contract_registry.domain.validation import Violation, validate_amendment, validate_terms
from contract_registry.examples import terms
from pydantic import ValidationError

from contract_schema.contract import ContractTerms


def _terms(version: int = 1, effective_from: str | None = None, **overrides: Any) -> ContractTerms:
    data = TermsInput.model_validate(terms(**overrides)).model_dump()
    data["version"] = version
    data["effective_from"] = effective_from or data["effective_date"]
    return ContractTerms.model_validate(data)


def fields(violations: list[Violation]) -> list[str]:
    return [v.field for v in violations]


def test_valid_terms_pass() -> None:
    assert validate_terms(_terms()) == []


def test_end_before_start_names_end_date() -> None:
    v = validate_terms(_terms(end_date="2026-01-15"))
    assert fields(v) == ["terms.end_date"]
    assert "before effective_date" in v[0].message


def test_notice_period_longer_than_term_names_notice_period() -> None:
    v = validate_terms(_terms(end_date="2026-03-01", notice_period_days=90))
    assert fields(v) == ["terms.notice_period_days"]
    assert "28 days" in v[0].message


def test_notice_period_equal_to_term_is_allowed() -> None:
    assert validate_terms(_terms(end_date="2026-05-02", notice_period_days=90)) == []


def test_overlapping_rate_card_windows_for_same_item() -> None:
    t = terms()
    t["rate_card"][1]["valid_from"] = "2026-07-31"  # L1 runs to 2026-07-31 inclusive
    v = validate_terms(_terms(rate_card=t["rate_card"]))
    assert fields(v) == ["terms.rate_card[1].valid_from"]
    assert "CONSULT-SR" in v[0].message


def test_open_ended_window_overlaps_a_later_one() -> None:
    t = terms()
    t["rate_card"][0]["valid_to"] = None
    assert fields(validate_terms(_terms(rate_card=t["rate_card"]))) == ["terms.rate_card[1].valid_from"]


def test_windows_of_different_items_may_overlap() -> None:
    t = terms()
    t["rate_card"][1]["valid_from"] = "2026-02-01"
    t["rate_card"][1]["item_code"] = "CONSULT-JR"
    assert validate_terms(_terms(rate_card=t["rate_card"])) == []


def test_tiers_not_starting_at_zero() -> None:
    t = terms()
    t["rate_card"][0]["tiers"][0]["from_quantity"] = "1"
    assert fields(validate_terms(_terms(rate_card=t["rate_card"]))) == ["terms.rate_card[0].tiers[0].from_quantity"]


def test_tiers_overlapping() -> None:
    t = terms()
    t["rate_card"][0]["tiers"][1]["from_quantity"] = "90"
    v = validate_terms(_terms(rate_card=t["rate_card"]))
    assert fields(v) == ["terms.rate_card[0].tiers[1].from_quantity"]
    assert "overlapping" in v[0].message


def test_tiers_with_a_gap() -> None:
    t = terms()
    t["rate_card"][0]["tiers"][1]["from_quantity"] = "120"
    v = validate_terms(_terms(rate_card=t["rate_card"]))
    assert fields(v) == ["terms.rate_card[0].tiers[1].from_quantity"]
    assert "gap" in v[0].message


def test_tier_after_an_unbounded_tier_overlaps() -> None:
    t = terms()
    t["rate_card"][0]["tiers"] = [{"from_quantity": "0", "unit_price": "1"}, {"from_quantity": "5", "unit_price": "1"}]
    assert fields(validate_terms(_terms(rate_card=t["rate_card"]))) == ["terms.rate_card[0].tiers[1].from_quantity"]


def _with_tiers(*bands: tuple[str, str | None], mode: str = "graduated") -> ContractTerms:
    t = terms()
    t["rate_card"][0]["tier_mode"] = mode
    t["rate_card"][0]["tiers"] = [{"from_quantity": lo, "to_quantity": hi, "unit_price": "1"} for lo, hi in bands]
    return _terms(rate_card=t["rate_card"])


def test_graduated_tiers_that_cover_from_zero_pass() -> None:
    checked = _with_tiers(("0", "100"), ("100", None))
    assert validate_terms(checked) == []
    assert checked.rate_card[0].tier_mode == "graduated"


def test_a_zero_width_band_names_its_upper_bound() -> None:
    v = validate_terms(_with_tiers(("0", "100"), ("100", "100"), ("100", None)))
    assert fields(v) == ["terms.rate_card[0].tiers[1].to_quantity"]
    assert "zero width" in v[0].message


def test_a_band_of_negative_width_names_its_upper_bound() -> None:
    v = validate_terms(_with_tiers(("0", "100"), ("100", "50")))
    assert fields(v) == ["terms.rate_card[0].tiers[1].to_quantity"]
    assert "negative width" in v[0].message


def test_duplicate_lower_bounds() -> None:
    v = validate_terms(_with_tiers(("0", "100"), ("0", None)))
    assert fields(v) == ["terms.rate_card[0].tiers[1].from_quantity"]
    assert "duplicate lower bound" in v[0].message


def test_tiers_out_of_order() -> None:
    v = validate_terms(_with_tiers(("100", None), ("0", "100"), mode="volume"))
    assert fields(v) == ["terms.rate_card[0].tiers[1].from_quantity"]
    assert "out of order" in v[0].message


def test_graduated_without_tiers_names_tier_mode() -> None:
    v = validate_terms(_with_tiers())
    assert fields(v) == ["terms.rate_card[0].tier_mode"]


def test_an_unknown_tier_mode_is_a_schema_error_naming_it() -> None:
    t = terms()
    t["rate_card"][0]["tier_mode"] = "stepped"
    with pytest.raises(ValidationError) as info:
        _terms(rate_card=t["rate_card"])
    assert [e["loc"] for e in info.value.errors()] == [("rate_card", 0, "tier_mode")]


def test_currency_mismatch_between_contract_and_rate_card() -> None:
    t = terms()
    t["rate_card"][1]["currency"] = "USD"
    v = validate_terms(_terms(rate_card=t["rate_card"]))
    assert fields(v) == ["terms.rate_card[1].currency"]
    assert "USD" in v[0].message and "EUR" in v[0].message


def test_duplicate_obligation_ids() -> None:
    t = terms()
    t["obligations"][1]["obligation_id"] = "M1"
    assert fields(validate_terms(_terms(obligations=t["obligations"]))) == ["terms.obligations[1].obligation_id"]


def test_amendment_effective_before_the_version_it_amends() -> None:
    v1 = _terms(effective_from="2026-02-01")
    v2 = _terms(version=2, effective_from="2026-01-15")
    v = validate_amendment(v1, v2)
    assert fields(v) == ["effective_from"]


@pytest.mark.parametrize("effective_from", ["2026-02-01", "2026-05-01"])
def test_amendment_on_or_after_the_previous_version_is_fine(effective_from: str) -> None:
    assert validate_amendment(_terms(), _terms(version=2, effective_from=effective_from)) == []


def test_a_negative_band_bound_is_a_schema_error_naming_it() -> None:
    t = terms()
    t["rate_card"][0]["tiers"][1]["from_quantity"] = "-5"
    with pytest.raises(ValidationError) as info:
        _terms(rate_card=t["rate_card"])
    assert [e["loc"] for e in info.value.errors()] == [("rate_card", 0, "tiers", 1, "from_quantity")]
