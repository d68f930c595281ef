"""The notifier's settings, from NOTIFIER_* environment variables (plus the shared KAFKA_*, DATABASE_*, MESH_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
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

    # A channel outage delays a notification, it does not drop it (docs/adr/0010-ride-out-outages.md):
    # a send that fails for now is retried durably (the ledger row's next attempt, PostgreSQL) from
    # `retry_round_delay` seconds, doubling with jitter up to `retry_max_round_delay`, and at once when the
    # channel answers again; only after `give_up_after_hours` of failing is it recorded failed and dead-lettered.
    give_up_after_hours: float = Field(default=24.0, gt=0)
    retry_round_delay: float = Field(default=30.0, gt=0)
    retry_max_round_delay: float = Field(default=300.0, gt=0)
    # How long a replica holds its claim on a delivery while it sends; another replica takes over only after
    # it ran out (the claimer died). Must outlast one send with its in-send retries.
    delivery_lease_seconds: float = Field(default=300.0, gt=0)
    # A channel's circuit opens after 5 failed sends in a row and lets one trial send through after this.
    breaker_reset_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotifierSettings:
        longest = self.retry_attempts * (self.smtp_timeout + self.retry_max_delay)
        if self.delivery_lease_seconds < longest:
            raise ValueError(f"NOTIFIER_DELIVERY_LEASE_SECONDS ({self.delivery_lease_seconds}) must be at least "
                             "NOTIFIER_RETRY_ATTEMPTS x (NOTIFIER_SMTP_TIMEOUT + NOTIFIER_RETRY_MAX_DELAY) = "
                             f"{longest}: a lease running out during a send lets a second replica send it again")
        return self
