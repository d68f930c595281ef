"""Configuration from environment variables (OBLIGATION_*; Kafka from KAFKA_*, clock from MESH_CLOCK)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .domain.config import DEFAULT_ESCALATE_DAYS, DEFAULT_LEAD_DAYS, EngineConfig

SERVICE = "obligation-engine"
SOURCE = "/obligation-engine"


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OBLIGATION_", extra="ignore")

    app_id: str = SERVICE  # Faust app id: consumer group and changelog topic names
    topic_prefix: str = ""  # prefixed to every catalog topic (tests and side-by-side deployments)
    topic_partitions: Annotated[int, Field(ge=1)] = 6  # must match the catalog's input topics (co-partitioning)
    replication_factor: Annotated[int, Field(ge=1)] = 1  # of the engine's own changelog and internal topics
    data_dir: str | None = None
    provision_topics: bool = True  # create missing catalog topics on start
    http_enabled: bool = True  # /healthz /readyz /metrics on MESH_HTTP_HOST:MESH_HTTP_PORT
    clock_id: str = "mesh"  # which ClockAdvanced events to follow when MESH_CLOCK=topic
    tick_interval: Annotated[float, Field(gt=0)] = 0.1  # seconds between due-index checks (wall time)
    # A killed worker, and every member after a broker restart, holds the group for this long before its
    # partitions move (docs/adr/0017): short, so kills and restarts stall the engine seconds, not a minute.
    session_timeout: Annotated[float, Field(gt=1)] = 20.0
    commit_interval: Annotated[float, Field(gt=0)] = 2.8  # seconds between offset commits (Faust's default)

    erp_base_url: str | None = None
    erp_token: str | None = None
    # One delivery round makes `erp_attempts` calls with backoff (mesh_common.delivery; `erp_max_delay` is
    # also the longest Retry-After slept on inside a round). A failed round is retried after
    # `erp_round_delay` (doubling, jitter, up to `erp_max_round_delay`, never sooner than a Retry-After), at
    # once when ERP answers again, for `erp_give_up_after_hours` of wall time from the first failed round;
    # only then (or on a 4xx other than 429) the trigger goes to the DLQ with a red alert (docs/adr/0012).
    erp_attempts: Annotated[int, Field(ge=1)] = 5
    erp_base_delay: Annotated[float, Field(ge=0)] = 0.5
    erp_max_delay: Annotated[float, Field(ge=0)] = 30.0
    erp_timeout: Annotated[float, Field(gt=0)] = 10.0
    erp_round_delay: Annotated[float, Field(gt=0)] = 30.0
    erp_max_round_delay: Annotated[float, Field(gt=0)] = 300.0
    erp_give_up_after_hours: Annotated[float, Field(gt=0)] = 24.0
    erp_concurrency: Annotated[int, Field(ge=1)] = 8  # releases sent at once (each waits up to a round)
    erp_breaker_threshold: Annotated[int, Field(ge=1)] = 5  # consecutive failed calls that open the circuit
    erp_breaker_reset: Annotated[float, Field(gt=0)] = 30.0  # seconds before an open circuit lets a trial call through

    lead_days: dict[str, int] = Field(default_factory=dict)  # JSON, e.g. {"milestone": 21}
    escalate_days: dict[str, int] = Field(default_factory=dict)
    horizon_days: Annotated[int, Field(ge=1)] = 400
    lookback_days: Annotated[int, Field(ge=0)] = 31
    sla_grace_days: Annotated[int, Field(ge=0)] = 3
    park_seconds: Annotated[int, Field(ge=0)] = 86_400
    replan_days: Annotated[int, Field(ge=1)] = 7

    def engine_config(self) -> EngineConfig:
        return EngineConfig(lead_days=DEFAULT_LEAD_DAYS | self.lead_days,
                            escalate_days=DEFAULT_ESCALATE_DAYS | self.escalate_days,
                            horizon_days=self.horizon_days, lookback_days=self.lookback_days,
                            sla_grace_days=self.sla_grace_days, park_seconds=self.park_seconds,
                            replan_days=self.replan_days)

    def topic(self, name: str) -> str:
        return self.topic_prefix + name
