"""Registry-specific settings (REGISTRY_* env vars); Kafka, database, HTTP and auth come from mesh_common."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from contract_schema import topics
from contract_schema.sources import source_of

SERVICE = "contract-registry"
SOURCE = source_of(SERVICE)  # ce_source of every record the registry publishes


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore")

    migrate_on_start: bool = False  # local runs; production runs `contract-registry migrate` as a Job
    relay_in_process: bool = True  # run the outbox relay beside the API; `contract-registry relay` runs it alone
    consume_in_process: bool = True  # consume obligation events / renewal decisions beside the API
    expiry_in_process: bool = True  # sweep contracts past their end date (expire / auto-renew) beside the API
    expiry_interval_seconds: float = 60.0
    db_schema: str | None = None  # PostgreSQL schema (search_path); None = the database default
    topic_prefix: str = ""  # tests and side-by-side deployments prefix every topic name
    consumer_group: str = "contract-registry"
    relay_batch_size: int = 500
    relay_fallback_poll_seconds: float = 5.0  # LISTEN/NOTIFY wakes the relay; this only catches lost notifies
    max_body_bytes: int = 1024 * 1024  # request bodies above this answer 413 before anything else is done
    import_batch_size: int = 500  # records per transaction of a bulk import
    # Housekeeping by the relay: published outbox rows are kept a while for inspection; inbound
    # dedup ids longer than the inbound topics' retention (30 days), so a replay is still a no-op.
    outbox_retention_hours: float = 72.0
    processed_events_retention_days: float = 35.0
    purge_interval_seconds: float = 600.0

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    @property
    def state_topic(self) -> str:
        return self.topic(topics.CONTRACT_STATE.name)

    @property
    def events_topic(self) -> str:
        return self.topic(topics.CONTRACT_EVENTS.name)

    @property
    def performance_topic(self) -> str:
        return self.topic(topics.ERP_PERFORMANCE.name)

    @property
    def obligation_events_topic(self) -> str:
        return self.topic(topics.OBLIGATION_EVENTS.name)

    @property
    def renewal_decision_topic(self) -> str:
        return self.topic(topics.RENEWAL_DECISION.name)

    @property
    def notify_channel(self) -> str:
        # NOTIFY is database-wide: one channel per schema so side-by-side registries don't wake each other.
        return f"registry_outbox_{self.db_schema or 'default'}"[:63]  # PostgreSQL identifiers: 63 bytes
