"""The portfolio's one composition root: settings, the read model (PostgreSQL unless given fakes), the
clock, the service, and the consumer that builds the read model beside the API.

`bootstrap()` with `writer`/`reader` given wires the service alone (the service-layer tests pass the
in-memory fakes and a ManualClock)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from contract_schema.topics import CLOCK
from mesh_common.auth import AuthSettings
from mesh_common.clock import Clock, ClockFollower
from mesh_common.runtime import guarded_thread, make_clock
from mesh_common.settings import DatabaseSettings, KafkaSettings, ServiceSettings

from .adapters.db import make_engine, migrate
from .adapters.kafka import ProjectingConsumer
from .adapters.ports import ReadModelReader, ReadModelWriter
from .adapters.store import SqlReader, SqlWriter
from .domain.risk import load_rules
from .service import PortfolioService
from .settings import PortfolioSettings


@dataclass
class AppConfig:
    database_url: str = field(default_factory=lambda: DatabaseSettings().url)
    portfolio: PortfolioSettings = field(default_factory=PortfolioSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    clock: Clock | None = None  # None: the wall clock, or the mesh's clock topic (MESH_CLOCK=topic)


@dataclass
class Wiring:
    config: AppConfig
    portfolio: PortfolioService
    engine: Engine | None = None
    follower: ClockFollower | None = None
    running: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        """Migrations (PORTFOLIO_MIGRATE_ON_START), then the consumer unless PORTFOLIO_CONSUME_IN_PROCESS=false."""
        cfg = self.config
        assert self.engine is not None, "bootstrapped with fakes: nothing to start"
        if cfg.portfolio.migrate_on_start:
            migrate(cfg.database_url, cfg.portfolio.db_schema)
        if cfg.portfolio.consume_in_process:
            consumer = ProjectingConsumer(self.portfolio, cfg.portfolio, cfg.kafka)
            thread: threading.Thread = guarded_thread(consumer.run, "portfolio-consumer")
            self.running["consumer"] = consumer
            thread.start()
            self.running["consumer-thread"] = thread

    def stop(self) -> None:
        consumer: ProjectingConsumer | None = self.running.pop("consumer", None)
        if consumer is not None:
            consumer.stop()
            self.running.pop("consumer-thread").join(15)
        if self.follower is not None:
            self.follower.stop()
        if self.engine is not None:
            self.engine.dispose()

    async def database_ready(self) -> str | None:
        def ping() -> None:
            assert self.engine is not None
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        await asyncio.to_thread(ping)
        return None


def bootstrap(config: AppConfig | None = None, *, writer: Callable[[], ReadModelWriter] | None = None,
              reader: ReadModelReader | None = None) -> Wiring:
    cfg = config or AppConfig()
    follower = None
    clock = cfg.clock
    if clock is None:
        clock, follower = make_clock(cfg.service, cfg.kafka, group_id=f"{cfg.portfolio.consumer_group}-clock",
                                     topic=cfg.portfolio.topic(CLOCK.name))
    rules = load_rules(cfg.portfolio.risk_rules)
    if writer is not None and reader is not None:  # the service layer alone, on fakes
        return Wiring(cfg, PortfolioService(writer, reader, clock, rules), follower=follower)
    engine = make_engine(cfg.database_url, cfg.portfolio.db_schema)
    service = PortfolioService(lambda: SqlWriter(engine), SqlReader(engine), clock, rules)
    return Wiring(cfg, service, engine, follower)


def rebuild(config: AppConfig, group_id: str) -> int:
    """Build the read model of `config` (an empty schema) from the beginning of every input topic under a new
    consumer group, until every partition has been read to its end; returns the events written."""
    migrate(config.database_url, config.portfolio.db_schema)
    wiring = bootstrap(config)
    try:
        return ProjectingConsumer(wiring.portfolio, config.portfolio, config.kafka, group_id=group_id).run_to_end()
    finally:
        wiring.stop()
