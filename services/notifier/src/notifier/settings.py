"""The notifier's settings, from NOTIFIER_* environment variables (plus the shared KAFKA_*, DATABASE_*, MESH_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract_schema.sources import source_of
from contract_schema.topics import ALERTS, CLOCK, NOTIFICATIONS, RENEWAL_DECISION

SERVICE = "notifier"
SOURCE = source_of(SERVICE)  # ce_source of every event the notifier produces
DEFAULT_RULES = Path(__file__).parent / "rules" / "default.yaml"


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    rules_file: Path = DEFAULT_RULES
    db_schema: str = "notifier"
    group_id: str = "notifier"
    # Topic names come from the catalog; the variables exist so tests and demos can share a broker.
    alerts_topic: str = ALERTS.name
    notifications_topic: str = NOTIFICATIONS.name
    # A renewal decision recorded in the CRM acknowledges the contract's open renewal alerts.
    decisions_topic: str = RENEWAL_DECISION.name
    clock_topic: str = CLOCK.name
    clock_id: str = "mesh"
    # Static group membership (e.g. the pod name): a restarted replica takes its partitions back at
    # once instead of waiting for the session of its crashed predecessor to time out.
    instance_id: str | None = None
    consumers: int = Field(default=1, ge=1, le=64)  # alert consumer threads in this process
    stats_interval_ms: int = Field(default=15000, ge=100)  # how often consumer lag is refreshed
    session_timeout_ms: int = Field(default=45000, ge=1000)
    tick_seconds: float = Field(default=30.0, gt=0)  # wall-clock mode: how often escalations and digests are checked

    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = "contract-mesh-notifier@localhost"
    smtp_timeout: float = 10.0
    smtp_ca_file: str | None = None

    # HMAC keys for signed acknowledgement links and calendar feed URLs. Set real ones in production.
    ack_secret: str = "local-ack-secret-change-me"
    calendar_secret: str = "local-calendar-secret-change-me"
    ack_link_ttl_days: int = 30

    retry_attempts: int = Field(default=5, ge=1)
    retry_base_delay: float = Field(default=0.5, ge=0)
    retry_max_delay: float = Field(default=30.0, ge=0)
