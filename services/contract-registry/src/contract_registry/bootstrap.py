"""The registry's one composition root: settings, the database (behind the unit of work), the clock, the
service, and what runs beside the API (outbox relay, inbound consumer, expiry sweep).

`bootstrap()` wires PostgreSQL unless it is given a unit of work: the service-layer tests pass
adapters/fakes.FakeUnitOfWork and a ManualClock and get the service alone (nothing to start).
The registry keeps the wall clock whatever MESH_CLOCK says: its timestamps (audit, `ce_time`, the
expiry sweep) are when people and systems acted, not the demo's story time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from mesh_common.auth import AuthSettings
from mesh_common.clock import Clock, SystemClock
from mesh_common.runtime import Ticker
from mesh_common.settings import DatabaseSettings, KafkaSettings

from .adapters.db import make_engine, make_sessionmaker, migrate
from .adapters.inbound import InboundConsumer
from .adapters.ports import UnitOfWork
from .adapters.relay import OutboxRelay
from .adapters.unit_of_work import SqlUnitOfWork
from .domain.importing import RawRecord
from .importer import Checked, Importer
from .service import Caller, Registry
from .settings import RegistrySettings

log = logging.getLogger("contract_registry")


@dataclass
class AppConfig:
    database_url: str = field(default_factory=lambda: DatabaseSettings().url)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    clock: Clock = field(default_factory=SystemClock)


@dataclass
class Wiring:
    config: AppConfig
    registry: Registry
    engine: Engine | None = None
    importer: Importer = field(init=False)
    # Two threads, each taking the parts in order: one checks a part's records (CPU) while the other writes
    # the part before (mostly waiting on PostgreSQL). One of each keeps a long import from starving the
    # API's own requests.
    import_checker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="registry-import-check"))
    import_writer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="registry-import-write"))
    # What start() runs beside the API, by name ("relay", "inbound", "expiry"); tests look at them.
    running: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.importer = Importer(self.registry, self.config.registry.import_batch_size)

    def import_part(self, caller: Caller, import_id: str, records: list[RawRecord],
                    traceparent: str | None) -> Future[None]:
        """Check, then write, one part of an import in the background. A failure is logged; the part's
        records then stay pending (re-sending the file is safe: it is idempotent)."""
        def write(batches: list[Checked]) -> None:
            try:
                for batch in batches:
                    self.importer.write(caller, import_id, batch)
            except Exception:
                log.exception("import %s: a part failed; its records stay pending", import_id)

        def check() -> None:
            try:
                batches = self.importer.check(caller, records, traceparent)
            except Exception:
                log.exception("import %s: a part failed; its records stay pending", import_id)
                return
            self.import_writer.submit(write, batches)

        return self.import_checker.submit(check)

    def start(self) -> None:
        """Migrations (REGISTRY_MIGRATE_ON_START), then the relay, the inbound consumer and the expiry
        sweep, each unless its REGISTRY_*_IN_PROCESS is false."""
        cfg = self.config
        assert self.engine is not None, "bootstrapped with a fake unit of work: nothing to start"
        if cfg.registry.migrate_on_start:
            migrate(cfg.database_url, cfg.registry.db_schema)
        if cfg.registry.relay_in_process:
            self.running["relay"] = relay(cfg, name="in-process", engine=None)
            self.running["relay"].start()
        if cfg.registry.consume_in_process:
            self.running["inbound"] = InboundConsumer(self.registry.handle, cfg.registry, cfg.kafka)
            self.running["inbound"].start()
        if cfg.registry.expiry_in_process:
            sweeper = Ticker(self.sweep, cfg.registry.expiry_interval_seconds, name="registry-expiry")
            sweeper.poke()  # at start-up too, catching up after downtime
            self.running["expiry"] = sweeper.start()

    def sweep(self) -> None:
        changed = self.registry.expire_due()
        if changed:
            log.info("expired or auto-renewed %d contracts", changed)

    def stop(self) -> None:
        # The part in hand finishes; queued parts are dropped and stay pending (ADR 0014).
        self.import_checker.shutdown(wait=True, cancel_futures=True)
        self.import_writer.shutdown(wait=True, cancel_futures=True)
        expiry: Ticker | None = self.running.pop("expiry", None)
        if expiry is not None:
            expiry.stop()
            expiry.thread.join(10)
        for name in ("inbound", "relay"):
            if name in self.running:
                self.running.pop(name).stop()
        if self.engine is not None:
            self.engine.dispose()

    async def database_ready(self) -> str | None:
        def ping() -> None:
            assert self.engine is not None
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        await asyncio.to_thread(ping)
        return None

    async def producer_ready(self) -> str | None:
        running: OutboxRelay | None = self.running.get("relay")
        if running is None:
            return None  # the relay runs as its own deployment (`contract-registry relay`)
        return await asyncio.to_thread(running.ready)


def relay(config: AppConfig, *, name: str, engine: Engine | None = None) -> OutboxRelay:
    """An outbox relay: beside the API, or alone (`contract-registry relay`)."""
    return OutboxRelay(config.database_url, config.registry, config.kafka, engine=engine, name=name)


def bootstrap(config: AppConfig | None = None, *, uow: Callable[[], UnitOfWork] | None = None,
              registry_cls: type[Registry] = Registry) -> Wiring:
    """`registry_cls` lets the benchmark swap in its no-outbox baseline."""
    cfg = config or AppConfig()
    if uow is not None:  # the service layer alone, on fakes
        return Wiring(cfg, registry_cls(uow, cfg.registry, cfg.clock))
    engine = make_engine(cfg.database_url, cfg.registry.db_schema)
    sessions = make_sessionmaker(engine)
    registry = registry_cls(lambda: SqlUnitOfWork(sessions, cfg.registry.notify_channel), cfg.registry, cfg.clock)
    return Wiring(cfg, registry, engine)
