"""Process wiring that is not processing: the catalog topics the engine reads and writes, its own
topics and table changelogs, Faust's broker settings, the clock, the start-up checks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

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
from mesh_common.clock import EPOCH, Clock, ClockFollower, ManualClock, SystemClock
from mesh_common.settings import KafkaSettings, ServiceSettings

from ..settings import EngineSettings

log = logging.getLogger(__name__)

INPUTS = (CONTRACT_STATE, CONTRACT_EVENTS, ERP_PERFORMANCE)
OUTPUTS = (OBLIGATION_EVENTS, ERP_MILESTONE_COMMANDS, ALERTS, SCORECARD)


TABLES = ("contracts", "counterparties")  # Faust tables; their changelogs are <app id>-<table>-changelog


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


def make_clock(service: ServiceSettings, settings: EngineSettings,
               kafka: KafkaSettings) -> tuple[Clock, ClockFollower | None]:
    if service.clock != "topic":
        return SystemClock(), None
    clock = ManualClock(EPOCH)
    follower = ClockFollower(clock, kafka.consumer("unused"), topic=settings.topic(CLOCK.name),
                             clock_id=settings.clock_id).start()
    if not follower.wait_caught_up(60):
        log.warning("clock topic not caught up after 60s; starting at %s", clock.now())
    return clock, follower


def check_copartitioning(kafka: KafkaSettings, settings: EngineSettings) -> list[str]:
    md = AdminClient(kafka.admin()).list_topics(timeout=15).topics
    problems = []
    for spec in INPUTS:
        name = settings.topic(spec.name)
        if name in md and len(md[name].partitions) != settings.topic_partitions:
            problems.append(f"{name} has {len(md[name].partitions)} partitions, OBLIGATION_TOPIC_PARTITIONS is "
                            f"{settings.topic_partitions}: inputs and tables must be co-partitioned")
    return problems


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
