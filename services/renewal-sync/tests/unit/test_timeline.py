from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from renewal_sync.domain.timeline import ContractView, TimelineSettings, notice_deadline, timeline

from contract_schema.renewal import RenewalStage

from .factories import NOW, snapshot


def test_notice_deadline_is_end_date_minus_notice_period() -> None:
    assert notice_deadline(date(2026, 12, 31), 30) == date(2026, 12, 1)
    assert notice_deadline(None, 30) is None


def test_default_stages_at_120_90_60_30_days_before_deadline_then_deadline_and_end() -> None:
    view = ContractView.from_snapshot(snapshot(end_date=date(2026, 12, 31), notice=30))
    points = timeline(view, TimelineSettings(), NOW)
    assert [(p.stage, p.on) for p in points] == [
        (RenewalStage.DAYS_120, date(2026, 8, 3)),
        (RenewalStage.DAYS_90, date(2026, 9, 2)),
        (RenewalStage.DAYS_60, date(2026, 10, 2)),
        (RenewalStage.DAYS_30, date(2026, 11, 1)),
        (RenewalStage.NOTICE_DEADLINE, date(2026, 12, 1)),
        (RenewalStage.END_DATE, date(2026, 12, 31)),
    ]


def test_stages_are_due_at_local_midnight_of_the_contract_time_zone() -> None:
    view = ContractView.from_snapshot(snapshot(end_date=date(2026, 12, 31), notice=30, tz="America/New_York"))
    deadline = [p for p in timeline(view, TimelineSettings(), NOW) if p.stage is RenewalStage.NOTICE_DEADLINE][0]
    assert deadline.due_at == datetime(2026, 12, 1, 5, tzinfo=UTC)  # EST = UTC-5


def test_offsets_are_configurable() -> None:
    view = ContractView.from_snapshot(snapshot())
    stages = [p.stage for p in timeline(view, TimelineSettings(offsets_days=(60, 30)), NOW)]
    assert stages == [RenewalStage.DAYS_60, RenewalStage.DAYS_30, RenewalStage.NOTICE_DEADLINE, RenewalStage.END_DATE]
    with pytest.raises(ValueError):
        TimelineSettings(offsets_days=(45,))


def test_evergreen_contract_gets_periodic_reviews() -> None:
    view = ContractView.from_snapshot(snapshot(end_date=None, effective_date=date(2024, 3, 15)))
    points = timeline(view, TimelineSettings(review_every_months=12), datetime(2026, 1, 1, tzinfo=UTC))
    assert [(p.stage, p.on) for p in points] == [(RenewalStage.REVIEW, date(2025, 3, 15)),
                                                 (RenewalStage.REVIEW, date(2026, 3, 15))]
    assert points[0].key == "review:2025-03-15"


def test_amount_is_annualised_over_the_term() -> None:
    two_years = ContractView.from_snapshot(snapshot(effective_date=date(2025, 1, 1), end_date=date(2026, 12, 31),
                                                    total_value="200000.00"))
    assert two_years.annual_value == Decimal("100000.00")  # 200000 over 730 days
    one_year = ContractView.from_snapshot(snapshot(total_value="120000.00"))
    assert one_year.annual_value == Decimal("120000.00")
