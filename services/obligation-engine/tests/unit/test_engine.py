from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from obligation_engine.domain import engine
from obligation_engine.domain.config import EngineConfig
from obligation_engine.domain.engine import CallErp, DeadLetter, Effect, Park, Publish, Reject
from obligation_engine.domain.model import ContractState, Parked, Status
from obligation_engine.domain.scorecard import contract_scorecard, counterparty_scorecard
from obligation_engine.samples import contract, obligations, terms_v

from contract_schema import (
    Alert,
    ContractStatus,
    ObligationCancelled,
    ObligationCompleted,
    ObligationDueSoon,
    ObligationEscalated,
    ObligationOverdue,
    ObligationScheduled,
    Origin,
    ReleaseMilestoneBilling,
    SlaBreached,
    SlaMeasured,
    SlaMeasurement,
    Tier,
)

START = date(2030, 1, 1)
NOW = datetime(2030, 1, 1, 9, tzinfo=UTC)
CFG = EngineConfig()


def published(effects: list[Effect], cls: type) -> list:  # type: ignore[type-arg]
    return [e.event for e in effects if isinstance(e, Publish) and isinstance(e.event, cls)]


def scheduled_state(now: datetime = NOW) -> ContractState:
    state, _ = engine.apply_snapshot(ContractState("c1", 3), contract("c1", START, now=now), now, CFG)
    return state


def test_snapshot_schedules_every_instance_once() -> None:
    state, effects = engine.apply_snapshot(ContractState("c1", 3), contract("c1", START, now=NOW), NOW, CFG)
    ids = [e.instance_id for e in published(effects, ObligationScheduled)]
    assert len(ids) == len(set(ids)) == len(state.instances)
    assert {"insurance-cert", "go-live", "monthly-report#1", "availability@2030-01-01"} <= set(ids)
    again, effects2 = engine.apply_snapshot(state, contract("c1", START, now=NOW), NOW, CFG)
    assert published(effects2, ObligationScheduled) == []


def test_amendment_moves_changed_dates_cancels_removed_and_keeps_completed() -> None:
    state = scheduled_state()
    state, _ = engine.apply_completion(state, event_id="e1", obligation_id="monthly-report",
                                       completed_at=NOW, origin=Origin.ERP, source_system="erp", evidence_ref=None,
                                       now=NOW, cfg=CFG)
    amended = tuple(
        o.model_copy(update={"due_date": date(2030, 3, 1)}) if o.obligation_id == "go-live" else o
        for o in obligations(START) if o.obligation_id != "insurance-cert")
    v2 = terms_v(2, START, amended)
    snap = contract("c1", START, now=NOW, versions=(terms_v(1, START, obligations(START)), v2))
    new, effects = engine.apply_snapshot(state, snap, NOW, CFG)
    moved = [e for e in published(effects, ObligationScheduled) if e.instance_id == "go-live"]
    assert moved and moved[0].due_at == datetime(2030, 3, 2, tzinfo=UTC)
    assert new.instances["go-live"].revision == 2
    assert [e.instance_id for e in published(effects, ObligationCancelled)] == ["insurance-cert"]
    assert new.instances["monthly-report#1"].status == Status.COMPLETED


def test_termination_cancels_future_instances_only() -> None:
    state = scheduled_state()
    new, effects = engine.apply_termination(state, date(2030, 2, 1), NOW, CFG)
    cancelled = {e.instance_id for e in published(effects, ObligationCancelled)}
    assert "go-live" in cancelled and "monthly-report#2" in cancelled
    assert "monthly-report#1" not in cancelled and "insurance-cert" not in cancelled
    assert all("terminated" in e.reason for e in published(effects, ObligationCancelled))


def test_due_soon_overdue_escalated_fire_once_each_at_their_times() -> None:
    state = scheduled_state()
    due = state.instances["insurance-cert"].due_at
    assert due is not None
    kinds = []
    for now in (due - timedelta(days=15), due - timedelta(days=14), due - timedelta(days=13), due,
                due + timedelta(days=1), due + timedelta(days=7), due + timedelta(days=8)):
        state, effects = engine.advance(state, now, CFG)
        kinds += [type(e).__name__ for e in published(effects, object)
                  if getattr(e, "instance_id", "") == "insurance-cert"]
    assert kinds == ["ObligationDueSoon", "ObligationOverdue", "ObligationEscalated"]
    assert state.instances["insurance-cert"].status == Status.ESCALATED


