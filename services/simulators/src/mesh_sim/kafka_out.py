"""Producing events the way an ERP connector would: typed, on their catalog topic, acknowledged."""

from __future__ import annotations

import threading
from datetime import datetime

from confluent_kafka import KafkaError, Message, Producer

from contract_schema.base import Event
from contract_schema.codec import Record, encode
from contract_schema.topics import topic_for
from mesh_common import runtime
from mesh_common.clock import Clock, ClockFollower
from mesh_common.settings import KafkaSettings, ServiceSettings
from mesh_common.tracing import current_traceparent


class EventSender:
    """A lazily created idempotent producer; `send` returns once the broker acknowledged the record."""

    def __init__(self, source: str, kafka: KafkaSettings | None = None, topic_prefix: str = "") -> None:
        self.source = source
        self.topic_prefix = topic_prefix
        self._kafka = kafka
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def _get(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer((self._kafka or KafkaSettings()).producer())
            return self._producer

    def send(self, event: Event, *, event_id: str | None = None, time: datetime | None = None,
             timeout: float = 15.0) -> tuple[str, Record]:
        """Produce `event` on its catalog topic; returns (topic, record) after the broker's ack."""
        producer = self._get()
        topic = self.topic_prefix + topic_for(type(event)).name
        record = encode(event, source=self.source, event_id=event_id, time=time, traceparent=current_traceparent())
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        producer.produce(topic, key=record.key, value=record.value, headers=list(record.headers),
                         on_delivery=on_delivery)
        left = producer.flush(timeout)
        if left:
            raise RuntimeError(f"{left} record(s) not acknowledged by Kafka within {timeout}s")
        if errors:
            raise RuntimeError(f"Kafka refused the record: {errors[0]}")
        return topic, record

    def close(self) -> None:
        """Flush and drop the producer (librdkafka closes its connections when it is collected)."""
        with self._lock:
            if self._producer is not None:
                self._producer.flush(5)
                self._producer = None


def make_clock(settings: ServiceSettings | None = None) -> tuple[Clock, ClockFollower | None]:
    """The clock a simulator stamps default times with: the shared topic clock when MESH_CLOCK=topic."""
    return runtime.make_clock(settings or ServiceSettings(), KafkaSettings(), group_id="")
