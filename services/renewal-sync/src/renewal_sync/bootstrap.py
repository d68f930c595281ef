"""renewal-sync's one composition root: settings, the clock, the store, the CRM client, the service
(the worker and its handler table), the outbox relay and the consume loop.

`bootstrap()` wires the real adapters unless it is given a store: the service-layer tests pass
adapters/fakes.FakeStore and a ManualClock, and get the worker alone (no relay, no consumer)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from contract_schema.topics import CLOCK, CONTRACT_EVENTS, CONTRACT_STATE, RENEWAL_DECISION, SCORECARD
from mesh_common.clock import Clock, ClockFollower
from mesh_common.runtime import guarded_thread, make_clock
from mesh_common.settings import DatabaseSettings, KafkaSettings, ServiceSettings
from renewal_sync.adapters.crm import crm_client
from renewal_sync.adapters.kafka import BatchEventConsumer
from renewal_sync.adapters.ports import RenewalStore
from renewal_sync.adapters.relay import OutboxRelay
from renewal_sync.adapters.store import Store
from renewal_sync.domain.renewal import SERVICE
from renewal_sync.service import RenewalWorker
from renewal_sync.settings import RenewalSettings

log = logging.getLogger("renewal_sync")
INPUTS = (CONTRACT_STATE, CONTRACT_EVENTS, SCORECARD, RENEWAL_DECISION)


@dataclass
class Wiring:
    cfg: RenewalSettings
    kafka: KafkaSettings
    worker: RenewalWorker
    follower: ClockFollower | None = None
    relay: OutboxRelay | None = None
    consumer: BatchEventConsumer | None = None

    def clock_ready(self) -> bool:
        return self.follower is None or self.follower.wait_caught_up(0)

    async def ready(self) -> str | None:
        if not self.worker.loaded.is_set():
            return "rebuilding renewal timelines"
        if not self.clock_ready():
            return "catching up with the clock topic"
        return None

    def start(self) -> None:
        """The relay and the consume loop, each in a thread whose death ends the process."""
        assert self.relay is not None and self.consumer is not None, "bootstrapped with a fake store"
        self._threads = [guarded_thread(self.relay.run, "outbox-relay"), guarded_thread(self.consumer.run, "worker")]
        for thread in self._threads:
            thread.start()  # the first assignment loads this replica's contracts from PostgreSQL

    def stop(self) -> None:
        log.info("shutting down: leaving the consumer group, stopping the relay")
        if self.consumer is not None:
            self.consumer.stop()
            self._threads[1].join(15)  # closes the consumer: leaves the group so partitions move at once
        if self.relay is not None:
            self.relay.stop()
        if self.follower is not None:
            self.follower.stop()
        log.info("stopped")


def bootstrap(cfg: RenewalSettings | None = None, *, service: ServiceSettings | None = None,
              kafka: KafkaSettings | None = None, store: RenewalStore | None = None,
              clock: Clock | None = None, crm_enabled: bool | None = None) -> Wiring:
    cfg, service, kafka = cfg or RenewalSettings(), service or ServiceSettings(), kafka or KafkaSettings()
    follower = None
    if clock is None:
        clock, follower = make_clock(service, kafka, group_id=f"{cfg.group_id}-clock", topic=cfg.topic(CLOCK.name))
    if store is not None:  # the service layer alone, on fakes
        wiring = Wiring(cfg, kafka, RenewalWorker(cfg, store, clock, crm_enabled=bool(crm_enabled)), follower)
        wiring.worker.clock_ready = wiring.clock_ready
        return wiring
    url = DatabaseSettings().url
    real = Store(url, cfg.db_schema)
    real.migrate()
    crm = crm_client(cfg)
    worker = RenewalWorker(cfg, real, clock, crm_enabled=crm is not None)
    wiring = Wiring(cfg, kafka, worker, follower, OutboxRelay(cfg, kafka, Store(url, cfg.db_schema), crm, clock))
    worker.clock_ready = wiring.clock_ready
    assert wiring.relay is not None
    worker.on_flush = wiring.relay.wake
    wiring.consumer = BatchEventConsumer(
        kafka, service=SERVICE, group_id=cfg.group_id, handler=worker.handle, after_batch=worker.after_batch,
        batch_size=cfg.batch_size, poll_timeout=cfg.poll_timeout, owner_topic=cfg.topic(CONTRACT_STATE.name),
        on_assign=worker.assigned, on_revoke=worker.revoked, session_timeout_ms=cfg.session_timeout_ms,
        topics=[cfg.topic(t.name) for t in INPUTS], carries={cfg.topic(t.name): t for t in INPUTS})
    return wiring
