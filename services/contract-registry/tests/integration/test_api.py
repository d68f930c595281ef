"""The HTTP API against real PostgreSQL and Kafka, the app run in-process (TestClient, lifespan on)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from contract_registry.adapters.db import make_engine
from contract_registry.adapters.orm import OutboxRow
from contract_registry.entrypoints.views import ContractView
from contract_registry.examples import draft, terms
from fastapi.testclient import TestClient
from sqlalchemy import select

from mesh_testing import wait_for

from .conftest import Env, body, ce, token

W = token()
R = token(scopes=("contracts:read",))


def create(client: TestClient, headers: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    resp = client.post("/v1/contracts", json=draft(**overrides), headers=headers or W)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def outbox_ids(env: Env) -> list[str]:
    engine = make_engine(env.db_url, env.schema)
    try:
        with engine.connect() as conn:
            return [str(i) for i in conn.scalars(select(OutboxRow.id).order_by(OutboxRow.seq))]
    finally:
        engine.dispose()


def drained(env: Env) -> bool:
    engine = make_engine(env.db_url, env.schema)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(OutboxRow.id).where(OutboxRow.published_at.is_(None)).limit(1)) is None
    finally:
        engine.dispose()


def test_create_activate_amend_terminate_publish_exactly_the_expected_events_in_order(
        client: TestClient, env: Env) -> None:
    c = create(client)
    cid = c["contract_id"]
    assert client.post(f"/v1/contracts/{cid}/activate", headers=W).status_code == 200
    amended = client.post(f"/v1/contracts/{cid}/amendments", headers={**W, "If-Match": '"1"'},
                          json={"effective_from": "2026-05-01", "reason": "uplift",
                                "terms": terms(total_value="150000.00")})
    assert amended.status_code == 200, amended.text
    assert amended.headers["ETag"] == '"2"'
    done = client.post(f"/v1/contracts/{cid}/terminate", headers=W,
                       json={"terminated_on": "2026-09-30", "reason": "vendor breach"})
    assert done.status_code == 200, done.text

    state = env.read(env.settings.state_topic, 4)
    events = env.read(env.settings.events_topic, 3)
    wait_for(lambda: drained(env), timeout=60, message="outbox drained")
    assert env.count(env.settings.state_topic) == 4 and env.count(env.settings.events_topic) == 3  # exactly
    assert {m.key() for m in state + events} == {cid.encode()}
    assert [(body(m)["status"], len(body(m)["versions"])) for m in state] == [
        ("draft", 1), ("active", 1), ("active", 2), ("terminated", 2)]
    assert [ce(m, "ce_type") for m in events] == [
        "contractmesh.ContractActivated", "contractmesh.ContractAmended", "contractmesh.ContractTerminated"]
    amended_event = body(events[1])
    assert amended_event["version"] == 2 and amended_event["reason"] == "uplift"
    assert [ch["field"] for ch in amended_event["changes"]] == ["total_value"]
    assert body(events[2])["terminated_on"] == "2026-09-30"
    # ce_id is the outbox row id: stable across any re-send.
    assert sorted(ce(m) for m in state + events) == sorted(outbox_ids(env))


def test_get_as_of_a_past_date_returns_the_version_in_force_then(db_client: TestClient) -> None:
    cid = create(db_client)["contract_id"]
    db_client.post(f"/v1/contracts/{cid}/amendments", headers={**W, "If-Match": '"1"'},
                json={"effective_from": "2026-06-01", "reason": "more", "terms": terms(total_value="200000.00")})
    now = db_client.get(f"/v1/contracts/{cid}", headers=R)
    assert now.headers["ETag"] == '"2"' and now.json()["in_force"]["total_value"] == "200000.00"
    old = db_client.get(f"/v1/contracts/{cid}", params={"as_of": "2026-03-15"}, headers=R)
    assert old.status_code == 200
    assert old.headers["ETag"] == '"1"'
    assert old.json()["in_force"]["total_value"] == "120000.00" and old.json()["as_of"] == "2026-03-15"
    assert ContractView.model_validate(old.json()).version == 1  # the documented response model holds
    assert db_client.get(f"/v1/contracts/{cid}", params={"as_of": "2026-06-01"}, headers=R).json()["version"] == 2
    assert db_client.get(f"/v1/contracts/{cid}", params={"as_of": "2025-01-01"}, headers=R).status_code == 404
    assert db_client.get(f"/v1/contracts/{cid}", headers={**R, "If-None-Match": '"2"'}).status_code == 304
    assert db_client.get(f"/v1/contracts/{cid}", headers={**R, "If-None-Match": '"1"'}).status_code == 200


def test_amend_with_stale_if_match_is_412_and_without_it_428(db_client: TestClient) -> None:
    cid = create(db_client)["contract_id"]
    amendment = {"effective_from": "2026-05-01", "reason": "r", "terms": terms(total_value="1.00")}
    assert db_client.post(f"/v1/contracts/{cid}/amendments", headers={**W, "If-Match": '"1"'},
                       json=amendment).status_code == 200
    stale = db_client.post(f"/v1/contracts/{cid}/amendments", headers={**W, "If-Match": '"1"'}, json=amendment)
    assert stale.status_code == 412
    missing = db_client.post(f"/v1/contracts/{cid}/amendments", headers=W, json=amendment)
    assert missing.status_code == 428
    assert db_client.get(f"/v1/contracts/{cid}", headers=R).json()["version"] == 2  # nothing overwritten


def test_create_with_the_same_idempotency_key_returns_the_first_result(db_client: TestClient, db_env: Env) -> None:
    headers = {**W, "Idempotency-Key": "create-42"}
    first = db_client.post("/v1/contracts", json=draft(), headers=headers)
    again = db_client.post("/v1/contracts", json=draft(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["contract_id"] == first.json()["contract_id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(db_client.get("/v1/contracts", headers=R).json()["items"]) == 1
    assert len(outbox_ids(db_env)) == 1  # one snapshot, published once
    other = db_client.post("/v1/contracts", json=draft(title="different"), headers=headers)
    assert other.status_code == 422 and other.json()["detail"][0]["field"] == "Idempotency-Key"
    # Keys are per tenant: another tenant's identical key is a different create.
    b = db_client.post("/v1/contracts", json=draft(), headers={**token("tenant-b"), "Idempotency-Key": "create-42"})
    assert b.status_code == 201 and b.json()["contract_id"] != first.json()["contract_id"]


def test_auth_401_403_and_tenant_isolation_404(db_client: TestClient) -> None:
    cid = create(db_client)["contract_id"]
    assert db_client.get(f"/v1/contracts/{cid}").status_code == 401
    assert db_client.get(f"/v1/contracts/{cid}", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    assert db_client.post("/v1/contracts", json=draft(), headers=R).status_code == 403
    assert db_client.post(f"/v1/contracts/{cid}/activate", headers=R).status_code == 403
    other = token("tenant-b")
    assert db_client.get(f"/v1/contracts/{cid}", headers=other).status_code == 404
    assert db_client.get(f"/v1/contracts/{cid}/audit", headers=other).status_code == 404
    assert db_client.post(f"/v1/contracts/{cid}/activate", headers=other).status_code == 404
    assert db_client.post(f"/v1/contracts/{cid}/amendments", headers={**other, "If-Match": '"1"'},
                       json={"effective_from": "2026-05-01", "reason": "r", "terms": terms()}).status_code == 404
    assert db_client.get("/v1/contracts", headers=other).json()["items"] == []
    assert db_client.get(f"/v1/contracts/{cid}", headers=R).json()["status"] == "draft"  # untouched
    admin = token("tenant-a", scopes=("admin",))
    assert db_client.post(f"/v1/contracts/{cid}/activate", headers=admin).status_code == 200


def _rate_card(**changes: Any) -> list[dict[str, Any]]:
    card: list[dict[str, Any]] = terms()["rate_card"]
    for path, value in changes.items():
        line, attr = path.split("__", 1)
        if "__" in attr:
            _, idx, key = attr.split("__")
            card[int(line[1:])]["tiers"][int(idx)][key] = value
        else:
            card[int(line[1:])][attr] = value
    return card


RULES = [
    ("end before start", {"end_date": "2026-01-20"}, "terms.end_date"),
    ("notice longer than term", {"end_date": "2026-03-01"}, "terms.notice_period_days"),
    ("overlapping windows", {"rate_card": _rate_card(l1__valid_from="2026-07-01")}, "terms.rate_card[1].valid_from"),
    ("tiers not from zero", {"rate_card": _rate_card(l0__tiers__0__from_quantity="5")},
     "terms.rate_card[0].tiers[0].from_quantity"),
    ("tiers overlap", {"rate_card": _rate_card(l0__tiers__1__from_quantity="50")},
     "terms.rate_card[0].tiers[1].from_quantity"),
    ("tiers gap", {"rate_card": _rate_card(l0__tiers__1__from_quantity="150")},
     "terms.rate_card[0].tiers[1].from_quantity"),
    ("currency mismatch", {"rate_card": _rate_card(l1__currency="USD")}, "terms.rate_card[1].currency"),
    ("tiers duplicate lower bound", {"rate_card": _rate_card(l0__tiers__1__from_quantity="0")},
     "terms.rate_card[0].tiers[1].from_quantity"),
    ("tier of zero width", {"rate_card": _rate_card(l0__tiers__0__to_quantity="0")},
     "terms.rate_card[0].tiers[0].to_quantity"),
    ("graduated without tiers", {"rate_card": _rate_card(l1__tier_mode="graduated")}, "terms.rate_card[1].tier_mode"),
]


@pytest.mark.parametrize(("rule", "change", "field"), RULES, ids=[r[0] for r in RULES])
def test_each_business_rule_gives_422_naming_the_field(db_client: TestClient, rule: str, change: dict[str, Any],
                                                       field: str) -> None:
    resp = db_client.post("/v1/contracts", json=draft(terms=terms(**change)), headers=W)
    assert resp.status_code == 422, resp.text
    assert [d["field"] for d in resp.json()["detail"]] == [field]


def test_tier_mode_is_accepted_and_versioned_with_amendments(db_client: TestClient) -> None:
    cid = create(db_client)["contract_id"]
    assert db_client.get(f"/v1/contracts/{cid}", headers=R).json()["in_force"]["rate_card"][0]["tier_mode"] == "volume"
    resp = db_client.post(f"/v1/contracts/{cid}/amendments", headers={**W, "If-Match": '"1"'},
                          json={"effective_from": "2026-05-01", "reason": "graduated pricing",
                                "terms": terms(rate_card=_rate_card(l0__tier_mode="graduated"))})
    assert resp.status_code == 200, resp.text
    now = db_client.get(f"/v1/contracts/{cid}", params={"as_of": "2026-05-01"}, headers=R).json()
    old = db_client.get(f"/v1/contracts/{cid}", params={"as_of": "2026-04-30"}, headers=R).json()
    assert (now["version"], now["in_force"]["rate_card"][0]["tier_mode"]) == (2, "graduated")
    assert (old["version"], old["in_force"]["rate_card"][0]["tier_mode"]) == (1, "volume")
    bad = db_client.post(f"/v1/contracts/{cid}/amendments", headers={**W, "If-Match": '"2"'},
                         json={"effective_from": "2026-06-01", "reason": "typo",
                               "terms": terms(rate_card=_rate_card(l0__tier_mode="stepped"))})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][-4:] == ["terms", "rate_card", 0, "tier_mode"]


def test_amendment_effective_before_the_version_it_amends_is_422(db_client: TestClient) -> None:
    cid = create(db_client)["contract_id"]
    resp = db_client.post(f"/v1/contracts/{cid}/amendments", headers={**W, "If-Match": '"1"'},
                       json={"effective_from": "2026-01-15", "reason": "backdated", "terms": terms()})
    assert resp.status_code == 422
    assert [d["field"] for d in resp.json()["detail"]] == ["effective_from"]


def test_schema_errors_are_422_naming_the_field(db_client: TestClient) -> None:
    resp = db_client.post("/v1/contracts", json=draft(terms=terms(currency="EURO")), headers=W)
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"][-2:] == ["terms", "currency"]


def test_list_filters_and_cursor_pagination(db_client: TestClient) -> None:
    a = create(db_client, tags=["it"])["contract_id"]
    b = create(db_client, tags=["facilities"], counterparty={"party_id": "V-200", "name": "Beta"},
               owner={"name": "Max", "email": "max@example.com"},
               terms=terms(end_date="2026-12-31"))["contract_id"]
    c = create(db_client, tags=["it"])["contract_id"]
    db_client.post(f"/v1/contracts/{c}/activate", headers=W)

    def ids(**params: Any) -> list[str]:
        return [i["contract_id"] for i in db_client.get("/v1/contracts", params=params, headers=R).json()["items"]]

    assert ids() == [a, b, c]
    assert ids(status="active") == [c]
    assert ids(counterparty="V-200") == [b]
    assert ids(owner="max@example.com") == [b]
    assert ids(ending_before="2027-01-01") == [b]
    assert ids(tag="it") == [a, c]
    page1 = db_client.get("/v1/contracts", params={"limit": 2}, headers=R).json()
    assert [i["contract_id"] for i in page1["items"]] == [a, b] and page1["next_cursor"]
    page2 = db_client.get("/v1/contracts", params={"limit": 2, "cursor": page1["next_cursor"]}, headers=R).json()
    assert [i["contract_id"] for i in page2["items"]] == [c] and page2["next_cursor"] is None
    assert db_client.get("/v1/contracts", params={"cursor": "@@"}, headers=R).status_code == 422


def test_audit_log_records_who_what_and_request(db_client: TestClient) -> None:
    cid = create(db_client)["contract_id"]
    db_client.post(f"/v1/contracts/{cid}/activate", headers={**token(subject="bob"), "X-Request-ID": "req-7"})
    log = db_client.get(f"/v1/contracts/{cid}/audit", headers=R).json()["items"]
    assert [(e["action"], e["actor"]) for e in log] == [("created", "alice"), ("activated", "bob")]
    assert log[1]["request_id"] == "req-7"


def test_renew_adds_a_version_and_publishes_contract_renewed(client: TestClient, env: Env) -> None:
    cid = create(client)["contract_id"]
    client.post(f"/v1/contracts/{cid}/activate", headers=W)
    resp = client.post(f"/v1/contracts/{cid}/renew", headers={**W, "If-Match": '"1"'}, json={})
    assert resp.status_code == 200 and resp.json()["status"] == "renewed"
    assert resp.json()["in_force"]["end_date"] == "2028-01-31"
    events = env.read(env.settings.events_topic, 2)
    assert [ce(m, "ce_type") for m in events] == ["contractmesh.ContractActivated", "contractmesh.ContractRenewed"]
    assert client.post(f"/v1/contracts/{cid}/activate", headers=W).status_code == 409


def test_milestone_completion_publishes_milestone_completed_from_the_contract_side(
        client: TestClient, env: Env) -> None:
    cid = create(client)["contract_id"]
    url = f"/v1/contracts/{cid}/obligations/M1/complete"
    assert client.post(url, headers=W, json={}).status_code == 409  # draft: nothing to complete yet
    client.post(f"/v1/contracts/{cid}/activate", headers=W)
    resp = client.post(url, headers=W, json={"evidence_ref": "acceptance-protocol-1"})
    assert resp.status_code == 202
    assert [(s["obligation_id"], s["status"]) for s in resp.json()["obligation_states"]] == [("M1", "completed")]
    assert client.post(url, headers=W, json={}).status_code == 200  # repeated: no second event
    assert client.post(f"/v1/contracts/{cid}/obligations/nope/complete", headers=W).status_code == 404
    [msg] = env.read(env.settings.performance_topic, 1)
    wait_for(lambda: drained(env), timeout=60, message="outbox drained")
    assert env.count(env.settings.performance_topic) == 1
    event = body(msg)
    assert ce(msg, "ce_type") == "contractmesh.MilestoneCompleted" and msg.key() == cid.encode()
    assert (event["origin"], event["source_system"], event["obligation_id"]) == ("contract", "contract-registry", "M1")
    assert event["evidence_ref"] == "acceptance-protocol-1"


def test_ops_endpoints_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    metrics = client.get("/metrics").text
    assert "registry_outbox_published_total" in metrics and "registry_outbox_pending" in metrics
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert "/v1/contracts/{contract_id}/amendments" in spec["paths"]


def test_concurrent_retries_with_one_idempotency_key_create_one_contract(db_client: TestClient, db_env: Env) -> None:
    headers = {**W, "Idempotency-Key": "burst-1"}
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: db_client.post("/v1/contracts", json=draft(), headers=headers), range(6)))
    assert [r.status_code for r in responses] == [201] * 6
    assert len({r.json()["contract_id"] for r in responses}) == 1
    assert len(db_client.get("/v1/contracts", headers=R).json()["items"]) == 1
    assert len(outbox_ids(db_env)) == 1


def test_the_callers_trace_follows_the_change_onto_kafka(client: TestClient, env: Env) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {**W, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    assert client.post("/v1/contracts", json=draft(), headers=headers).status_code == 201
    [msg] = env.read(env.settings.state_topic, 1)
    assert ce(msg, "traceparent").split("-")[1] == trace_id
