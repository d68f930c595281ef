"""The at-least-once consume loop shared by the confluent-kafka services.

poll -> decode (CloudEvents) -> handler -> commit. A record that cannot be decoded, or
whose handler raises, goes to <topic>.dlq with its original bytes and the reason, and
the loop keeps going. Offsets are committed only after the handler (and the DLQ write)
is done, so a crash redelivers: handlers must be idempotent on the event id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from contract_schema.codec import DecodeError, Envelope, decode
from contract_schema.topics import TopicSpec

from .kafka import EventProducer, produce_dead_letter
from .ops import COMMIT_FAILED, DEAD_LETTERED, PROCESSED
from .settings import KafkaSettings
from .tracing import consume_span

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, Message], None]


class EventConsumer:
    """`carries` maps each subscribed topic's name (prefixed or not) to its catalog spec: a record of an
    event type its topic does not carry goes to the DLQ with the reason (`TopicSpec.misplaced`)."""

    def __init__(self, kafka: KafkaSettings, *, service: str, group_id: str, topics: Sequence[str],
                 handler: Handler, producer: EventProducer | None = None, poll_timeout: float = 0.2,
                 carries: Mapping[str, TopicSpec] | None = None, **consumer_overrides: object) -> None:
        self.service = service
        self.topics = list(topics)
        self.carries = dict(carries or {})
        self.handler = handler
        self.poll_timeout = poll_timeout
        self.consumer = Consumer(kafka.consumer(group_id, **consumer_overrides))
        self.producer: EventProducer = producer or Producer(kafka.producer())
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def subscribe(self) -> None:
        """Join the group; a subclass that must react to partitions moving passes its callbacks here."""
        self.consumer.subscribe(self.topics)

    def run(self) -> None:
        """Consume until stop() is called. Blocking: run it in a thread beside an HTTP server."""
        self.subscribe()
        try:
            while not self._stop.is_set():
                self.poll_once()
        finally:
            self.producer.flush(10)
            self.consumer.close()

    def poll_once(self) -> bool:
        msg = self.consumer.poll(self.poll_timeout)
        if msg is None:
            return False
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error on %s: %s", self.topics, err)
            return False
        self.process(msg)
        self.consumer.commit(message=msg, asynchronous=True)
        return True

    def commit_offsets(self, message: Message | None = None) -> bool:
        """Commit synchronously (up to `message`, or the consumed positions). A failure other
        than a fatal client error is logged and counted, not raised.

        A commit fails when the group moved on without this member (a broker restart, a
        rebalance, a session that expired while a batch was in flight): the uncommitted
        records are redelivered to whoever owns the partition now, and effects are
        idempotent on the event id, so the loop carries on instead of dying.
        """
        try:
            if message is None:
                self.consumer.commit(asynchronous=False)
            else:
                self.consumer.commit(message=message, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is not None and err.fatal():
                raise
            log.warning("commit failed on %s (records will be redelivered): %s", self.topics, exc)
            COMMIT_FAILED.labels(self.service).inc()
            return False
        return True

    def process(self, msg: Message) -> None:
        topic = msg.topic() or ""
        headers = msg.headers() or []
        try:
            envelope = decode(msg.value(), headers)
            spec = self.carries.get(topic)
            if spec is not None and (misplaced := spec.misplaced(envelope.event)) is not None:
                self.dead_letter(msg, misplaced)
                return
            with consume_span(self.service, topic, headers):
                self.handler(envelope, msg)
            PROCESSED.labels(self.service, topic).inc()
        except Exception as exc:  # bad input is data, not a crash: dead-letter it and go on
            if not isinstance(exc, DecodeError):
                log.exception("handler failed on %s[%s]@%s", topic, msg.partition(), msg.offset())
            self.dead_letter(msg, exc)

    def dead_letter(self, msg: Message, error: BaseException | str) -> None:
        topic = msg.topic() or ""
        produce_dead_letter(self.producer, topic=topic, partition=msg.partition() or 0,
                            offset=msg.offset() or 0, key=msg.key(), value=msg.value(),
                            headers=msg.headers(), error=error, service=self.service)
        self.producer.flush(10)  # the DLQ write must be durable before the offset is committed
        DEAD_LETTERED.labels(self.service, topic).inc()
