"""Fixtures for the registry's integration tests: one fresh PostgreSQL schema per test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from contract_registry.adapters.db import migrate, sqlalchemy_url
from contract_registry.entrypoints.app import AppConfig, create_app
from contract_registry.settings import RegistrySettings
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from contract_schema.codec import header_map
from mesh_common.auth import AuthSettings, issue_token
from mesh_common.settings import KafkaSettings
from mesh_testing import consume_all, create_topics, unique_name


@pytest.fixture
def db_url(postgres_url: str) -> str:
    return sqlalchemy_url(postgres_url)


@pytest.fixture
def empty_schema(db_url: str) -> Iterator[str]:
    """A new, empty schema; dropped after the test."""
    name = f"reg_{uuid.uuid4().hex[:12]}"
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


@pytest.fixture
def schema(db_url: str, empty_schema: str) -> str:
    """A schema migrated to head."""
    migrate(db_url, empty_schema)
    return empty_schema


# ---- the app against real Kafka -------------------------------------------------------------------




AUTH = AuthSettings(hs256_secret="registry-integration-test-secret-0123456789")


def token(tenant: str = "tenant-a", scopes: tuple[str, ...] = ("contracts:read", "contracts:write"),
          subject: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(AUTH, subject=subject, tenant=tenant, scopes=list(scopes))}"}


@dataclass
class Env:
    db_url: str
    schema: str
    bootstrap: str
    settings: RegistrySettings
    config: AppConfig
    extra: dict[str, Any] = field(default_factory=dict)

    def env_vars(self) -> dict[str, str]:
        """The same configuration as environment variables, for the console script in a subprocess."""
        return {"DATABASE_URL": self.db_url, "REGISTRY_DB_SCHEMA": self.schema,
                "REGISTRY_TOPIC_PREFIX": self.settings.topic_prefix, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "REGISTRY_CONSUMER_GROUP": self.settings.consumer_group,
                "REGISTRY_RELAY_FALLBACK_POLL_SECONDS": "1"}

    def read(self, topic: str, n: int, timeout: float = 60.0) -> list[Message]:
        return consume_all(self.bootstrap, topic, n, timeout=timeout)

    def count(self, topic: str) -> int:
        return topic_count(self.bootstrap, topic)


def topic_count(bootstrap: str, topic: str) -> int:
    """Records in a topic (sum of high watermarks; our test topics are never compacted or trimmed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("count")})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


def make_env(db_url: str, schema: str, bootstrap: str, *, kafka: bool = True, **overrides: Any) -> Env:
    """Settings for one test: its own schema and topic prefix. kafka=False: no relay, consumers or topics."""
    prefix = unique_name("t") + "."
    values: dict[str, Any] = {"db_schema": schema, "topic_prefix": prefix, "consumer_group": unique_name("registry"),
                              "relay_fallback_poll_seconds": 1.0}
    if not kafka:
        values |= {"relay_in_process": False, "consume_in_process": False}
    settings = RegistrySettings(**(values | overrides))
    if kafka:
        # Only the topics the registry touches (the shared dev broker hosts every engineer's tests).
        names = [settings.state_topic, settings.events_topic, settings.performance_topic,
                 settings.obligation_events_topic, settings.renewal_decision_topic]
        create_topics(bootstrap, names + [settings.obligation_events_topic + ".dlq",
                                          settings.renewal_decision_topic + ".dlq"], partitions=3)
    config = AppConfig(database_url=db_url, registry=settings,
                       kafka=KafkaSettings(bootstrap_servers=bootstrap), auth=AUTH)
    return Env(db_url, schema, bootstrap, settings, config)


@pytest.fixture
def env(db_url: str, schema: str, kafka_bootstrap: str) -> Env:
    return make_env(db_url, schema, kafka_bootstrap)


@pytest.fixture
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.config)) as c:
        yield c


@pytest.fixture
def db_env(db_url: str, schema: str) -> Env:
    """For tests that only look at HTTP and the database: nothing runs against Kafka."""
    return make_env(db_url, schema, "127.0.0.1:9", kafka=False)


@pytest.fixture
def db_client(db_env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(db_env.config)) as c:
        yield c


def ce(msg: Message, name: str = "ce_id") -> str:
    return header_map(msg.headers())[name]


def body(msg: Message) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(msg.value() or b"{}")
    return value
