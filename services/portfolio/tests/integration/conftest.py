"""One portfolio for the whole session: its own topic prefix on the test broker, its own schema on the test
cluster, the app on real HTTP (uvicorn on loopback) with the consumer beside it, and a producer that
publishes events as the mesh's services do. Each test works in a tenant of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from portfolio import samples
from portfolio.adapters.db import migrate, sqlalchemy_url
from portfolio.bootstrap import AppConfig
from portfolio.entrypoints.app import create_app
from portfolio.settings import INPUTS, PortfolioSettings

from contract_schema import Event
from contract_schema.codec import encode
from contract_schema.topics import topic_for
from mesh_common.auth import AuthSettings, issue_token
from mesh_common.clock import ManualClock
from mesh_common.settings import KafkaSettings
from mesh_testing import create_topics
from mesh_testing.http import serve
from mesh_testing.waiting import wait_for

AUTH = AuthSettings(hs256_secret="portfolio-integration-test-secret-0123456789")


def token(tenant: str, scopes: tuple[str, ...] = ("portfolio:read",)) -> str:
    return issue_token(AUTH, subject="tester", tenant=tenant, scopes=list(scopes))


@dataclass
class Portfolio:
    base_url: str
    prefix: str
    db_url: str
    schema: str
    bootstrap: str
    producer: Producer
    sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)

    def publish(self, *events: Event, ids: list[str] | None = None) -> list[str]:
        """Produce each event on its catalog topic (prefixed) as CloudEvents; wait until the broker has them."""
        out = []
        for i, event in enumerate(events):
            event_id = ids[i] if ids else str(uuid.uuid4())
            record = encode(event, source=samples.SOURCE, event_id=event_id)
            topic = self.prefix + topic_for(type(event)).name
            self.producer.produce(topic, key=record.key, value=record.value, headers=record.headers)
            self.sent.append((topic, record.key, record.value, record.headers))
            out.append(event_id)
        assert self.producer.flush(30) == 0
        return out

    def resend(self, n: int) -> None:
        """Produce the last `n` records again, byte for byte (what a producer's retry or a replay does)."""
        for topic, key, value, headers in self.sent[-n:]:
            self.producer.produce(topic, key=key, value=value, headers=headers)
        assert self.producer.flush(30) == 0

    def caught_up(self, group: str | None = None) -> bool:
        """The consumer group (the service's by default) has committed every input partition to its end."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group or f"{self.prefix}portfolio"})
        try:
            partitions = [TopicPartition(self.prefix + spec.name, p) for spec in INPUTS for p in range(3)]
            committed = consumer.committed(partitions, timeout=10)
            ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in committed]
            return all(end == 0 or tp.offset >= end for tp, end in zip(committed, ends, strict=True))
        finally:
            consumer.close()

    def get(self, path: str, tenant: str, **params: Any) -> httpx.Response:
        return httpx.get(self.base_url + path, params=params, timeout=10,
                         headers={"Authorization": f"Bearer {token(tenant)}"})

    def json(self, path: str, tenant: str, **params: Any) -> Any:
        response = self.get(path, tenant, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def until(self, path: str, tenant: str, check: Any, timeout: float = 30, **params: Any) -> Any:
        """The JSON at `path` once `check(json)` holds (the consumer is asynchronous)."""
        return wait_for(lambda: (lambda j: j if check(j) else None)(self.json(path, tenant, **params)),
                        timeout=timeout, message=f"{path} for {tenant}")


def config(db_url: str, schema: str, bootstrap: str, prefix: str, **overrides: Any) -> AppConfig:
    settings = PortfolioSettings(db_schema=schema, topic_prefix=prefix, consumer_group=f"{prefix}portfolio",
                                 poll_timeout=0.05, live_poll_seconds=0.1, stream_seconds=2, **overrides)
    return AppConfig(database_url=db_url, portfolio=settings, kafka=KafkaSettings(bootstrap_servers=bootstrap),
                     auth=AUTH, clock=ManualClock(samples.T0))


@pytest.fixture(scope="session")
def portfolio(kafka_bootstrap: str, postgres_url: str) -> Iterator[Portfolio]:
    prefix = f"pf{uuid.uuid4().hex[:8]}."
    names = [prefix + spec.name for spec in INPUTS]
    create_topics(kafka_bootstrap, names + [n + ".dlq" for n in names], partitions=3)
    db_url = sqlalchemy_url(postgres_url)
    schema = f"portfolio_{uuid.uuid4().hex[:10]}"
    migrate(db_url, schema)
    app = create_app(config(db_url, schema, kafka_bootstrap, prefix))
    producer = Producer(KafkaSettings(bootstrap_servers=kafka_bootstrap).producer())
    with serve(app) as base_url:
        yield Portfolio(base_url, prefix, db_url, schema, kafka_bootstrap, producer)


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"
