"""The obligation engine's one composition root: its topics and table changelogs, the start-up checks,
the clock, the Faust app with its tables, agents, timer and tasks, the ERP relay, and the service
(`service.ObligationService` and its handler table) that the agents hand every record to.

Agents stay thin: a record in -> `RawRecord` -> the service. Faust's guarantee is at-least-once (never
exactly_once: docs/adr/0001); offsets are committed only once every effect and changelog record sent
before is acked (`DeliveryBarrier`, docs/adr/0005)."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import faust
from confluent_kafka.admin import AdminClient

from contract_schema.topics import (
    ALERTS,
    CLOCK,
    CONTRACT_EVENTS,
    CONTRACT_STATE,
    ERP_MILESTONE_COMMANDS,
    ERP_PERFORMANCE,
    OBLIGATION_EVENTS,
    SCORECARD,
    TopicSpec,
    dlq_spec,
)
from mesh_common.clock import Clock, ClockFollower
from mesh_common.delivery import CircuitBreaker, RetryPolicy
from mesh_common.faust_delivery import DeliveryBarrier, seek_safely_after_rebalance
from mesh_common.provision import provision
from mesh_common.runtime import make_clock
from mesh_common.settings import KafkaSettings, ServiceSettings

from .adapters.due_ticks import DueTicks
from .adapters.erp import ErpClient, ErpRelay
from .adapters.faust_app import Output, RawRecord, build_app, raw_topic
from .service import ObligationService
from .settings import EngineSettings

log = logging.getLogger(__name__)

INPUTS = (CONTRACT_STATE, CONTRACT_EVENTS, ERP_PERFORMANCE)
OUTPUTS = (OBLIGATION_EVENTS, ERP_MILESTONE_COMMANDS, ALERTS, SCORECARD)
TABLES = ("contracts", "counterparties")  # Faust tables; their changelogs are <app id>-<table>-changelog


# ---------------------------------------------------------------------- topics and start-up checks


def topics_to_provision(settings: EngineSettings) -> list[TopicSpec]:
    specs = [*INPUTS, *OUTPUTS, CLOCK] + [dlq_spec(t) for t in INPUTS]
    return [replace(s, name=settings.topic(s.name)) for s in specs]


def internal_topics(settings: EngineSettings) -> list[TopicSpec]:
    """The engine's own topics (ticks, scorecard repartition), created before Faust starts: when they
    do not exist at the first group assignment, Faust's assignor ignores them and their agents get no
    partitions until the next rebalance."""
    day_ms = 24 * 60 * 60 * 1000
    own = [TopicSpec(f"{settings.topic_prefix}{settings.app_id}-{name}", "contract id / counterparty id",
                     settings.topic_partitions, "delete", day_ms, (), f"obligation-engine internal: {name}")
           for name in ("ticks", "scorecard-parts")]
    # The tables' changelogs too (compacted, never time-retained): when Faust creates them itself on a
    # new cluster, its metadata can still say 0 partitions when the first record arrives, and every
    # record then fails with PartitionsMismatch until a restart.
    changelogs = [TopicSpec(f"{settings.app_id}-{table}-changelog", "table key", settings.topic_partitions,
                            "compact", None, (), f"obligation-engine table changelog: {table}")
                  for table in TABLES]
    return own + changelogs


def check_copartitioning(kafka: KafkaSettings, settings: EngineSettings) -> list[str]:
    md = AdminClient(kafka.admin()).list_topics(timeout=15).topics
    problems = []
    for spec in INPUTS:
        name = settings.topic(spec.name)
        if name in md and len(md[name].partitions) != settings.topic_partitions:
            problems.append(f"{name} has {len(md[name].partitions)} partitions, OBLIGATION_TOPIC_PARTITIONS is "
                            f"{settings.topic_partitions}: inputs and tables must be co-partitioned")
    return problems


def prepare_topics(settings: EngineSettings, kafka: KafkaSettings) -> list[str]:
    """Provision the catalog topics (OBLIGATION_PROVISION_TOPICS) and the engine's own; the problems that
    must stop the process (inputs not co-partitioned with the tables)."""
    if settings.provision_topics:
        for drift in provision(kafka.admin(), topics_to_provision(settings)).drift:
            log.warning("topic drift: %s", drift)
    for drift in provision(kafka.admin(), internal_topics(settings)).drift:
        log.warning("topic drift: %s", drift)
    return check_copartitioning(kafka, settings)


def engine_clock(service: ServiceSettings, settings: EngineSettings,
                 kafka: KafkaSettings) -> tuple[Clock, ClockFollower | None]:
    """The wall clock, or the clock topic's, caught up (or 60 s waited) before the engine starts."""
    clock, follower = make_clock(service, kafka, group_id="unused", topic=settings.topic(CLOCK.name),
                                 clock_id=settings.clock_id)
    if follower is not None and not follower.wait_caught_up(60):
        log.warning("clock topic not caught up after 60s; starting at %s", clock.now())
    return clock, follower


# ---------------------------------------------------------------------- the worker


