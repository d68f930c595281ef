"""Configuration from environment variables (OBLIGATION_*; Kafka from KAFKA_*, clock from MESH_CLOCK)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .domain.config import DEFAULT_ESCALATE_DAYS, DEFAULT_LEAD_DAYS, EngineConfig

SERVICE = "obligation-engine"
SOURCE = "/obligation-engine"


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OBLIGATION_", extra="ignore")

    app_id: str = SERVICE  # Faust app id: consumer group and changelog topic names
    topic_prefix: str = ""  # prefixed to every catalog topic (tests and side-by-side deployments)
    topic_partitions: int = Field(6, ge=1)  # must match the catalog's input topics (co-partitioning)
    replication_factor: int = Field(1, ge=1)  # of the engine's own changelog and internal topics
    data_dir: str | None = None
    provision_topics: bool = True  # create missing catalog topics on start
    clock_id: str = "mesh"  # which ClockAdvanced events to follow when MESH_CLOCK=topic
    tick_interval: float = Field(0.1, gt=0)  # seconds between due-index checks (wall time)
    session_timeout: float = Field(60.0, gt=1)  # a killed worker's partitions move after this long

    erp_base_url: str | None = None
    erp_token: str | None = None
    erp_attempts: int = Field(5, ge=1)
    erp_base_delay: float = Field(0.5, ge=0)
    erp_max_delay: float = Field(30.0, ge=0)
    erp_timeout: float = Field(10.0, gt=0)

    lead_days: dict[str, int] = Field(default_factory=dict)  # JSON, e.g. {"milestone": 21}
    escalate_days: dict[str, int] = Field(default_factory=dict)
    horizon_days: int = Field(400, ge=1)
    lookback_days: int = Field(31, ge=0)
    sla_grace_days: int = Field(3, ge=0)
    park_seconds: int = Field(86_400, ge=0)
    replan_days: int = Field(7, ge=1)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(lead_days=DEFAULT_LEAD_DAYS | self.lead_days,
                            escalate_days=DEFAULT_ESCALATE_DAYS | self.escalate_days,
                            horizon_days=self.horizon_days, lookback_days=self.lookback_days,
                            sla_grace_days=self.sla_grace_days, park_seconds=self.park_seconds,
                            replan_days=self.replan_days)

    def topic(self, name: str) -> str:
        return self.topic_prefix + name
