"""The pieces under the HTTP answers: a broker that does not acknowledge is a 503 the client retries,
and the decisions webhook knows the tenant only from the secret that verifies the signature."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer
from renewal_sync.entrypoints.http import RenewalSettings, signing_tenant  # where the webhook reads them

from contract_schema.renewal import RenewalDecision
from mesh_common.http_publish import publish_or_problem
from mesh_common.signing import SignatureError, sign


def test_a_broker_that_does_not_answer_is_a_503_with_retry_after() -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 1500})  # nothing listens
    decision = RenewalDecision(contract_id="C-1", tenant_id="t1", decision="renew", decided_at=datetime.now(UTC))
    answer = publish_or_problem(producer, decision, topic="nowhere", source="/tests", event_id="e-1", timeout=3)
    assert answer is not None and answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"


def test_the_signing_secret_names_the_tenant() -> None:
    cfg = RenewalSettings(webhook_secrets={"t1": "s-one", "t2": "s-two"})
    body = b'{"x": 1}'
    assert signing_tenant(cfg, body, sign("s-one", body)) == "t1"
    assert signing_tenant(cfg, body, sign("s-two", body)) == "t2"
    with pytest.raises(SignatureError, match="does not match"):
        signing_tenant(cfg, body, sign("s-three", body))
    with pytest.raises(SignatureError, match="RENEWAL_WEBHOOK_SECRETS"):
        signing_tenant(RenewalSettings(webhook_secrets={}), body, sign("s-one", body))


def test_webhook_secrets_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENEWAL_WEBHOOK_SECRETS", '{"demo": "local-crm-webhook-secret"}')
    assert RenewalSettings().webhook_secrets == {"demo": "local-crm-webhook-secret"}
