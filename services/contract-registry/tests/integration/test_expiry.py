"""Contracts past their end date expire (or auto-renew) once, with the event on Kafka."""

from __future__ import annotations

from datetime import UTC, datetime

from contract_registry.entrypoints.app import create_app
from contract_registry.examples import draft, terms
from contract_registry.service import Registry
from fastapi.testclient import TestClient

from mesh_common.clock import ManualClock

from .conftest import body, ce, make_env, token

W = token()


def test_expiry_sweep_expires_and_auto_renews_exactly_once(db_url: str, schema: str, kafka_bootstrap: str) -> None:
    env = make_env(db_url, schema, kafka_bootstrap, expiry_in_process=False, consume_in_process=False)
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    env.config.clock = clock
    with TestClient(create_app(env.config)) as client:
        registry: Registry = client.app.state.registry  # type: ignore[attr-defined]
        plain = client.post("/v1/contracts", json=draft(terms=terms(auto_renew=False)), headers=W).json()
        auto = client.post("/v1/contracts", json=draft(), headers=W).json()
        client.post("/v1/contracts", json=draft(terms=terms(auto_renew=False)), headers=W)  # stays a draft
        for c in (plain, auto):
            assert client.post(f"/v1/contracts/{c['contract_id']}/activate", headers=W).status_code == 200
        assert registry.expire_due() == 0  # nothing is past its end yet

        clock.set(datetime(2027, 2, 2, tzinfo=UTC))
        assert registry.expire_due() == 2
        assert registry.expire_due() == 0  # a second sweep (or a second replica) finds nothing left

        got = {c["contract_id"]: client.get(f"/v1/contracts/{c['contract_id']}", headers=W).json()
               for c in (plain, auto)}
        assert got[plain["contract_id"]]["status"] == "expired"
        assert got[auto["contract_id"]]["status"] == "renewed"
        assert got[auto["contract_id"]]["in_force"]["end_date"] == "2028-01-31"
        events = env.read(env.settings.events_topic, 4)
        per_contract: dict[str, list[str]] = {}
        for m in events:  # partition order = per-contract order
            per_contract.setdefault((m.key() or b"").decode(), []).append(ce(m, "ce_type").split(".")[-1])
        assert per_contract == {plain["contract_id"]: ["ContractActivated", "ContractExpired"],
                                auto["contract_id"]: ["ContractActivated", "ContractRenewed"]}
        expired = next(body(m) for m in events if ce(m, "ce_type") == "contractmesh.ContractExpired")
        assert expired["expired_on"] == "2027-02-01"