def test_catch_up_after_downtime_fires_every_missed_transition_but_alerts_once() -> None:
    state = scheduled_state()
    due = state.instances["insurance-cert"].due_at
    assert due is not None
    state, effects = engine.advance(state, due + timedelta(days=30), CFG)
    mine = [e for e in published(effects, object) if getattr(e, "instance_id", "") == "insurance-cert"]
    assert [type(e) for e in mine] == [ObligationDueSoon, ObligationOverdue, ObligationEscalated]
    alerts = [a for a in published(effects, Alert) if "insurance-cert" in a.alert_id]
    assert [a.alert_type for a in alerts] == ["obligation.escalated"]
    assert alerts[0].owner is not None and alerts[0].backup_owner is not None and alerts[0].deadline == due


def test_due_soon_alert_is_yellow_with_deadline_action_owner_backup() -> None:
    state = scheduled_state()
    due = state.instances["go-live"].due_at
    assert due is not None
    _, effects = engine.advance(state, due - timedelta(days=13), CFG)
    alert = next(a for a in published(effects, Alert) if "go-live" in a.alert_id)
    assert (alert.tier, alert.deadline, alert.owner, alert.backup_owner) == (Tier.YELLOW, due, alert.owner,
                                                                            alert.backup_owner)
    assert alert.owner and alert.owner.email == "olivia@example.com"
    assert alert.backup_owner and alert.backup_owner.email == "ben@example.com"
    assert "Go-live" in alert.required_action


def test_erp_completion_is_on_time_and_never_sent_back_to_erp() -> None:
    state = scheduled_state()
    new, effects = engine.apply_completion(state, event_id="e1", obligation_id="go-live",
                                           completed_at=NOW + timedelta(days=3), origin=Origin.ERP,
                                           source_system="sap", evidence_ref="GR-1", now=NOW, cfg=CFG)
    done = published(effects, ObligationCompleted)
    assert len(done) == 1 and done[0].on_time and done[0].origin == Origin.ERP and done[0].amount == Decimal("25000.00")
    assert published(effects, ReleaseMilestoneBilling) == [] and not any(isinstance(e, CallErp) for e in effects)
    assert [a.tier for a in published(effects, Alert)] == [Tier.GREEN]


def test_contract_side_completion_releases_billing_once_and_late_is_late() -> None:
    state = scheduled_state()
    late = datetime(2030, 3, 1, tzinfo=UTC)
    new, effects = engine.apply_completion(state, event_id="e2", obligation_id="go-live", completed_at=late,
                                           origin=Origin.CONTRACT, source_system="contract-registry",
                                           evidence_ref=None, now=late, cfg=CFG)
    assert published(effects, ObligationCompleted)[0].on_time is False
    commands = published(effects, ReleaseMilestoneBilling)
    assert len(commands) == 1 and commands[0].amount == Decimal("25000.00") and commands[0].erp_vendor_id == "V-100"
    assert sum(isinstance(e, CallErp) for e in effects) == 1
    # An echo from either side, or a redelivery, finds it completed: nothing to do, nothing sent.
    for origin, eid in ((Origin.ERP, "e3"), (Origin.CONTRACT, "e4"), (Origin.CONTRACT, "e2")):
        _, echo = engine.apply_completion(new, event_id=eid, obligation_id="go-live", completed_at=late,
                                          origin=origin, source_system="x", evidence_ref=None, now=late, cfg=CFG)
        assert echo == []


def test_recurring_completion_takes_the_earliest_open_instance() -> None:
    state = scheduled_state()
    for n, eid in ((1, "a"), (2, "b")):
        state, effects = engine.apply_completion(state, event_id=eid, obligation_id="monthly-report",
                                                 completed_at=NOW, origin=Origin.ERP, source_system="pm",
                                                 evidence_ref=None, now=NOW, cfg=CFG)
        assert published(effects, ObligationCompleted)[0].instance_id == f"monthly-report#{n}"


def test_unknown_contract_and_obligation_are_parked_then_dead_lettered() -> None:
    with pytest.raises(Park, match="unknown contract"):
        engine.apply_completion(ContractState("nope", 0), event_id="e", obligation_id="x", completed_at=NOW,
                                origin=Origin.ERP, source_system="erp", evidence_ref=None, now=NOW, cfg=CFG)
    with pytest.raises(Park, match="unknown obligation"):
        engine.apply_completion(scheduled_state(), event_id="e", obligation_id="x", completed_at=NOW,
                                origin=Origin.ERP, source_system="erp", evidence_ref=None, now=NOW, cfg=CFG)
    parked = Parked("e", "erp.performance.v1", 0, 7, b"k", b"v", (("ce_id", b"e"),), NOW, "unknown contract 'nope'")
    state = engine.park(ContractState("nope", 0), parked)
    assert engine.park(state, parked).parked == (parked,)  # redelivery parks once
    assert engine.wakeups(state, CFG)[engine.PARK_KEY] == NOW + timedelta(seconds=CFG.park_seconds)
    state, effects = engine.advance(state, NOW + timedelta(seconds=CFG.park_seconds - 1), CFG)
    assert effects == [] and state.parked
    state, effects = engine.advance(state, NOW + timedelta(seconds=CFG.park_seconds), CFG)
    assert [type(e) for e in effects] == [DeadLetter] and "unknown contract" in effects[0].reason  # type: ignore[union-attr]
    assert state.parked == ()


