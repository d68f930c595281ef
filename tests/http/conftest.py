"""The four HTTP services, each served by real uvicorn on loopback, against the real broker and database.

Each fixture builds the service's own app (`create_app` / `create_api`) with a fresh schema and
topic prefix and seeds one resource of tenant `t1`, so the authorization matrix can ask another
tenant for it. Module-scoped: a service starts once per test file.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from sqlalchemy import create_engine, text

from contract_schema import InvoiceValidated
from contract_schema.alert import Alert, Tier
from contract_schema.topics import INVOICE_RECEIVED, RENEWAL_DECISION
from mesh_common.auth import AuthSettings, issue_token
from mesh_common.clock import SystemClock
from mesh_common.settings import KafkaSettings
from mesh_testing import create_topics, unique_name
from mesh_testing.http import serve

AUTH = AuthSettings(hs256_secret="http-edge-test-secret-0123456789abcdef")
WEBHOOK_SECRETS = {"t1": "whsec-tenant-one", "t2": "whsec-tenant-two"}


def bearer(tenant: str = "t1", *scopes: str) -> dict[str, str]:
    token = issue_token(AUTH, subject=f"user-{tenant}", tenant=tenant, scopes=list(scopes) or ["admin"])
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Service:
    name: str
    url: str
    # Path parameter values naming resources of tenant t1 (the matrix fills routes with them).
    ids: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


@contextlib.contextmanager
def _schema(url: str, prefix: str) -> Iterator[str]:
    engine = create_engine(url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


@pytest.fixture(scope="module")
def registry(postgres_sqlalchemy_url: str) -> Iterator[Service]:
    from contract_registry.adapters.db import migrate
    from contract_registry.entrypoints.app import AppConfig, create_app
    from contract_registry.examples import draft
    from contract_registry.settings import RegistrySettings

    with _schema(postgres_sqlalchemy_url, "http_reg") as schema:
        engine = create_engine(postgres_sqlalchemy_url)
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
        migrate(postgres_sqlalchemy_url, schema)
        # HTTP and the database only: the relay, consumers and sweeper are tested elsewhere.
        settings = RegistrySettings(db_schema=schema, relay_in_process=False, consume_in_process=False,
                                    expiry_in_process=False)
        app = create_app(AppConfig(database_url=postgres_sqlalchemy_url, registry=settings,
                                   kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"), auth=AUTH))
        with serve(app) as url:
            created = httpx.post(url + "/v1/contracts", json=draft(), headers=bearer("t1"), timeout=30)
            assert created.status_code == 201, created.text
            body = created.json()
            obligation = (body["in_force"].get("obligations") or [{}])[0].get("obligation_id", "OB-1")
            imported = httpx.post(url + "/v1/contracts:import", json=draft(), headers=bearer("t1"), timeout=30)
            assert imported.status_code == 202, imported.text
            yield Service("contract-registry", url, ids={"contract_id": body["contract_id"],
                                                         "obligation_id": obligation,
                                                         "import_id": imported.json()["import_id"]})


@pytest.fixture(scope="module")
def producer(kafka_bootstrap: str) -> Producer:
    return Producer(KafkaSettings(bootstrap_servers=kafka_bootstrap).producer())


@pytest.fixture(scope="module")
def validator(kafka_bootstrap: str, producer: Producer) -> Iterator[Service]:
    from invoice_validator import samples
    from invoice_validator.entrypoints.http import create_api
    from invoice_validator.settings import ValidatorSettings

    settings = ValidatorSettings(topic_prefix=unique_name("http") + ".")
    topic = settings.topic_prefix + INVOICE_RECEIVED.name
    create_topics(kafka_bootstrap, [topic], partitions=1)
    # The worker's verdict table, as the HTTP layer sees it: one verdict of tenant t1.
    inv = samples.invoice("INV-T1-1", tenant="t1")
    verdict = InvoiceValidated.model_validate({
        "invoice_id": inv.invoice_id, "tenant_id": "t1", "vendor_id": inv.vendor_id,
        "invoice_number": inv.invoice_number, "currency": inv.currency, "status": "approved",
        "total_billed": "0", "total_expected": "0", "validated_at": datetime.now(UTC).isoformat()})
    verdicts = {verdict.invoice_id: verdict}
    api = create_api(settings=settings, auth=AUTH, producer=producer, clock=SystemClock(),
                     verdict_for=verdicts.get, is_ready=lambda: True)
    with serve(api) as url:
        yield Service("invoice-validator", url, ids={"invoice_id": verdict.invoice_id},
                      extra={"topic": topic, "settings": settings})


@pytest.fixture(scope="module")
def renewal(postgres_url: str, kafka_bootstrap: str, producer: Producer) -> Iterator[Service]:
    from invoice_validator import samples
    from renewal_sync.adapters.store import Store
    from renewal_sync.adapters.tenants import ContractTenants
    from renewal_sync.domain.renewal import RenewalState
    from renewal_sync.domain.timeline import ContractView
    from renewal_sync.entrypoints.http import RenewalSettings, create_app

    with _schema(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1), "http_rs") as schema:
        cfg = RenewalSettings(topic_prefix=unique_name("http") + ".", db_schema=schema,
                              webhook_secrets=WEBHOOK_SECRETS)
        create_topics(kafka_bootstrap, [cfg.topic(RENEWAL_DECISION.name)], partitions=1)
        store = Store(postgres_url, schema)
        store.migrate()
        # One contract per tenant, stored the way the worker stores them.
        contracts = {t: unique_name(f"C-{t}") for t in ("t1", "t2")}
        store.save([(RenewalState(contract=ContractView.from_snapshot(samples.contract(cid, tenant=t))), 0)
                    for t, cid in contracts.items()], {}, [])
        store.close()
        app = create_app(cfg, producer, tenant_of=ContractTenants(postgres_url, schema).tenant_of)
        with serve(app) as url:
            yield Service("renewal-sync", url, ids=dict(contracts), extra={"cfg": cfg})


@pytest.fixture(scope="module")
def notifier(postgres_url: str, producer: Producer) -> Iterator[Service]:
    import notifier as notifier_package
    from notifier.adapters.store import Store
    from notifier.domain.rules import parse_rules
    from notifier.entrypoints.app import create_app
    from notifier.service import Links, Notifier

    rules_file = Path(notifier_package.__file__).parent / "rules" / "default.yaml"  # the shipped rules

    with _schema(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1), "http_nt") as schema:
        store = Store(postgres_url, schema)
        store.migrate()
        now = datetime.now(UTC)
        alert = Alert.model_validate({
            "alert_id": unique_name("A-t1"), "tenant_id": "t1", "contract_id": "C-1",
            "alert_type": "invoice.overbilled", "tier": "yellow", "title": "t", "what": "w",
            "dedup_key": unique_name("k"), "source_service": "tests", "raised_at": now.isoformat()})
        with store.tx():
            store.record_alert(alert, tier=Tier.YELLOW, rule="test", at=now, window=timedelta(hours=1),
                               escalation=None)
        rules = parse_rules(rules_file.read_text(), str(rules_file))
        n = Notifier(rules=rules, store=store, channels={}, producer=producer,
                     clock=SystemClock(), links=Links("http://127.0.0.1", "ack-secret", "calendar-secret"),
                     alerts_topic=unique_name("alerts"), notifications_topic=unique_name("notifications"))
        with serve(create_app(n, auth=AUTH)) as url:
            yield Service("notifier", url, ids={"alert_id": alert.alert_id, "token": "0" * 32})


ServiceFactory = Callable[[], Service]
