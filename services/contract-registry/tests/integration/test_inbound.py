"""Inbound: obligation status from the obligation-engine and CRM renewal decisions show on GET."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from confluent_kafka import Producer
from contract_registry.examples import draft
from fastapi.testclient import TestClient

from contract_schema.base import Origin
from contract_schema.codec import Envelope, decode, encode
from contract_schema.contract import ObligationKind
from contract_schema.obligation import ObligationCompleted, ObligationOverdue, SlaBreached
from contract_schema.renewal import RenewalDecision, RenewalDecisionKind
from mesh_common.dlq import read_dead_letter
from mesh_common.kafka import produce_event
from mesh_testing import wait_for

from .conftest import Env, token

W = token()
T0 = datetime(2026, 7, 1, 9, tzinfo=UTC)


def test_obligation_events_and_renewal_decisions_show_on_get_once_per_ce_id(client: TestClient, env: Env) -> None:
    cid = client.post("/v1/contracts", json=draft(), headers=W).json()["contract_id"]
    client.post(f"/v1/contracts/{cid}/activate", headers=W)
    common = {"contract_id": cid, "tenant_id": "tenant-a", "title": "t"}
    overdue = ObligationOverdue(obligation_id="M1", instance_id="M1", kind=ObligationKind.MILESTONE,
                                occurred_at=T0, **common)
    completed = ObligationCompleted(obligation_id="M1", instance_id="M1", kind=ObligationKind.MILESTONE,
                                    occurred_at=T0 + timedelta(days=2), completed_at=T0 + timedelta(days=2),
                                    on_time=False, origin=Origin.ERP, source_system="sap", **common)
    breached = SlaBreached(obligation_id="R1", instance_id="R1-2026-06", kind=ObligationKind.SLA, occurred_at=T0,
                           metric="availability", window_start=T0 - timedelta(days=30), window_end=T0,
                           measured=Decimal("99.1"), target=Decimal("99.9"), service_credit=Decimal("500.00"),
                           currency="EUR", **common)
    decision = RenewalDecision(contract_id=cid, tenant_id="tenant-a", decision=RenewalDecisionKind.RENEGOTIATE,
                               decided_by="carol", decided_at=T0)
    other_tenant = RenewalDecision(contract_id=cid, tenant_id="tenant-b", decision=RenewalDecisionKind.TERMINATE,
                                   decided_at=T0 + timedelta(days=9))
    producer = Producer(env.config.kafka.producer())
    topic = env.settings.obligation_events_topic
    produce_event(producer, overdue, source="/obligation-engine", event_id="ev-1", topic=topic)
    produce_event(producer, completed, source="/obligation-engine", event_id="ev-2", topic=topic)
    produce_event(producer, completed, source="/obligation-engine", event_id="ev-2", topic=topic)  # redelivery
    produce_event(producer, breached, source="/obligation-engine", event_id="ev-3", topic=topic)
    producer.produce(topic, key=cid.encode(), value=b"not json", headers=[("ce_id", b"junk")])
    produce_event(producer, other_tenant, source="/crm", event_id="ev-4", topic=env.settings.renewal_decision_topic)
    produce_event(producer, decision, source="/crm", event_id="ev-5", topic=env.settings.renewal_decision_topic)
    producer.flush(10)

    def seen() -> dict[str, Any]:
        body: dict[str, Any] = client.get(f"/v1/contracts/{cid}", headers=W).json()
        states = {s["obligation_id"]: s for s in body["obligation_states"]}
        ready = states.get("M1", {}).get("status") == "completed" and "R1" in states and body["renewal_decision"]
        return body if ready else {}

    body = wait_for(seen, timeout=90, interval=0.1, message="obligation states and renewal decision")
    states = {s["obligation_id"]: s for s in body["obligation_states"]}
    assert states["M1"]["source_system"] == "sap"
    assert states["R1"]["status"] == "sla-breached"
    assert body["renewal_decision"]["decision"] == "renegotiate"  # the other tenant's event changed nothing
    wait_for(lambda: env.count(topic + ".dlq") == 1, timeout=60, message="junk record dead-lettered")
    audit = client.get(f"/v1/contracts/{cid}/audit", headers=W).json()["items"]
    inbound = [(e["action"], e["request_id"]) for e in audit if e["actor"] != "alice"]
    # Once per ce_id (ev-2 came twice); two topics, so only the obligation events have a defined order.
    assert [a for a in inbound if a[0] != "renewal-decision"] == [
        ("obligation-overdue", "ev-1"), ("obligation-completed", "ev-2"), ("obligation-sla-breached", "ev-3")]
    assert [a for a in inbound if a[0] == "renewal-decision"] == [("renewal-decision", "ev-5")]


def test_an_event_of_another_topics_type_is_dead_lettered_with_the_reason(client: TestClient, env: Env) -> None:
    cid = client.post("/v1/contracts", json=draft(), headers=W).json()["contract_id"]
    misplaced = RenewalDecision(contract_id=cid, tenant_id="tenant-a", decision=RenewalDecisionKind.RENEW,
                                decided_at=T0)
    producer = Producer(env.config.kafka.producer())
    topic = env.settings.obligation_events_topic
    produce_event(producer, misplaced, source="/crm", event_id="misplaced-1", topic=topic)
    produce_event(producer, misplaced, source="/crm", event_id="placed-1", topic=env.settings.renewal_decision_topic)
    producer.flush(10)
    [dead] = env.read(topic + ".dlq", 1)
    reason = read_dead_letter(dead.headers()).reason
    assert "does not belong on clm.obligation.events.v1" in reason and "RenewalDecision" in reason
    # The same decision on its own topic is applied.
    wait_for(lambda: client.get(f"/v1/contracts/{cid}", headers=W).json()["renewal_decision"], timeout=60)


def test_a_late_older_renewal_decision_does_not_replace_a_newer_one(db_client: TestClient) -> None:
    registry = db_client.app.state.registry  # type: ignore[attr-defined]
    cid = db_client.post("/v1/contracts", json=draft(), headers=W).json()["contract_id"]
    newer = RenewalDecision(contract_id=cid, tenant_id="tenant-a", decision=RenewalDecisionKind.RENEW,
                            decided_at=T0 + timedelta(hours=1))
    older = RenewalDecision(contract_id=cid, tenant_id="tenant-a", decision=RenewalDecisionKind.TERMINATE,
                            decided_at=(T0 + timedelta(minutes=30)).astimezone(timezone(timedelta(hours=5))))
    assert registry.handle(decode_record(newer, "d-1"))
    assert not registry.handle(decode_record(older, "d-2"))
    assert not registry.handle(decode_record(newer, "d-1"))  # redelivery
    got = db_client.get(f"/v1/contracts/{cid}", headers=W).json()["renewal_decision"]
    assert (got["decision"], got["event_id"]) == ("renew", "d-1")


def decode_record(event: RenewalDecision, event_id: str) -> Envelope:
    record = encode(event, source="/crm", event_id=event_id)
    return decode(record.value, record.headers)
