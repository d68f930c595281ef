"""The simulators record what they receive and speak the shapes the services use, over real loopback HTTP."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from mesh_sim.crm import CrmSimSettings
from mesh_sim.crm import create_app as crm_app
from mesh_sim.erp import ErpSimSettings
from mesh_sim.erp import create_app as erp_app
from mesh_sim.kafka_out import EventSender
from mesh_sim.recorder import Recorder
from mesh_sim.smtp import SmtpCatcher
from mesh_sim.smtp import create_app as smtp_app
from mesh_sim.testing import free_port, serve_in_thread

from contract_schema.codec import decode
from contract_schema.obligation import MilestoneCompleted
from mesh_common.signing import SIGNATURE_HEADER, sign
from mesh_testing import create_topics, unique_name, wait_for

WEBHOOK_SECRET = "test-webhook-secret"


@pytest.fixture
def erp() -> Iterator[str]:
    settings = ErpSimSettings(token="erp-token", webhook_secret=WEBHOOK_SECRET)
    with serve_in_thread(erp_app(settings)) as url:
        yield url


@pytest.fixture
def crm(erp: str) -> Iterator[str]:
    # Decisions go to the ERP simulator's signed webhook: a real receiver that checks the signature.
    settings = CrmSimSettings(client_id="mesh", client_secret="s3cret", webhook_secret=WEBHOOK_SECRET,
                              decision_url=f"{erp}/ap/verdicts")
    with serve_in_thread(crm_app(settings)) as url:
        yield url


def test_erp_records_milestone_release_and_refuses_a_wrong_token(erp: str) -> None:
    ok = httpx.post(f"{erp}/milestones/C-1/M-1/release", json={"amount": "5000.00"},
                    headers={"Authorization": "Bearer erp-token"})
    bad = httpx.post(f"{erp}/milestones/C-1/M-2/release", json={}, headers={"Authorization": "Bearer nope"})
    assert ok.status_code == 202
    assert bad.status_code == 401
    received = httpx.get(f"{erp}/received", params={"kind": "milestone-release"}).json()
    assert [(r["body"]["obligation_id"], r["accepted"]) for r in received] == [("M-1", True), ("M-2", False)]
    assert received[0]["body"]["payload"] == {"amount": "5000.00"}
    assert received[1]["problem"] == "wrong bearer token"


def test_erp_verdict_webhook_checks_the_hmac_signature(erp: str) -> None:
    body = json.dumps({"invoice_id": "INV-1", "status": "approved"}).encode()
    good = httpx.post(f"{erp}/ap/verdicts", content=body,
                      headers={SIGNATURE_HEADER: sign(WEBHOOK_SECRET, body), "content-type": "application/json"})
    forged = httpx.post(f"{erp}/ap/verdicts", content=body, headers={SIGNATURE_HEADER: sign("other", body)})
    assert (good.status_code, forged.status_code) == (200, 401)
    verdicts = httpx.get(f"{erp}/received", params={"kind": "ap-verdict"}).json()
    assert [v["accepted"] for v in verdicts] == [True, False]
    assert verdicts[0]["body"]["invoice_id"] == "INV-1"
    assert "does not match" in verdicts[1]["problem"]
    # `since` returns only what is newer than a seq already seen.
    assert httpx.get(f"{erp}/received", params={"since": verdicts[0]["seq"]}).json()[0]["seq"] == verdicts[1]["seq"]


def test_erp_rejects_an_invalid_performance_event_naming_the_field(erp: str) -> None:
    resp = httpx.post(f"{erp}/performance/MilestoneCompleted", json={"obligation_id": "M-1"})
    assert resp.status_code == 422
    assert "contract_id" in resp.json()["detail"]
    assert httpx.post(f"{erp}/performance/Nonsense", json={}).status_code == 404


def test_erp_publishes_a_milestone_completion_on_kafka(kafka_bootstrap: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = unique_name("sim") + "."
    topic = prefix + "erp.performance.v1"
    create_topics(kafka_bootstrap, [topic])
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    completed = datetime(2026, 3, 1, 12, tzinfo=UTC)
    sender = EventSender("erp-simulator", topic_prefix=prefix)
    with serve_in_thread(erp_app(ErpSimSettings(topic_prefix=prefix), sender=sender)) as url:
        resp = httpx.post(f"{url}/performance/MilestoneCompleted", params={"event_id": "evt-1"}, timeout=30,
                          json={"contract_id": "C-9", "obligation_id": "M-1", "occurred_at": completed.isoformat(),
                                "completed_at": completed.isoformat(), "evidence_ref": "PRJ-7"})
        assert resp.status_code == 202, resp.text
        assert resp.json()["topic"] == topic
    sender.close()
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": unique_name("sim-reader")})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        msg = wait_for(lambda: consumer.poll(0.5), timeout=20, message="the milestone completion on Kafka")
        envelope = decode(msg.value(), msg.headers())
    finally:
        consumer.close()
    assert envelope.id == "evt-1"
    assert msg.key() == b"C-9"
    assert envelope.event == MilestoneCompleted(contract_id="C-9", obligation_id="M-1", source_system="erp-simulator",
                                                occurred_at=completed, completed_at=completed, evidence_ref="PRJ-7")


def _token(crm: str, secret: str = "s3cret") -> httpx.Response:
    return httpx.post(f"{crm}/services/oauth2/token",
                      data={"grant_type": "client_credentials", "client_id": "mesh", "client_secret": secret})


def test_crm_upserts_opportunities_by_external_id_with_an_oauth_token(crm: str) -> None:
    assert _token(crm, "wrong").status_code == 400
    token = _token(crm).json()["access_token"]
    path = f"{crm}/services/data/v59.0/sobjects/Opportunity/Contract_Id__c/C-7"
    headers = {"Authorization": f"Bearer {token}"}
    first = httpx.patch(path, json={"Name": "Renewal: C-7", "Renewal_Stage__c": "120d"}, headers=headers)
    second = httpx.patch(path, json={"Renewal_Stage__c": "90d"}, headers=headers)
    anonymous = httpx.patch(path, json={"Renewal_Stage__c": "60d"})
    assert (first.status_code, first.json()["created"]) == (201, True)
    assert (second.status_code, second.json()["created"]) == (200, False)
    assert first.json()["id"] == second.json()["id"]
    assert anonymous.status_code == 401 and anonymous.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    [opp] = httpx.get(f"{crm}/opportunities").json()
    assert opp["external_id"] == "C-7"
    assert opp["fields"] == {"Name": "Renewal: C-7", "Renewal_Stage__c": "90d"}
    assert [h["fields"]["Renewal_Stage__c"] for h in opp["history"]] == ["120d", "90d"]


def _collection(crm: str, token: str | None, records: list[dict[str, object]],
                all_or_none: bool = False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.patch(f"{crm}/services/data/v60.0/composite/sobjects/Opportunity/Contract_Id__c",
                       json={"allOrNone": all_or_none, "records": records}, headers=headers)


def _opp(contract_id: str, stage: str) -> dict[str, object]:
    return {"attributes": {"type": "Opportunity"}, "Contract_Id__c": contract_id, "Renewal_Stage__c": stage}


def test_crm_collection_upsert_answers_one_result_per_record_and_applies_the_others(crm: str) -> None:
    token = _token(crm).json()["access_token"]
    httpx.post(f"{crm}/faults/records", json={"external_id": "C-2", "status_code": "UNABLE_TO_LOCK_ROW"})
    first = _collection(crm, token, [_opp("C-1", "120d"), _opp("C-2", "120d"), {"Contract_Id__c": "C-3"},
                                     _opp("C-4", "90d"), _opp("C-4", "60d")])
    assert first.status_code == 200
    results = first.json()
    assert [r["success"] for r in results] == [True, False, False, False, False]
    assert results[0]["created"] is True and results[0]["id"].startswith("006")
    assert [r["errors"][0]["statusCode"] for r in results[1:]] == [
        "UNABLE_TO_LOCK_ROW", "INVALID_TYPE", "DUPLICATE_EXTERNAL_ID", "DUPLICATE_EXTERNAL_ID"]
    again = _collection(crm, token, [_opp("C-1", "90d"), _opp("C-2", "90d")]).json()  # the fault was one-off
    assert [(r["success"], r.get("created")) for r in again] == [(True, False), (True, True)]
    assert again[0]["id"] == results[0]["id"]
    opps = {o["external_id"]: o for o in httpx.get(f"{crm}/opportunities").json()}
    assert sorted(opps) == ["C-1", "C-2"]
    assert [h["fields"] for h in opps["C-1"]["history"]] == [{"Renewal_Stage__c": "120d"},
                                                             {"Renewal_Stage__c": "90d"}]
    calls = httpx.get(f"{crm}/received", params={"kind": "opportunity-collection-upsert"}).json()
    assert len(calls) == 2
    per_record = httpx.get(f"{crm}/received", params={"kind": "opportunity-upsert"}).json()
    assert [(r["path"].rsplit("/", 1)[1], r["accepted"]) for r in per_record][:2] == [("C-1", True), ("C-2", False)]


def test_crm_collection_upsert_all_or_none_rolls_back_every_record(crm: str) -> None:
    token = _token(crm).json()["access_token"]
    results = _collection(crm, token, [_opp("C-5", "120d"), {"Contract_Id__c": "C-6"}], all_or_none=True).json()
    assert [r["success"] for r in results] == [False, False]
    assert [r["errors"][0]["statusCode"] for r in results] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "INVALID_TYPE"]
    assert httpx.get(f"{crm}/opportunities").json() == []


def test_crm_collection_upsert_refuses_a_malformed_call_as_a_whole(crm: str) -> None:
    token = _token(crm).json()["access_token"]
    assert _collection(crm, None, [_opp("C-7", "120d")]).status_code == 401
    empty = _collection(crm, token, [])
    assert empty.status_code == 400 and empty.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    too_many = _collection(crm, token, [_opp(f"C-{i}", "120d") for i in range(201)])
    assert too_many.status_code == 400 and "200" in too_many.json()[0]["message"]
    httpx.post(f"{crm}/faults", json={"status": 503, "count": 1})
    assert _collection(crm, token, [_opp("C-7", "120d")]).status_code == 503  # an outage fails the whole call
    assert httpx.get(f"{crm}/opportunities").json() == []


def test_crm_fault_injection_answers_errors_then_recovers(crm: str) -> None:
    httpx.post(f"{crm}/faults", json={"status": 429, "count": 1, "retry_after": 2})
    limited = _token(crm)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert _token(crm).status_code == 200


def test_crm_decision_reaches_the_signed_webhook(crm: str, erp: str) -> None:
    resp = httpx.post(f"{crm}/decisions", json={"contract_id": "C-7", "decision": "terminate", "tenant_id": "acme"})
    assert resp.status_code == 200
    assert resp.json()["status_code"] == 200  # the receiver verified the signature
    [got] = httpx.get(f"{erp}/received", params={"kind": "ap-verdict"}).json()
    assert got["accepted"] is True
    assert (got["body"]["contract_id"], got["body"]["decision"], got["body"]["tenant_id"]) == ("C-7", "terminate",
                                                                                               "acme")
    assert httpx.post(f"{crm}/decisions", json={"contract_id": "C-7", "decision": "maybe"}).status_code == 422


def test_smtp_catcher_keeps_messages_readable_over_http() -> None:
    recorder = Recorder()
    port = free_port()
    catcher = SmtpCatcher(recorder, "127.0.0.1", port).start()
    try:
        with serve_in_thread(smtp_app(recorder)) as url:
            for to, subject in (("owner@example.com", "[RED] Overbilled"), ("backup@example.com", "[YELLOW] 90d")):
                msg = EmailMessage()
                msg["From"], msg["To"], msg["Subject"] = "mesh@example.com", to, subject
                msg.set_content("Contract C-1 was overbilled by 1,000.00 EUR.")
                msg.add_alternative("<p>Contract C-1 was overbilled</p>", subtype="html")
                with smtplib.SMTP("127.0.0.1", port) as smtp:
                    smtp.send_message(msg)
            everything = httpx.get(f"{url}/messages").json()
            for_owner = httpx.get(f"{url}/messages", params={"to": "OWNER@"}).json()
    finally:
        catcher.stop()
    assert [m["subject"] for m in everything] == ["[RED] Overbilled", "[YELLOW] 90d"]
    assert [m["rcpt_tos"] for m in for_owner] == [["owner@example.com"]]
    assert "overbilled by 1,000.00 EUR" in for_owner[0]["text"]
    assert "<p>Contract C-1 was overbilled</p>" in for_owner[0]["html"]


def test_crm_upserts_hubspot_deals_by_a_unique_property() -> None:
    with serve_in_thread(crm_app(CrmSimSettings(hubspot_token="pat-123"))) as crm:
        url = f"{crm}/crm/v3/objects/deals/batch/upsert"
        body = {"inputs": [{"idProperty": "contract_id", "id": "C-8",
                            "properties": {"contract_id": "C-8", "renewal_stage": "90d"}}]}
        first = httpx.post(url, json=body, headers={"Authorization": "Bearer pat-123"})
        body["inputs"][0]["properties"]["renewal_stage"] = "60d"
        second = httpx.post(url, json=body, headers={"Authorization": "Bearer pat-123"})
        wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer other"})
        [opp] = httpx.get(f"{crm}/opportunities").json()
    assert (first.status_code, first.json()["results"][0]["new"]) == (200, True)
    assert (second.status_code, second.json()["results"][0]["new"]) == (200, False)
    assert first.json()["results"][0]["id"] == second.json()["results"][0]["id"]
    assert wrong.status_code == 401
    assert [h["fields"]["renewal_stage"] for h in opp["history"]] == ["90d", "60d"]
