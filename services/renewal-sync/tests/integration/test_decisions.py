"""The decisions webhook: signature and replay checks, field-level 422s, and a decision
stopping the red escalation."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx

import contract_schema as cs
from contract_schema.alert import Tier
from contract_schema.renewal import RenewalDecision
from contract_schema.topics import CONTRACT_STATE, RENEWAL_DECISION, RENEWAL_OPPORTUNITY
from mesh_common.dlq import read_dead_letter
from mesh_common.signing import SIGNATURE_HEADER, sign
from mesh_testing import consume_all, unique_name, wait_for

from .conftest import Launch
from .harness import WEBHOOK_SECRET, day, snapshot


def _post(url: str, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"} | ({SIGNATURE_HEADER: signature} if signature else {})
    return httpx.post(url + "/v1/crm/decisions", content=body, headers=headers, timeout=10)


def test_webhook_rejects_bad_signatures_replays_and_bad_bodies(launch: Launch) -> None:
    service, _, _ = launch(None)
    body = json.dumps({"contract_id": "C-x", "tenant_id": "t1", "decision": "renew",
                       "decided_at": "2026-09-01T10:00:00+00:00"}).encode()
    bad = _post(service.url, body, sign("wrong-secret", body))
    assert bad.status_code == 401 and "does not match" in bad.json()["detail"]
    assert _post(service.url, body, None).status_code == 401
    replay = _post(service.url, body, sign(WEBHOOK_SECRET, body, int(time.time()) - 3600))
    assert replay.status_code == 401 and "window" in replay.json()["detail"]

    invalid = json.dumps({"contract_id": "C-x", "tenant_id": "t1", "decision": "maybe",
                          "decided_at": "2026-09-01T10:00:00+00:00"}).encode()
    response = _post(service.url, invalid, sign(WEBHOOK_SECRET, invalid))
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "decision"
    missing = json.dumps({"tenant_id": "t1", "decision": "renew", "decided_at": "2026-09-01T10:00:00+00:00"}).encode()
    assert _post(service.url, missing, sign(WEBHOOK_SECRET, missing)).json()["detail"][0]["field"] == "contract_id"
    assert httpx.get(service.url + "/healthz").status_code == 200
    assert "renewal_" in httpx.get(service.url + "/metrics").text or httpx.get(service.url + "/metrics").is_success


def test_a_decision_is_published_and_stops_the_red_escalation(launch: Launch) -> None:
    service, bus, crm = launch("hubspot")
    assert crm is not None
    decided, undecided = unique_name("C-decided"), unique_name("C-open")
    bus.tick(day(2026, 1, 1))
    bus.contract(snapshot(decided))
    bus.contract(snapshot(undecided))
    bus.tick(day(2026, 9, 2))
    wait_for(lambda: len(bus.alerts(decided)) == 1 and len(bus.alerts(undecided)) == 1, timeout=30)

    body = json.dumps({"contract_id": decided, "tenant_id": "t1", "decision": "renegotiate",
                       "decided_by": "ann@example.com", "decided_at": datetime.now(UTC).isoformat()}).encode()
    response = _post(service.url, body, sign(WEBHOOK_SECRET, body))
    assert response.status_code == 202, response.text
    published = wait_for(lambda: [e for e in bus.reader(RENEWAL_DECISION.name).events()
                                  if isinstance(e, RenewalDecision) and e.contract_id == decided], timeout=20)
    assert published[0].decision.value == "renegotiate"
    wait_for(lambda: (u := crm.last(decided)) is not None and u.body["inputs"][0]["properties"]["renewal_decision"]
             == "renegotiate", timeout=30, message="decision pushed to the CRM")
    opp = wait_for(lambda: [o for o in bus.opportunities(decided) if o.decision == "renegotiate"], timeout=20)[0]
    assert not opp.auto_renewal_risk

    bus.tick(day(2026, 11, 1))  # 30d: red without a decision, no red with one
    wait_for(lambda: len(bus.alerts(undecided)) == 2 and len(bus.alerts(decided)) == 2, timeout=30)
    assert bus.alerts(undecided)[-1].tier is Tier.RED
    assert bus.alerts(decided)[-1].tier is Tier.GREEN
    assert all(a.tier is not Tier.RED for a in bus.alerts(decided))


def test_undecodable_input_goes_to_the_dlq_and_the_service_keeps_going_and_traces_follow(
        launch: Launch, kafka_bootstrap: str) -> None:
    _, bus, _ = launch(None)
    cid = unique_name("C-after-garbage")
    bus.producer.produce(bus.prefix + CONTRACT_STATE.name, key=b"C-garbage", value=b"{not json",
                         headers=[("ce_specversion", b"1.0"), ("ce_id", b"g-1"), ("ce_source", b"/tests"),
                                  ("ce_type", b"contractmesh.ContractSnapshot")])
    misplaced = cs.encode(cs.ClockAdvanced(now=day(2026, 1, 1)), source="/tests", event_id="clock-on-state")
    bus.producer.produce(bus.prefix + CONTRACT_STATE.name, key=b"C-misplaced", value=misplaced.value,
                         headers=misplaced.headers)  # a clock tick on the contract-state topic
    bus.producer.flush(10)
    bus.tick(day(2026, 8, 3))
    # The service follows the clock in a thread of its own: wait until it is at 08-03 (a first
    # contract's 120d stage is announced), so the traced contract's stage is due while its
    # snapshot is handled, inside the span that continues the snapshot's trace.
    clock_probe = unique_name("C-clock-probe")
    bus.contract(snapshot(clock_probe))
    wait_for(lambda: len(bus.opportunities(clock_probe)) == 1, timeout=30, message="the clock at 08-03")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    bus.contract(snapshot(cid), traceparent=f"00-{trace_id}-00f067aa0ba902b7-01")  # 120d due: announced at once
    wait_for(lambda: len(bus.opportunities(cid)) == 1, timeout=30, message="the next record still handled")
    headers = [h for e, h in bus.reader(RENEWAL_OPPORTUNITY.name).records
               if isinstance(e, cs.RenewalOpportunity) and e.contract_id == cid][0]
    assert headers["traceparent"].split("-")[1] == trace_id  # the trace follows the contract into the opportunity
    dead = {m.value(): read_dead_letter(m.headers()).reason
            for m in consume_all(kafka_bootstrap, bus.prefix + CONTRACT_STATE.name + ".dlq", 2, timeout=20)}
    assert "not JSON" in dead[b"{not json"]
    assert "contractmesh.ClockAdvanced does not belong on clm.contract.state.v1" in dead[misplaced.value]
