"""The service layer through bootstrap with fakes: what each event does to the renewal timelines and
what the clock makes due, down to the outbox rows, without a broker or a database (milliseconds)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from renewal_sync.adapters.fakes import FakeStore
from renewal_sync.adapters.ports import CRM, KAFKA
from renewal_sync.bootstrap import Wiring, bootstrap
from renewal_sync.settings import SOURCE, RenewalSettings

from contract_schema.alert import Alert
from contract_schema.codec import decode
from contract_schema.contract import ContractActivated, ContractTerminated
from contract_schema.renewal import OpportunityStatus, RenewalDecision, RenewalDecisionKind, RenewalOpportunity
from mesh_common.clock import ManualClock
from mesh_common.settings import KafkaSettings, ServiceSettings

from .factories import NOW, at, snapshot


@pytest.fixture
def wired() -> Wiring:
    return bootstrap(RenewalSettings(), service=ServiceSettings(), kafka=KafkaSettings(), store=FakeStore(),
                     clock=ManualClock(NOW), crm_enabled=True)


def store(w: Wiring) -> FakeStore:
    assert isinstance(w.worker.store, FakeStore)
    return w.worker.store


def at_time(w: Wiring, when: object) -> None:
    clock = w.worker.clock
    assert isinstance(clock, ManualClock)
    clock.set(when)  # type: ignore[arg-type]
    w.worker.after_batch()


def outbox_events(w: Wiring, target: str = KAFKA) -> list[object]:
    return [decode(r.value, r.headers).event for r in store(w).outbox if r.target == target]


def test_a_new_contract_is_stored_and_scheduled_and_announces_nothing_yet(wired: Wiring) -> None:
    wired.worker.apply_event(snapshot(), partition=3)
    wired.worker.after_batch()
    assert store(wired).states["C-1"][1] == 3 and store(wired).outbox == []
    assert len(wired.worker.index) == 1


def test_the_120_day_stage_fires_once_to_kafka_and_the_crm_with_its_alert(wired: Wiring) -> None:
    wired.worker.apply_event(snapshot(end_date=date(2026, 12, 31), notice=30))
    wired.worker.after_batch()
    at_time(wired, at(2026, 8, 4))  # the notice deadline is 2026-12-01: 120 days before is 2026-08-03
    at_time(wired, at(2026, 8, 5))  # nothing new is due a day later
    events = outbox_events(wired)
    opportunities = [e for e in events if isinstance(e, RenewalOpportunity)]
    assert [o.stage.value for o in opportunities] == ["120d"]
    assert len([e for e in events if isinstance(e, Alert)]) == 1
    assert [type(e) for e in outbox_events(wired, CRM)] == [RenewalOpportunity]
    assert {decode(r.value, r.headers).source for r in store(wired).outbox} == {SOURCE}


def test_a_decision_is_applied_and_a_termination_closes_the_opportunity_as_lost(wired: Wiring) -> None:
    wired.worker.apply_event(snapshot())
    at_time(wired, at(2026, 8, 4))
    wired.worker.apply_event(RenewalDecision(contract_id="C-1", tenant_id="t1",
                                             decision=RenewalDecisionKind.RENEW, decided_at=at(2026, 8, 4)))
    wired.worker.apply_event(ContractTerminated(contract_id="C-1", tenant_id="t1", version=1,
                                                occurred_at=at(2026, 8, 4), terminated_on=date(2026, 9, 1)))
    wired.worker.after_batch()
    last = [e for e in outbox_events(wired) if isinstance(e, RenewalOpportunity)][-1]
    assert last.status is OpportunityStatus.LOST and last.decision == RenewalDecisionKind.RENEW
    assert len(wired.worker.index) == 0  # a closed timeline is never due again


def test_events_that_carry_nothing_new_and_events_before_the_snapshot_change_nothing(wired: Wiring) -> None:
    wired.worker.apply_event(ContractTerminated(contract_id="C-9", tenant_id="t1", version=1, occurred_at=NOW,
                                                terminated_on=date(2026, 2, 1)))  # unknown contract
    wired.worker.apply_event(snapshot())
    wired.worker.after_batch()
    before = dict(store(wired).states)
    wired.worker.apply_event(ContractActivated(contract_id="C-1", tenant_id="t1", version=1, occurred_at=NOW))
    wired.worker.after_batch()
    assert store(wired).states == before and "C-9" not in store(wired).states and store(wired).saves == 1


def test_a_restarted_worker_rebuilds_its_timelines_from_the_store(wired: Wiring) -> None:
    wired.worker.apply_event(snapshot(), partition=1)
    wired.worker.after_batch()
    again = bootstrap(RenewalSettings(), service=ServiceSettings(), kafka=KafkaSettings(), store=store(wired),
                      clock=ManualClock(NOW + timedelta(days=1)), crm_enabled=True)
    assert again.worker.load([2]) == 0 and again.worker.load([1]) == 1
    assert len(again.worker.index) == 1