@dataclass
class Wiring:
    app: faust.App
    service: ObligationService
    ticks: DueTicks

    def ready(self) -> bool:
        return self.ticks.ready

    def run(self, log_level: str, argv: Sequence[str] = ()) -> None:
        """Faust's worker, in this thread, until it is stopped."""
        level = {"warning": "warn", "critical": "crit"}.get(log_level.lower(), log_level.lower())
        sys.argv = [sys.argv[0], "worker", "--loglevel", level, "--without-web", *argv]
        self.app.main()


def bootstrap(settings: EngineSettings, kafka: KafkaSettings, clock: Clock) -> Wiring:
    n = settings.topic_partitions
    app = build_app(settings, kafka)
    # Offsets are committed only once every effect and changelog record sent before is acked:
    # Faust's own flush gives up after 0.1 s without progress (docs/adr/0005).
    DeliveryBarrier().install(app.producer)
    contracts = app.Table(TABLES[0], default=None, partitions=n, key_type=str, value_type=bytes)
    counterparties = app.Table(TABLES[1], default=None, partitions=n, key_type=str, value_type=bytes)
    state_topic = settings.topic(CONTRACT_STATE.name)
    ticks_topic = f"{settings.topic_prefix}{settings.app_id}-ticks"
    parts_topic = f"{settings.topic_prefix}{settings.app_id}-scorecard-parts"
    cfg = settings.engine_config()
    out = Output(app, settings, kafka, clock)
    ticks = DueTicks(app, out, clock, cfg, state_topic=state_topic, ticks_topic=ticks_topic)
    svc = ObligationService(cfg=cfg, clock=clock, out=out, contracts=contracts, counterparties=counterparties,
                            ticks=ticks, inputs={settings.topic(t.name): t for t in INPUTS},
                            parts_topic=parts_topic, partitions=n,
                            give_up=timedelta(hours=settings.erp_give_up_after_hours))

    async def inputs_agent(stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            rec = RawRecord.of(event.message)
            await svc.handle(rec)
            ticks.handled(rec)
            yield None

    def agent_of(handle: Callable[[RawRecord], Any]) -> Callable[[Any], AsyncIterator[None]]:
        async def agent(stream: Any) -> AsyncIterator[None]:
            async for event in stream.events():
                await handle(RawRecord.of(event.message, with_headers=False))
                yield None
        return agent

    inputs = raw_topic(app, *[settings.topic(t.name) for t in INPUTS])
    app.agent(inputs, name="inputs")(inputs_agent)
    app.agent(raw_topic(app, ticks_topic, partitions=n, internal=True), name="ticks")(agent_of(svc.on_tick))
    app.agent(raw_topic(app, parts_topic, partitions=n, internal=True),
              name="scorecards")(agent_of(svc.on_scorecard_part))
    # Without it, records of a never-committed partition fetched during recovery were skipped for
    # good: the restart stall after a kill before the first commit (docs/adr/0009).
    seek_safely_after_rebalance(app.consumer, {*inputs.topics, ticks_topic, parts_topic})
    app.timer(interval=settings.tick_interval, name="due-index")(ticks.fire_due)
    app.task(ticks.remember_loop)
    contracts.on_recover(svc.rebuild_index)
    app.on_partitions_revoked.connect(ticks.on_revoked)  # type: ignore[arg-type]
    for spec in (*OUTPUTS, *INPUTS):  # look partition counts up now, not inside the event loop later
        out.partition_count(settings.topic(spec.name))
        if spec in INPUTS:
            out.partition_count(settings.topic(spec.dlq_name))
    if settings.erp_base_url:
        # A Retry-After longer than an in-round backoff ends the round; the relay waits it out (docs/adr/0012).
        policy = RetryPolicy(settings.erp_attempts, settings.erp_base_delay, settings.erp_max_delay,
                             max_retry_after=settings.erp_max_delay)
        breaker = CircuitBreaker("erp-milestones", settings.erp_breaker_threshold, settings.erp_breaker_reset)
        erp = ErpClient(settings.erp_base_url, settings.erp_token, timeout=settings.erp_timeout, policy=policy,
                        breaker=breaker)
        svc.relay = ErpRelay(erp, svc.report_round, base=settings.erp_round_delay,
                             cap=settings.erp_max_round_delay, concurrency=settings.erp_concurrency,
                             can_send=lambda: ticks.ready and not app.rebalancing)
        app.task(svc.relay.run)
    return Wiring(app, svc, ticks)


# ---------------------------------------------------------------------- ops HTTP


def serve_ops(ready: Callable[[], bool], service: ServiceSettings) -> None:
    """Health, readiness and metrics for Kubernetes, in a thread with its own loop (Faust owns the main one)."""
    import uvicorn
    from fastapi import FastAPI

    from mesh_common.http_guard import guard
    from mesh_common.ops import ops_router

    async def worker_ready() -> str | None:
        return None if ready() else "partitions not assigned or tables still recovering"

    api = FastAPI(title="obligation-engine")
    guard(api, max_body_bytes=64 * 1024)  # probes only: no route takes a body
    api.include_router(ops_router({"worker": worker_ready}))
    server = uvicorn.Server(uvicorn.Config(api, host=service.http_host, port=service.http_port,
                                           log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, name="ops-http", daemon=True).start()
