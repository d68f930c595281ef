"""renewal-sync settings, from RENEWAL_* environment variables (Kafka, database and MESH_* are shared)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract_schema.sources import source_of
from renewal_sync.domain.renewal import SERVICE
from renewal_sync.domain.timeline import TimelineSettings

SOURCE = source_of(SERVICE)  # ce_source of every event renewal-sync produces


class RenewalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RENEWAL_", extra="ignore")

    # Prefixed to every topic name (empty in production); lets tests and demos share one broker.
    topic_prefix: str = ""
    group_id: str = "renewal-sync"
    db_schema: str = Field(default="renewal_sync", pattern="^[a-z_][a-z0-9_]*$")
    stage_offsets: str = "120,90,60,30"  # days before the notice deadline
    review_every_months: int = 12
    red_within_days: int = 30
    batch_size: int = 500
    # How soon a crashed replica's partitions move to another one (the broker's minimum is 6000).
    session_timeout_ms: int = 10000
    poll_timeout: float = 0.05  # seconds; also bounds how late a due stage is noticed (an idle poll costs ~40 us)

    crm: str = Field(default="none", pattern="^(none|salesforce|hubspot)$")
    crm_base_url: str = "http://127.0.0.1:8800"
    crm_timeout: float = 10.0
    salesforce_client_id: str = ""
    salesforce_client_secret: str = ""
    salesforce_api_version: str = "v60.0"
    salesforce_external_id_field: str = "Contract_Id__c"
    salesforce_batch_size: int = 200  # records per sObject Collections upsert call (API maximum 200)
    hubspot_token: str = ""
    hubspot_id_property: str = "contract_id"
    hubspot_pipeline: str = "default"
    hubspot_batch_size: int = 100  # deals per batch upsert call (API maximum 100)

    # Each delivery round makes `crm_attempts` calls with backoff and jitter (mesh_common.delivery). A failed
    # round is retried durably (PostgreSQL) with backoff from `crm_round_delay` up to `crm_max_round_delay`,
    # at once when the CRM answers again, for `crm_give_up_after_hours`; only then the update goes to the
    # DLQ with a red alert (`renewal-sync redrive` sends it again). See docs/adr (CRM retry and give-up).
    crm_attempts: int = 4
    crm_base_delay: float = 0.5
    crm_max_delay: float = 30.0  # also the longest Retry-After waited for inside a round
    crm_round_delay: float = 30.0  # seconds before the first durable retry (doubles, with jitter)
    crm_max_round_delay: float = 300.0
    crm_give_up_after_hours: float = Field(default=24.0, gt=0)
    crm_alert_after_minutes: float = Field(default=15.0, ge=0)  # yellow "CRM sync delayed" once failing this long
    crm_breaker_threshold: int = 5
    crm_breaker_reset: float = 30.0
    crm_concurrency: int = 16

    # Decisions webhook: one HMAC secret per tenant, JSON {"tenant": "secret", ...}; the secret that
    # verifies a signature is the tenant the decision is for.
    webhook_secrets: dict[str, str] = Field(default_factory=dict)
    webhook_tolerance_seconds: int = 300
    webhook_max_body_bytes: int = 64 * 1024

    def timeline(self) -> TimelineSettings:
        offsets = tuple(int(x) for x in self.stage_offsets.split(",") if x.strip())
        return TimelineSettings(offsets_days=offsets, review_every_months=self.review_every_months,
                                red_within_days=self.red_within_days)

    def topic(self, name: str) -> str:
        return self.topic_prefix + name
