"""Field validation: bad values are rejected with an error naming the field."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

import contract_schema as cs
from contract_schema import topics

from .samples import NOW, all_samples, snapshot


def _error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


def test_every_catalog_event_has_a_sample() -> None:
    sampled = {type(e) for e in all_samples()}
    in_catalog = {e for t in topics.CATALOG for e in t.events}
    assert in_catalog == sampled


def test_unknown_currency_rejected_naming_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        cs.RateCardLine(line_id="L", item_code="X", unit="EA", unit_price=Decimal(1), currency="XYZ",
                        valid_from=NOW.date())
    assert _error_fields(info.value) == {"currency"}
    assert "unknown ISO 4217" in str(info.value)


def test_naive_datetime_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        cs.ClockAdvanced(now=datetime(2026, 1, 1, 12, 0))
    assert _error_fields(info.value) == {"now"}


def test_negative_quantity_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        cs.InvoiceLine(line_no=1, item_code="X", quantity=Decimal("-1"), unit="EA", unit_price=Decimal(1),
                       amount=Decimal(-1), service_date=NOW.date())
    assert _error_fields(info.value) == {"quantity"}


def test_money_is_decimal_and_travels_as_string() -> None:
    line = snapshot().current.rate_card[0]
    assert isinstance(line.unit_price, Decimal)
    assert '"unit_price":"150.00"' in line.model_dump_json()


def test_float_nan_and_infinity_rejected() -> None:
    with pytest.raises(ValidationError):
        cs.InvoiceLine(line_no=1, item_code="X", quantity=Decimal("NaN"), unit="EA", unit_price=Decimal(1),
                       amount=Decimal(1), service_date=NOW.date())


def test_unknown_time_zone_rejected() -> None:
    data = snapshot().model_dump()
    data["timezone"] = "Mars/Olympus"
    with pytest.raises(ValidationError) as info:
        cs.ContractSnapshot.model_validate(data)
    assert _error_fields(info.value) == {"timezone"}


def test_terms_on_picks_version_in_force() -> None:
    snap = snapshot()
    assert snap.terms_on(NOW.date().replace(month=3)) is not None
    assert snap.terms_on(NOW.date().replace(month=3)).version == 1  # type: ignore[union-attr]
    assert snap.terms_on(NOW.date()).version == 2  # type: ignore[union-attr]
    assert snap.terms_on(NOW.date().replace(year=2020)) is None


def test_duplicate_invoice_line_numbers_rejected() -> None:
    sample = next(e for e in all_samples() if isinstance(e, cs.InvoiceReceived))
    data = sample.model_dump()
    data["lines"] = [data["lines"][0], data["lines"][0]]
    with pytest.raises(ValidationError, match="line_no values must be unique"):
        cs.InvoiceReceived.model_validate(data)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    data = cs.ClockAdvanced(now=NOW).model_dump(mode="json") | {"added_later": 1}
    assert cs.ClockAdvanced.model_validate(data).now == NOW


def test_round_money_uses_the_currency_minor_unit() -> None:
    assert cs.round_money(Decimal("10.005"), "EUR") == Decimal("10.00")
    assert cs.round_money(Decimal("10.015"), "EUR") == Decimal("10.02")
    assert cs.round_money(Decimal("1234.5"), "JPY") == Decimal("1234")
    assert cs.round_money(Decimal("1.0005"), "KWD") == Decimal("1.000")


def test_rate_card_line_written_before_tier_modes_decodes_as_volume() -> None:
    data = snapshot().model_dump(mode="json")
    for version in data["versions"]:
        for line in version["rate_card"]:
            del line["tier_mode"]
    decoded = cs.ContractSnapshot.model_validate(data)
    assert decoded.current.rate_card[0].tier_mode is cs.TierMode.VOLUME
    assert decoded == snapshot()


def test_graduated_tier_mode_and_band_split_round_trip() -> None:
    line = snapshot().current.rate_card[0].model_copy(update={"tier_mode": cs.TierMode.GRADUATED})
    assert cs.RateCardLine.model_validate(line.model_dump(mode="json")).tier_mode is cs.TierMode.GRADUATED
    band = cs.PricedBand(from_quantity=Decimal(0), to_quantity=Decimal(100), quantity=Decimal(100),
                         unit_price=Decimal("50.00"), amount=Decimal("5000.00"))
    verdict_line = cs.LineVerdict(line_no=1, status=cs.VerdictStatus.APPROVED, item_code="X",
                                  billed_unit_price=Decimal(50), billed_amount=Decimal(5000), bands=(band,))
    assert cs.LineVerdict.model_validate(verdict_line.model_dump(mode="json")).bands == (band,)
    older = verdict_line.model_dump(mode="json")
    del older["bands"]
    assert cs.LineVerdict.model_validate(older).bands == ()
