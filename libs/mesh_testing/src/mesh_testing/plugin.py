"""Pytest plugin: session-wide real Kafka and PostgreSQL, started only when asked for.

A run of pure unit tests never requests these fixtures, so it starts nothing.
Set MESH_TEST_KAFKA_BOOTSTRAP / MESH_TEST_DATABASE_URL to use servers that are
already running (e.g. the `make up` stack) instead of starting new ones.
`make unit` sets MESH_TEST_NO_SERVERS=1: a test there that asks for a server fails, naming itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mesh_testing.servers import KafkaServer, PostgresServer


def _no_servers(what: str) -> None:
    if os.environ.get("MESH_TEST_NO_SERVERS"):
        pytest.fail(f"a unit test asked for {what}; unit tests run without servers (move it to tests/integration)")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """`host:port` of one real Kafka broker shared by the whole session."""
    _no_servers("a Kafka broker")
    if existing := os.environ.get("MESH_TEST_KAFKA_BOOTSTRAP"):
        yield existing
        return
    server = KafkaServer.start()
    try:
        yield server.bootstrap
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """libpq URL (postgresql://mesh:mesh@127.0.0.1:PORT/mesh_test) of one real cluster per session."""
    _no_servers("a PostgreSQL cluster")
    if existing := os.environ.get("MESH_TEST_DATABASE_URL"):
        yield existing
        return
    server = PostgresServer.start("mesh_test")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def own_kafka() -> Iterator[KafkaServer]:
    """A broker of the module's own, for tests that restart or kill it (the session's is shared)."""
    _no_servers("a Kafka broker")
    server = KafkaServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def own_postgres(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A cluster of the module's own, for tests that restart or pause it (the session's is shared)."""
    _no_servers("a PostgreSQL cluster")
    server = PostgresServer.start(request.module.__name__.rsplit(".", 1)[-1][:40])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_sqlalchemy_url(postgres_url: str) -> str:
    """The same database, spelled for SQLAlchemy with the psycopg 3 driver."""
    return postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
