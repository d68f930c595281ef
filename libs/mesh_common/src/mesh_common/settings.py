"""Configuration from environment variables, the same code for local, compose and managed clusters."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """KAFKA_* variables. Works against the local broker, docker-compose or a managed cluster."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "localhost:9092"
    security_protocol: str = Field(default="PLAINTEXT", pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    client_id: str = "contract-mesh"

    def common(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = self.sasl_password or ""
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf

    def producer(self, **overrides: Any) -> dict[str, Any]:
        """Idempotent producer: acks=all, no duplicates on retry, order kept per partition."""
        conf = self.common() | {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
        }
        return conf | overrides

    def consumer(self, group_id: str, **overrides: Any) -> dict[str, Any]:
        """At-least-once consumer: offsets are committed by the service after the effect is done."""
        conf = self.common() | {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky",
        }
        return conf | overrides

    def admin(self) -> dict[str, Any]:
        return self.common()


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATABASE_", extra="ignore")

    url: str = "postgresql+psycopg://mesh:mesh@localhost:5432/contracts"


class ServiceSettings(BaseSettings):
    """MESH_* variables shared by every service."""

    model_config = SettingsConfigDict(env_prefix="MESH_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    # "system": wall clock; "topic": follows ClockAdvanced events on mesh.clock.v1 (tests, demos).
    clock: str = Field(default="system", pattern="^(system|topic)$")
    otel_exporter: str = Field(default="none", pattern="^(none|console|otlp)$")
    otel_endpoint: str | None = None  # e.g. http://otel-collector:4318/v1/traces
    otel_file: str | None = None  # with otel_exporter=console: append JSON spans here instead of stdout
    public_base_url: str = "http://localhost:8000"
