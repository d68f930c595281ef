"""Thin helpers over confluent-kafka: produce typed events with trace context; dead-letter."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from contract_schema.base import Event
from contract_schema.codec import Record, encode
from contract_schema.topics import topic_for

from .dlq import AnyHeaders, dead_letter_record
from .tracing import current_traceparent


class EventProducer(Protocol):
    """What the services need of confluent_kafka.Producer; a fake stands in for it in service-layer tests."""

    def produce(self, topic: str, value: str | bytes | None = ..., key: str | bytes | None = ..., *,
                headers: Any = ...) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


def produce_event(producer: EventProducer, event: Event, *, source: str, event_id: str | None = None,
                  time: datetime | None = None, topic: str | None = None) -> Record:
    """Produce an event on its catalog topic, keyed by its key, with the active trace context."""
    record = encode(event, source=source, event_id=event_id, time=time, traceparent=current_traceparent())
    producer.produce(topic or topic_for(type(event)).name, key=record.key, value=record.value,
                     headers=_for_producer(record))
    producer.poll(0)
    return record


def produce_dead_letter(producer: EventProducer, *, topic: str, partition: int, offset: int,
                        key: bytes | None, value: bytes | None,
                        headers: AnyHeaders,
                        error: BaseException | str, service: str) -> None:
    dlq_topic, record = dead_letter_record(topic=topic, partition=partition, offset=offset, key=key,
                                           value=value, headers=headers, error=error, service=service)
    producer.produce(dlq_topic, key=record.key, value=record.value, headers=_for_producer(record))
    producer.poll(0)


def _for_producer(record: Record) -> list[tuple[str, str | bytes | None]]:
    return [(k, v) for k, v in record.headers]
