"""Portfolio settings (PORTFOLIO_* env vars); Kafka, database, HTTP and auth come from mesh_common."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract_schema import topics
from contract_schema.sources import source_of

from .domain.risk import DEFAULT_RULES

SERVICE = "portfolio"
SOURCE = source_of(SERVICE)  # the portfolio publishes nothing; named for logs and the DLQ headers

# The public topics the read model is built from (catalog topics only; never another service's API or DB).
INPUTS: tuple[topics.TopicSpec, ...] = (
    topics.CONTRACT_STATE, topics.CONTRACT_EVENTS, topics.OBLIGATION_EVENTS, topics.RENEWAL_OPPORTUNITY,
    topics.RENEWAL_DECISION, topics.INVOICE_VALIDATED, topics.ALERTS, topics.NOTIFICATIONS, topics.SCORECARD,
)


class PortfolioSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PORTFOLIO_", extra="ignore")

    migrate_on_start: bool = False  # local runs; production runs `portfolio migrate` as a Job
    consume_in_process: bool = True  # build the read model beside the API
    db_schema: str | None = None  # PostgreSQL schema (search_path); None = the database default
    topic_prefix: str = ""  # tests and side-by-side deployments prefix every topic name
    consumer_group: str = "portfolio"
    batch_size: Annotated[int, Field(ge=1)] = 500  # records per read-model transaction
    poll_timeout: Annotated[float, Field(gt=0)] = 0.1
    live_poll_seconds: Annotated[float, Field(gt=0)] = 0.25  # how often the page's event stream looks for changes
    # An event stream ends after this long and the browser reconnects at once: an open stream would otherwise
    # hold a stopping server (uvicorn waits for open responses) until the page goes away.
    stream_seconds: Annotated[float, Field(gt=0)] = 20.0
    dev_login: bool = False  # /login/dev issues a token for the demo stack; never in production
    dev_tenant: str = "tenant-demo"
    token_cookie: str = "portfolio_token"
    risk_rules: Path = DEFAULT_RULES  # the vendor risk rules (TOML; see risk_rules.toml)

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def inputs(self) -> dict[str, topics.TopicSpec]:
        """Subscribed topic name -> its catalog spec (what it may carry)."""
        return {self.topic(spec.name): spec for spec in INPUTS}
