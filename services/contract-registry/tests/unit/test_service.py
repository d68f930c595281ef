"""The service layer through bootstrap with fakes: what each command writes (contract, audit entry,
outbox records in order) and what each inbound event does, without PostgreSQL or Kafka (milliseconds)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from contract_registry.adapters.fakes import FakeContractRepository, FakeUnitOfWork
from contract_registry.bootstrap import AppConfig, Wiring, bootstrap
from contract_registry.domain.contracts import InvalidTransition
from contract_registry.domain.model import Amendment, ContractDraft, MilestoneCompletion
from contract_registry.examples import draft, terms
from contract_registry.service import (
    HANDLERS,
    Caller,
    IdempotencyKeyReused,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from contract_registry.settings import SOURCE, RegistrySettings

from contract_schema.base import Event, Origin
from contract_schema.codec import Envelope, decode, encode
from contract_schema.contract import (
    ContractActivated,
    ContractAmended,
    ContractRenewed,
    ContractSnapshot,
    ObligationKind,
)
from contract_schema.obligation import MilestoneCompleted, ObligationCompleted, ObligationOverdue, SlaBreached
from contract_schema.renewal import RenewalDecision, RenewalDecisionKind
from contract_schema.topics import OBLIGATION_EVENTS, RENEWAL_DECISION
from mesh_common.clock import ManualClock

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
ALICE = Caller(subject="alice", tenant="t1", request_id="req-1")
SETTINGS = RegistrySettings(topic_prefix="p.")


@pytest.fixture
def wired() -> Wiring:
    return bootstrap(AppConfig(database_url="unused", registry=SETTINGS, clock=ManualClock(NOW)),
                     uow=FakeUnitOfWork())


def db(w: Wiring) -> FakeContractRepository:
    uow = w.registry.uow()
    assert isinstance(uow, FakeUnitOfWork)
    return uow.contracts


def published(w: Wiring, topic: str | None = None) -> list[tuple[str, Envelope]]:
    return [(r.topic, decode(r.record.value, r.record.headers)) for r in db(w).outbox if topic in (None, r.topic)]


def created(w: Wiring, **overrides: Any) -> ContractSnapshot:
    return w.registry.create(ALICE, ContractDraft.model_validate(draft(**overrides))).snapshot


def inbound(event: Event, event_id: str, source: str = "/contract-mesh/obligation-engine") -> Envelope:
    record = encode(event, source=source, event_id=event_id)
    return decode(record.value, record.headers)


def test_a_create_writes_the_contract_its_audit_entry_and_the_snapshot_to_the_outbox(wired: Wiring) -> None:
    snap = created(wired)
    assert wired.registry.get("t1", snap.contract_id)[0].title == "Consulting framework 2026"
    [(topic, envelope)] = published(wired)
    assert topic == "p.clm.contract.state.v1" and isinstance(envelope.event, ContractSnapshot)
    assert envelope.source == SOURCE == "/contract-mesh/contract-registry"
    assert envelope.id == str(db(wired).outbox[0].id)  # the outbox row id is the ce_id
    assert [(a.action, a.actor, a.request_id) for a in db(wired).audits] == [("created", "alice", "req-1")]


def test_a_change_publishes_the_snapshot_then_the_change_event(wired: Wiring) -> None:
    snap = created(wired)
    wired.registry.activate(ALICE, snap.contract_id, if_match='"1"')
    after = wired.registry.amend(ALICE, snap.contract_id, Amendment.model_validate(
        {"effective_from": "2026-04-01", "reason": "rate", "terms": terms(total_value="130000.00")}), if_match='"1"')
    assert after.current.version == 2
    kinds = [(t.removeprefix("p."), type(e.event).__name__) for t, e in published(wired)]
    assert kinds == [("clm.contract.state.v1", "ContractSnapshot"), ("clm.contract.state.v1", "ContractSnapshot"),
                     ("clm.contract.events.v1", "ContractActivated"), ("clm.contract.state.v1", "ContractSnapshot"),
                     ("clm.contract.events.v1", "ContractAmended")]
    events = [e.event for _, e in published(wired, SETTINGS.events_topic)]
    assert isinstance(events[0], ContractActivated) and isinstance(events[1], ContractAmended)


def test_a_refused_change_writes_nothing(wired: Wiring) -> None:
    snap = created(wired)
    amendment = Amendment.model_validate({"effective_from": "2026-04-01", "reason": "r", "terms": terms()})
    with pytest.raises(PreconditionRequired):
        wired.registry.amend(ALICE, snap.contract_id, amendment, if_match=None)
    with pytest.raises(PreconditionFailed):
        wired.registry.activate(ALICE, snap.contract_id, if_match='"7"')
    wired.registry.activate(ALICE, snap.contract_id, if_match=None)
    with pytest.raises(InvalidTransition):
        wired.registry.activate(ALICE, snap.contract_id, if_match=None)
    with pytest.raises(NotFound):  # another tenant's id is as good as absent
        wired.registry.activate(Caller("mallory", "t2"), snap.contract_id, if_match=None)
    assert len(published(wired)) == 3 and [a.action for a in db(wired).audits] == ["created", "activated"]


def test_an_idempotency_key_replays_the_first_create_and_refuses_another_body(wired: Wiring) -> None:
    body = ContractDraft.model_validate(draft())
    first = wired.registry.create(ALICE, body, "key-1")
    again = wired.registry.create(ALICE, body, "key-1")
    assert again.replayed and again.snapshot.contract_id == first.snapshot.contract_id
    with pytest.raises(IdempotencyKeyReused):
        wired.registry.create(ALICE, ContractDraft.model_validate(draft(title="other")), "key-1")
    assert len(db(wired).contracts) == 1 and len(published(wired)) == 1


def test_pages_follow_creation_order_with_filters(wired: Wiring) -> None:
    ids = [created(wired, tags=["a" if n % 2 else "b"]).contract_id for n in range(5)]
    first = wired.registry.list_contracts("t1", limit=2)
    rest = wired.registry.list_contracts("t1", limit=10, cursor=first.next_cursor)
    assert [i["contract_id"] for i in first.items + rest.items] == ids and rest.next_cursor is None
    assert len(wired.registry.list_contracts("t1", tag="a").items) == 2
    assert wired.registry.list_contracts("t2").items == []


def test_a_contract_side_completion_publishes_milestone_completed_once(wired: Wiring) -> None:
    snap = created(wired)
    wired.registry.activate(ALICE, snap.contract_id, if_match=None)
    after, first = wired.registry.complete_obligation(ALICE, snap.contract_id, "M1", MilestoneCompletion())
    _, again = wired.registry.complete_obligation(ALICE, snap.contract_id, "M1", MilestoneCompletion())
    assert (first, again) == (True, False)
    [(_, envelope)] = published(wired, SETTINGS.performance_topic)
    assert isinstance(envelope.event, MilestoneCompleted) and envelope.event.origin is Origin.CONTRACT
    assert {s.obligation_id: s.status for s in after.obligation_states} == {"M1": "completed"}


def test_the_sweep_renews_an_auto_renewing_contract_past_its_end(wired: Wiring) -> None:
    snap = created(wired)
    wired.registry.activate(ALICE, snap.contract_id, if_match=None)
    assert wired.registry.expire_due() == 0
    clock = wired.config.clock
    assert isinstance(clock, ManualClock)
    clock.set(datetime(2027, 2, 2, 9, tzinfo=UTC))  # the term ended 2027-01-31
    assert wired.registry.expire_due() == 1
    assert wired.registry.expire_due() == 0
    renewed = [e.event for _, e in published(wired, SETTINGS.events_topic)][-1]
    assert isinstance(renewed, ContractRenewed) and renewed.new_end_date == date(2028, 1, 31)


# ---- inbound ----------------------------------------------------------------------------------------


def test_the_handler_table_covers_exactly_what_the_inbound_topics_carry() -> None:
    assert set(HANDLERS) == set(OBLIGATION_EVENTS.events) | set(RENEWAL_DECISION.events)


def test_obligation_events_move_the_state_once_per_ce_id_and_never_back(wired: Wiring) -> None:
    cid = created(wired).contract_id
    common: dict[str, Any] = {"contract_id": cid, "tenant_id": "t1", "title": "t", "obligation_id": "M1",
                              "instance_id": "M1", "kind": ObligationKind.MILESTONE}
    overdue = ObligationOverdue(occurred_at=NOW, **common)
    done = ObligationCompleted(occurred_at=NOW + timedelta(days=2), completed_at=NOW + timedelta(days=2),
                               on_time=False, origin=Origin.ERP, source_system="sap", **common)
    assert wired.registry.handle(inbound(overdue, "ev-1"))
    assert wired.registry.handle(inbound(done, "ev-2"))
    assert not wired.registry.handle(inbound(done, "ev-2"))  # redelivery
    assert not wired.registry.handle(inbound(overdue, "ev-3"))  # older than the completion
    [state] = wired.registry.get("t1", cid)[0].obligation_states
    assert (state.status, state.source_system, state.completed_at) == ("completed", "sap", done.completed_at)
    assert [(a.action, a.request_id) for a in db(wired).audits[1:]] == [("obligation-overdue", "ev-1"),
                                                                         ("obligation-completed", "ev-2")]
    assert len(published(wired)) == 1  # inbound updates publish nothing by themselves


def test_an_sla_breach_keeps_its_figures(wired: Wiring) -> None:
    cid = created(wired).contract_id
    breach = SlaBreached(contract_id=cid, tenant_id="t1", title="t", obligation_id="R1", instance_id="R1-06",
                         kind=ObligationKind.SLA, occurred_at=NOW, metric="availability",
                         window_start=NOW - timedelta(days=30), window_end=NOW, measured=Decimal("99.1"),
                         target=Decimal("99.9"), service_credit=Decimal("500.00"), currency="EUR")
    assert wired.registry.handle(inbound(breach, "sla-1"))
    [entry] = [a for a in db(wired).audits if a.action == "obligation-sla-breached"]
    assert entry.details["service_credit"] == "500.00" and entry.details["metric"] == "availability"


def test_renewal_decisions_keep_the_newest_and_ignore_other_tenants(wired: Wiring) -> None:
    cid = created(wired).contract_id

    def decision(kind: RenewalDecisionKind, hours: int, tenant: str = "t1") -> RenewalDecision:
        return RenewalDecision(contract_id=cid, tenant_id=tenant, decision=kind,
                               decided_at=NOW + timedelta(hours=hours))

    assert wired.registry.handle(inbound(decision(RenewalDecisionKind.RENEW, 2), "d-1", "/crm"))
    assert not wired.registry.handle(inbound(decision(RenewalDecisionKind.TERMINATE, 1), "d-2", "/crm"))
    assert not wired.registry.handle(inbound(decision(RenewalDecisionKind.TERMINATE, 9, "t2"), "d-3", "/crm"))
    got = wired.registry.get("t1", cid)[1]
    assert got is not None and (got["decision"], got["event_id"]) == ("renew", "d-1")
    assert db(wired).processed == {"d-1", "d-2", "d-3"}  # an ignored event is not looked at twice


def test_an_event_the_registry_does_not_consume_is_bad_data(wired: Wiring) -> None:
    snap = created(wired)
    with pytest.raises(ValueError, match="got ContractSnapshot"):
        wired.registry.handle(inbound(snap, "x-1"))
