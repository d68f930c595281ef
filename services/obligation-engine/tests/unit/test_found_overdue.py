"""Obligations already past due when the engine first learns of a contract (registered late, a
migrated legacy contract, a backdated entry): tracked as overdue, one summary alert, completable."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from obligation_engine.domain import engine
from obligation_engine.domain.config import EngineConfig
from obligation_engine.domain.engine import Effect, Publish, Reject
from obligation_engine.domain.model import ContractState, Status
from obligation_engine.samples import contract, obligations, terms_v

from contract_schema import (
    Alert,
    ObligationCompleted,
    ObligationDefinition,
    ObligationEscalated,
    ObligationKind,
    ObligationOverdue,
    ObligationScheduled,
    Origin,
)

START = date(2030, 1, 1)
CFG = EngineConfig()
LATE = datetime(2030, 4, 16, 9, tzinfo=UTC)  # go-live (due 2030-02-15) is two months past due


def published(effects: list[Effect], cls: type) -> list:  # type: ignore[type-arg]
    return [e.event for e in effects if isinstance(e, Publish) and isinstance(e.event, cls)]


def registered_late(now: datetime = LATE) -> tuple[ContractState, list[Effect]]:
    return engine.apply_snapshot(ContractState("c1", 0), contract("c1", START, now=now), now, CFG)


def complete(state: ContractState, obligation_id: str, event_id: str, at: datetime = LATE,
             origin: Origin = Origin.ERP) -> tuple[ContractState, list[Effect]]:
    return engine.apply_completion(state, event_id=event_id, obligation_id=obligation_id, completed_at=at,
                                   origin=origin, source_system="sap", evidence_ref=None, now=LATE, cfg=CFG)


def test_past_due_at_registration_is_tracked_as_overdue_and_flagged() -> None:
    state, effects = registered_late()
    go_live = state.instances["go-live"]
    assert (go_live.status, go_live.found_overdue, go_live.overdue_since) == (Status.OVERDUE, True, go_live.due_at)
    assert {"go-live", "insurance-cert", "monthly-report#1", "monthly-report#3"} <= {
        e.instance_id for e in published(effects, ObligationOverdue)}
    overdue = next(e for e in published(effects, ObligationOverdue) if e.instance_id == "go-live")
    assert overdue.occurred_at == go_live.due_at  # overdue since its due time, not since we noticed
    assert "go-live" in {e.instance_id for e in published(effects, ObligationScheduled)}
    future = state.instances["monthly-report#5"]  # due 2030-05-10: an ordinary task
    assert future.status == Status.SCHEDULED and not future.found_overdue


def test_one_summary_alert_per_contract_instead_of_one_per_instance() -> None:
    state, effects = registered_late()
    alerts = published(effects, Alert)
    found = [i for i in state.instances.values() if i.found_overdue]
    assert len(found) >= 5
    assert [a.alert_type for a in alerts] == ["obligation.found-overdue"]
    assert alerts[0].tier == "red" and alerts[0].owner is not None and alerts[0].backup_owner is not None
    assert f"{len(found)} obligations already overdue" in alerts[0].what and "go-live" in alerts[0].why
    # The same snapshot again (a redelivery, a re-publish) finds nothing new: no second alert.
    _, again = engine.apply_snapshot(state, contract("c1", START, now=LATE), LATE, CFG)
    assert published(again, Alert) == [] and published(again, ObligationOverdue) == []


def test_found_overdue_never_escalates_one_by_one() -> None:
    state, _ = registered_late()
    state, effects = engine.advance(state, LATE + timedelta(days=30), CFG)
    found = {i.instance_id for i in state.instances.values() if i.found_overdue}
    assert not any(getattr(e, "instance_id", None) in found for e in published(effects, ObligationEscalated))
    assert not any(any(iid in a.alert_id for iid in found) for a in published(effects, Alert))
    assert "go-live" not in engine.wakeups(state, CFG)


def test_completion_of_a_found_overdue_milestone_is_published_for_billing() -> None:
    state, _ = registered_late()
    done_at = datetime(2030, 2, 10, tzinfo=UTC)  # done on time, only registered late
    new, effects = complete(state, "go-live", "erp-1", at=done_at)
    completed = published(effects, ObligationCompleted)
    assert len(completed) == 1 and completed[0].instance_id == "go-live" and completed[0].kind == "milestone"
    assert completed[0].amount == Decimal("25000.00") and completed[0].on_time
    assert new.instances["go-live"].status == Status.COMPLETED
    _, echo = complete(new, "go-live", "erp-2", at=done_at)
    assert echo == []  # completed stays completed: the two-way sync still ends there


def test_an_amendment_adding_a_past_obligation_raises_its_own_summary() -> None:
    state, _ = registered_late()
    backdated = ObligationDefinition(obligation_id="audit", kind=ObligationKind.COMPLIANCE, title="Audit",
                                     due_date=date(2030, 3, 1))
    v2 = terms_v(2, START, (*obligations(START), backdated))
    snap = contract("c1", START, now=LATE, versions=(terms_v(1, START, obligations(START)), v2))
    new, effects = engine.apply_snapshot(state, snap, LATE, CFG)
    alerts = published(effects, Alert)
    assert len(alerts) == 1 and "1 obligation already overdue" in alerts[0].what and "audit" in alerts[0].why
    assert new.instances["audit"].found_overdue


def test_pruned_history_is_not_found_overdue_again() -> None:
    state, _ = registered_late()
    state, _ = complete(state, "go-live", "erp-1")
    much_later = LATE + timedelta(days=CFG.keep_days + 30)
    state, _ = engine.advance(state, much_later, CFG)  # replans and prunes the completed milestone
    assert "go-live" not in state.instances and state.history_before is not None
    again, effects = engine.apply_snapshot(state, contract("c1", START, now=much_later), much_later, CFG)
    assert "go-live" not in again.instances
    assert not any(e.instance_id == "go-live" for e in published(effects, ObligationOverdue))


def test_sla_windows_older_than_the_lookback_stay_history() -> None:
    state, _ = registered_late()
    assert "availability@2030-01-01" not in state.instances  # a late measurement creates it on demand
    assert state.instances["availability@2030-03-01"].found_overdue  # due Apr 4: within the lookback


def test_a_completion_with_no_open_instance_is_a_finding_not_silence() -> None:
    now = datetime(2030, 1, 1, 9, tzinfo=UTC)
    far = ObligationDefinition(obligation_id="acceptance", kind=ObligationKind.MILESTONE, title="Acceptance",
                               due_date=date(2031, 6, 1), amount=Decimal("1000.00"))
    yearly = ObligationDefinition(obligation_id="recert", kind=ObligationKind.COMPLIANCE, title="Recertification",
                                  due_date=date(2031, 6, 1), recurrence="FREQ=YEARLY")
    snap = contract("c1", START, now=now, versions=(terms_v(1, START, (*obligations(START), far, yearly)),))
    state, _ = engine.apply_snapshot(ContractState("c1", 0), snap, now, CFG)
    assert "acceptance" not in state.instances  # beyond the 400-day horizon
    # A one-off completed early is completed all the same.
    new, effects = engine.apply_completion(state, event_id="e1", obligation_id="acceptance", completed_at=now,
                                           origin=Origin.ERP, source_system="sap", evidence_ref=None, now=now,
                                           cfg=CFG)
    assert [e.instance_id for e in published(effects, ObligationCompleted)] == ["acceptance"]
    assert new.instances["acceptance"].status == Status.COMPLETED
    with pytest.raises(Reject, match="'recert' .* has no open occurrence"):
        engine.apply_completion(state, event_id="e2", obligation_id="recert", completed_at=now, origin=Origin.ERP,
                                source_system="sap", evidence_ref=None, now=now, cfg=CFG)
    cancelled, _ = engine.apply_termination(state, date(2030, 1, 5), now, CFG)
    with pytest.raises(Reject, match="'go-live' .* is cancelled"):
        engine.apply_completion(cancelled, event_id="e3", obligation_id="go-live", completed_at=now,
                                origin=Origin.ERP, source_system="sap", evidence_ref=None, now=now, cfg=CFG)


def test_flags_survive_serialisation() -> None:
    state, _ = registered_late()
    state, _ = engine.advance(state, LATE + timedelta(days=CFG.keep_days + 30), CFG)
    back = ContractState.from_json(state.to_json())
    assert back.instances == state.instances and back.history_before == state.history_before
    assert any(i.found_overdue for i in back.instances.values())