def _measurement(value: str, metric: str = "availability") -> SlaMeasurement:
    return SlaMeasurement(contract_id="c1", obligation_id="availability", source_system="monitoring",
                          occurred_at=datetime(2030, 2, 1, 1, tzinfo=UTC), metric=metric,
                          window_start=datetime(2030, 1, 1, tzinfo=UTC), window_end=datetime(2030, 2, 1, tzinfo=UTC),
                          value=Decimal(value))


def test_sla_miss_is_measured_and_breached_with_the_credit_and_a_red_alert() -> None:
    state = scheduled_state()
    new, effects = engine.apply_measurement(state, event_id="m1", m=_measurement("99.7"), now=NOW, cfg=CFG)
    measured, breached = published(effects, SlaMeasured), published(effects, SlaBreached)
    assert len(measured) == 1 and measured[0].met is False and measured[0].instance_id == "availability@2030-01-01"
    assert len(breached) == 1 and breached[0].service_credit == Decimal("1000.00") and breached[0].currency == "EUR"
    assert [a.tier for a in published(effects, Alert)] == [Tier.RED]
    _, again = engine.apply_measurement(new, event_id="m2", m=_measurement("99.1"), now=NOW, cfg=CFG)
    assert again == []  # the window was measured already


def test_sla_met_has_no_breach_and_wrong_metric_is_rejected() -> None:
    _, effects = engine.apply_measurement(scheduled_state(), event_id="m", m=_measurement("99.99"), now=NOW, cfg=CFG)
    assert published(effects, SlaMeasured)[0].met and published(effects, SlaBreached) == []
    with pytest.raises(Reject, match="latency"):
        engine.apply_measurement(scheduled_state(), event_id="m", m=_measurement("1", metric="latency"), now=NOW,
                                 cfg=CFG)


def test_scorecard_counts_completions_overdue_sla_and_credits() -> None:
    state = scheduled_state()
    state, _ = engine.apply_measurement(state, event_id="m1", m=_measurement("99.7"), now=NOW, cfg=CFG)
    state, _ = engine.apply_completion(state, event_id="e1", obligation_id="monthly-report", completed_at=NOW,
                                       origin=Origin.ERP, source_system="pm", evidence_ref=None, now=NOW, cfg=CFG)
    later = datetime(2030, 1, 25, tzinfo=UTC)
    state, _ = engine.advance(state, later, CFG)  # insurance-cert (due Jan 21) is overdue now
    card = contract_scorecard(state, later)
    assert card is not None
    assert (card.obligations_completed, card.completed_on_time, card.overdue) == (1, 1, 1)
    assert (card.sla_measurements, card.sla_met, card.credits_earned) == (1, 0, Decimal("1000.00"))
    assert card.obligations_due == 2 and card.scorecard_id == "acme/c1"
    total = counterparty_scorecard("acme", [card, card], later)
    assert (total.obligations_completed, total.credits_earned, total.currency) == (2, Decimal("2000.00"), "EUR")


def test_state_survives_serialisation() -> None:
    state = scheduled_state()
    state, _ = engine.apply_measurement(state, event_id="m1", m=_measurement("99.7"), now=NOW, cfg=CFG)
    state = engine.park(state, Parked("e", "t", 0, 1, b"k", b"\x00\xff", (("h", b"v"),), NOW, "why"))
    back = ContractState.from_json(state.to_json())
    assert back.instances == state.instances and back.parked == state.parked and back.snapshot == state.snapshot
    assert back.seen == state.seen and back.replan_at == state.replan_at


def test_wakeups_name_each_open_instance_next_transition() -> None:
    state = scheduled_state()
    w = engine.wakeups(state, CFG)
    due = state.instances["go-live"].due_at
    assert due is not None and w["go-live"] == due - timedelta(days=14)
    assert w[engine.REPLAN_KEY] == NOW + timedelta(days=CFG.replan_days)
    state, _ = engine.apply_completion(state, event_id="e", obligation_id="go-live", completed_at=NOW,
                                       origin=Origin.ERP, source_system="x", evidence_ref=None, now=NOW, cfg=CFG)
    assert "go-live" not in engine.wakeups(state, CFG)


def test_terminated_snapshot_status_cancels_too() -> None:
    state = scheduled_state()
    snap = contract("c1", START, now=NOW, status=ContractStatus.TERMINATED, terminated_on=date(2030, 1, 5))
    _, effects = engine.apply_snapshot(state, snap, NOW, CFG)
    assert "go-live" in {e.instance_id for e in published(effects, ObligationCancelled)}
