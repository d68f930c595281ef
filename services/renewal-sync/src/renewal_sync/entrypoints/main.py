"""`renewal-sync`: the worker, the outbox relay and the HTTP app in one process, configured from env."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

import uvicorn
from confluent_kafka import Producer

from contract_schema.topics import CLOCK, CONTRACT_EVENTS, CONTRACT_STATE, RENEWAL_DECISION, SCORECARD
from mesh_common.clock import EPOCH, Clock, ClockFollower, ManualClock, SystemClock
from mesh_common.settings import DatabaseSettings, KafkaSettings, ServiceSettings
from mesh_common.tracing import setup_tracing_from_env
from renewal_sync.adapters.crm import crm_client
from renewal_sync.adapters.kafka import BatchEventConsumer
from renewal_sync.adapters.relay import OutboxRelay
from renewal_sync.adapters.store import Store
from renewal_sync.config import RenewalSettings
from renewal_sync.domain.renewal import SERVICE
from renewal_sync.entrypoints.http import create_app
from renewal_sync.entrypoints.worker import RenewalWorker

log = logging.getLogger("renewal_sync")


def _guarded(target: Callable[[], None], name: str) -> threading.Thread:
    """A background thread whose death ends the process: a half-running worker is worse than a restart."""
    def run() -> None:
        try:
            target()
        except BaseException:
            log.exception("%s died; exiting so the supervisor restarts the service", name)
            os._exit(3)
    return threading.Thread(target=run, name=name, daemon=True)


def main() -> None:
    if sys.argv[1:2] == ["redrive"]:  # an operator's command, not the service
        from renewal_sync.entrypoints.redrive import main as redrive

        sys.exit(redrive(sys.argv[2:]))
    svc = ServiceSettings()
    logging.basicConfig(level=svc.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg, kafka, db = RenewalSettings(), KafkaSettings(), DatabaseSettings()
    setup_tracing_from_env(SERVICE)  # a record's trace continues into the opportunity and alerts it causes

    clock: Clock
    follower: ClockFollower | None = None
    if svc.clock == "topic":
        manual = ManualClock(EPOCH)
        follower = ClockFollower(manual, kafka.consumer(f"{cfg.group_id}-clock"), topic=cfg.topic(CLOCK.name))
        follower.start()
        clock = manual
    else:
        clock = SystemClock()
    def clock_ready() -> bool:
        return follower is None or follower.wait_caught_up(0)

    store = Store(db.url, cfg.db_schema)
    store.migrate()
    crm = crm_client(cfg)
    worker = RenewalWorker(cfg, store, clock, crm_enabled=crm is not None, clock_ready=clock_ready)
    relay = OutboxRelay(cfg, kafka, Store(db.url, cfg.db_schema), crm, clock)
    worker.on_flush = relay.wake
    consumer = BatchEventConsumer(
        kafka, service=SERVICE, group_id=cfg.group_id, handler=worker.handle, after_batch=worker.after_batch,
        batch_size=cfg.batch_size, poll_timeout=cfg.poll_timeout, owner_topic=cfg.topic(CONTRACT_STATE.name),
        on_assign=worker.assigned, on_revoke=worker.revoked, session_timeout_ms=cfg.session_timeout_ms,
        topics=[cfg.topic(t.name) for t in (CONTRACT_STATE, CONTRACT_EVENTS, SCORECARD, RENEWAL_DECISION)])

    def run_worker() -> None:
        consumer.run()  # the first assignment loads this replica's contracts from PostgreSQL

    relay_thread = _guarded(relay.run, "outbox-relay")
    worker_thread = _guarded(run_worker, "worker")
    relay_thread.start()
    worker_thread.start()

    async def ready() -> str | None:
        if not worker.loaded.is_set():
            return "rebuilding renewal timelines"
        if not clock_ready():
            return "catching up with the clock topic"
        return None

    def shutdown() -> None:
        log.info("shutting down: leaving the consumer group, stopping the relay")
        consumer.stop()
        worker_thread.join(15)  # closes the consumer: leaves the group so partitions move at once
        relay.stop()
        if follower is not None:
            follower.stop()
        log.info("stopped")

    app = create_app(cfg, Producer(kafka.producer()), checks={"worker": ready}, on_shutdown=shutdown)
    uvicorn.run(app, host=svc.http_host, port=svc.http_port, log_level=svc.log_level.lower())


if __name__ == "__main__":
    main()
