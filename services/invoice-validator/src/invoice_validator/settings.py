"""VALIDATOR_* environment variables (Kafka, HTTP, auth, clock come from the shared mesh_common settings)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE = "invoice-validator"
SOURCE = "/contract-mesh/invoice-validator"


class ValidatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VALIDATOR_", extra="ignore")

    # Faust app id: the consumer group and the prefix of the changelog topics.
    app_id: str = SERVICE
    # Where Faust keeps its local data; empty: a directory under the system temp dir.
    data_dir: str = ""
    # Table store: "rocksdb://" (local RocksDB via rocksdict, per partition) or "memory://"; either way the
    # changelog topics are the source of truth and a new or moved replica rebuilds from them.
    store: str = "rocksdb://"
    # Prefixed to every catalog topic name (tests and side-by-side deployments share one broker).
    topic_prefix: str = ""
    topic_partitions: int = Field(default=6, ge=1)
    # How the producers of the source topics pick partitions: "crc32" (librdkafka default, mesh_common
    # producers) or "murmur2" (Java clients, librdkafka murmur2_random). Internal routing follows it.
    source_partitioner: str = Field(default="crc32", pattern="^(crc32|murmur2)$")
    replication_factor: int = Field(default=1, ge=1)
    # An invoice whose contract is unknown waits this long for the contract, then needs review.
    park_timeout_seconds: float = Field(default=3600.0, ge=0)
    # How often parked invoices are checked against the clock.
    sweep_interval_seconds: float = Field(default=1.0, gt=0)
    # A rejected invoice billing more than this (in its own currency) raises a red alert.
    alert_threshold: Decimal = Decimal("10000")
    ap_webhook_url: str | None = None
    ap_webhook_secret: str = "change-me"
    # With MESH_CLOCK=topic: the topic whose ClockAdvanced ticks move the clock.
    clock_topic: str = "mesh.clock.v1"
    # How long the broker waits for a silent (killed) worker before it hands its partitions to the
    # others or to its restarted self; a restart after a kill waits this long.
    session_timeout_seconds: float = Field(default=30.0, ge=6, le=300)
    # How long the producer waits to fill a batch: more throughput, and more records in flight at a crash.
    producer_linger_seconds: float = Field(default=0.005, ge=0, le=5)
    http_enabled: bool = True
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
