"""The engine's Faust edge: the app and its tables, raw topics, the record an agent hands the service,
and the producer side (events to their catalog topics, dead letters, internal records).

Guarantee: at-least-once (never Faust's exactly_once: docs/adr/0001)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from confluent_kafka.admin import AdminClient

from contract_schema import Event, encode
from contract_schema.topics import topic_for
from mesh_common.clock import Clock
from mesh_common.dlq import dead_letter_record
from mesh_common.faust_kafka import faust_broker, faust_credentials, partition_for, wait_for_the_broker_at_start
from mesh_common.ops import DEAD_LETTERED
from mesh_common.settings import KafkaSettings
from mesh_common.tracing import current_traceparent

from ..domain.model import Parked
from ..settings import SERVICE, SOURCE, EngineSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, msg: Any, *, with_headers: bool = True) -> RawRecord:
        """The record of a Faust message, as the service sees it."""
        headers = _headers(msg.headers) if with_headers else []
        return cls(msg.topic, msg.partition, msg.offset, msg.key or b"", msg.value or b"", headers)

    @classmethod
    def parked(cls, p: Parked) -> RawRecord:
        return cls(p.topic, p.partition, p.offset, p.key, p.value, list(p.headers))


def _headers(raw: Any) -> list[tuple[str, bytes]]:
    items = raw.items() if isinstance(raw, Mapping) else (raw or ())
    return [(str(k), v if isinstance(v, bytes) else str(v or "").encode()) for k, v in items]


def build_app(settings: EngineSettings, kafka: KafkaSettings) -> faust.App:
    wait_for_the_broker_at_start()  # started during a broker outage: wait, do not exit
    return faust.App(
        settings.app_id, broker=faust_broker(kafka), broker_credentials=faust_credentials(kafka),
        store="memory://",
        datadir=Path(settings.data_dir or tempfile.mkdtemp(prefix=f"{settings.app_id}-")),
        processing_guarantee="at_least_once", topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor, topic_allow_declare=True,
        table_standby_replicas=0, consumer_auto_offset_reset="earliest", web_enabled=False,
        stream_wait_empty=False, broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 4),
        broker_commit_interval=settings.commit_interval,
    )


def raw_topic(app: faust.App, *names: str, partitions: int | None = None, internal: bool = False) -> Any:
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=partitions, internal=internal)


class Output:
    """What the engine sends: events (CloudEvents, placed by key), dead letters, its internal records.
    `send*` return the producer's future: await it to know the broker has the record."""

    def __init__(self, app: faust.App, settings: EngineSettings, kafka: KafkaSettings, clock: Clock) -> None:
        self.app, self.settings, self.kafka, self.clock = app, settings, kafka, clock
        self._partitions: dict[str, int] = {}

    async def send(self, topic: str, key: bytes, value: bytes, partition: int) -> Any:
        return await self.app.producer.send(topic, key, value, partition, None, None)

    async def send_event(self, event: Event, event_id: str) -> Any:
        record = encode(event, source=SOURCE, event_id=event_id, time=self.clock.now(),
                        traceparent=current_traceparent())
        topic = self.settings.topic(topic_for(type(event)).name)
        partition = partition_for(record.key, self.partition_count(topic))
        return await self.app.producer.send(topic, record.key, record.value, partition, None, record.headers)

    async def dead_letter(self, rec: RawRecord, error: BaseException | str) -> None:
        dlq_topic, record = dead_letter_record(topic=rec.topic, partition=rec.partition, offset=rec.offset,
                                               key=rec.key, value=rec.value, headers=rec.headers, error=error,
                                               service=SERVICE, now=self.clock.now())
        partition = partition_for(record.key, self.partition_count(dlq_topic))
        await (await self.app.producer.send(dlq_topic, record.key, record.value, partition, None, record.headers))
        DEAD_LETTERED.labels(SERVICE, rec.topic).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", rec.topic, rec.partition, rec.offset,
                    getattr(error, "reason", None) or error)

    def partition_count(self, topic: str) -> int:
        if topic not in self._partitions:
            md = AdminClient(self.kafka.admin()).list_topics(topic, timeout=10).topics.get(topic)
            self._partitions[topic] = len(md.partitions) if md is not None and md.partitions else 1
        return self._partitions[topic]
