from datetime import UTC, date, datetime, timedelta

from obligation_engine.domain.config import EngineConfig
from obligation_engine.domain.schedule import due_time, expand
from obligation_engine.samples import contract, obligations, terms_v

from contract_schema import ObligationDefinition, ObligationKind

START = date(2030, 1, 1)
NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)
CFG = EngineConfig()


def test_one_off_recurring_milestone_and_sla_windows_get_stable_ids() -> None:
    planned, errors = expand(contract("c1", START, now=NOW), NOW, CFG)
    assert errors == []
    assert planned["insurance-cert"].due_at == datetime(2030, 1, 22, tzinfo=UTC)  # end of the due day
    assert planned["go-live"].kind == "milestone"
    monthly = sorted((p for p in planned.values() if p.obligation_id == "monthly-report"), key=lambda p: p.due_at)
    assert [p.instance_id for p in monthly[:3]] == ["monthly-report#1", "monthly-report#2", "monthly-report#3"]
    assert monthly[1].due_at == due_time(date(2030, 2, 10), planned["go-live"].due_at.tzinfo)  # type: ignore[union-attr]
    sla = planned["availability@2030-02-01"]
    assert sla.window_start == datetime(2030, 2, 1, tzinfo=UTC)
    assert sla.window_end == datetime(2030, 3, 1, tzinfo=UTC)
    assert sla.due_at == datetime(2030, 3, 1, tzinfo=UTC) + timedelta(days=CFG.sla_grace_days)


def test_recurrences_stop_at_the_rolling_horizon() -> None:
    planned, _ = expand(contract("c1", START, now=NOW), NOW, EngineConfig(horizon_days=100))
    horizon = NOW + timedelta(days=101)
    assert all(p.due_at is None or p.window_start or p.due_at <= horizon for p in planned.values())
    assert len([p for p in planned.values() if p.obligation_id == "monthly-report"]) == 4  # Jan 10 .. Apr 10
    later, _ = expand(contract("c1", START, now=NOW), NOW + timedelta(days=200), EngineConfig(horizon_days=100))
    assert "monthly-report#8" in later  # the horizon rolled forward, ids keep counting from DTSTART


def test_time_zone_of_the_contract_sets_the_due_time() -> None:
    planned, _ = expand(contract("c1", START, now=NOW, timezone="Europe/Berlin"), NOW, CFG)
    assert planned["insurance-cert"].due_at == datetime(2030, 1, 21, 23, tzinfo=UTC)


def test_termination_removes_occurrences_from_that_day_on() -> None:
    planned, _ = expand(contract("c1", START, now=NOW), NOW, CFG, terminated_on=date(2030, 2, 15))
    assert "monthly-report#2" in planned and "monthly-report#3" not in planned
    assert "go-live" not in planned  # due 2030-02-15, the termination day


def test_an_amendment_governs_dates_from_its_effective_date() -> None:
    v1 = terms_v(1, START, obligations(START))
    moved = tuple(o.model_copy(update={"recurrence": "FREQ=MONTHLY;BYMONTHDAY=20"})
                  if o.obligation_id == "monthly-report" else o for o in obligations(START))
    v2 = terms_v(2, date(2030, 3, 1), moved, effective_date=START)
    planned, _ = expand(contract("c1", START, now=NOW, versions=(v1, v2)), NOW, CFG)
    assert planned["monthly-report#1"].due_at == datetime(2030, 1, 11, tzinfo=UTC)  # v1: on the 10th
    assert planned["monthly-report#2"].due_at == datetime(2030, 2, 11, tzinfo=UTC)
    assert planned["monthly-report#3"].due_at == datetime(2030, 3, 21, tzinfo=UTC)  # v2: on the 20th
    assert planned["monthly-report#3"].version == 2


def test_a_bad_rrule_is_reported_and_the_rest_still_scheduled() -> None:
    bad = ObligationDefinition(obligation_id="bad", kind=ObligationKind.PAYMENT, title="Bad", due_date=START,
                               recurrence="FREQ=SOMETIMES")
    snap = contract("c1", START, now=NOW, versions=(terms_v(1, START, obligations(START) + (bad,)),))
    planned, errors = expand(snap, NOW, CFG)
    assert len(errors) == 1 and "'bad'" in errors[0]
    assert "insurance-cert" in planned
