"""The consume loop of renewal-sync: mesh_common's EventConsumer, taken a batch at a time so
the state changes of a whole batch (and their outbox rows) go to PostgreSQL in one
transaction before the offsets are committed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import Consumer, KafkaError, TopicPartition

from contract_schema.topics import TopicSpec
from mesh_common.consumer import EventConsumer, Handler
from mesh_common.settings import KafkaSettings

log = logging.getLogger(__name__)


class BatchEventConsumer(EventConsumer):
    def __init__(self, kafka: KafkaSettings, *, service: str, group_id: str, topics: Sequence[str],
                 handler: Handler, after_batch: Callable[[], None], batch_size: int = 500,
                 poll_timeout: float = 0.2, owner_topic: str | None = None,
                 on_assign: Callable[[list[int]], None] | None = None,
                 on_revoke: Callable[[list[int]], None] | None = None, session_timeout_ms: int = 45000,
                 carries: Mapping[str, TopicSpec] | None = None) -> None:
        # "range" gives one replica the same partition numbers of every co-partitioned topic (state,
        # events, decisions: all keyed by contract id with the same partition count), so the replica
        # that owns a contract's snapshot also gets its events and decisions.
        overrides = {"partition.assignment.strategy": "range", "session.timeout.ms": session_timeout_ms,
                     "heartbeat.interval.ms": max(500, session_timeout_ms // 5)}
        super().__init__(kafka, service=service, group_id=group_id, topics=topics, handler=handler,
                         poll_timeout=poll_timeout, carries=carries, **overrides)  # type: ignore[arg-type]  # config keys
        self.after_batch, self.batch_size = after_batch, batch_size
        self.owner_topic = owner_topic or (topics[0] if topics else "")
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def _owned(self, partitions: list[TopicPartition]) -> list[int]:
        return [tp.partition for tp in partitions if tp.topic == self.owner_topic]

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.on_assign is not None:
            self.on_assign(self._owned(partitions))

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.on_revoke is not None:
            self.on_revoke(self._owned(partitions))

    def subscribe(self) -> None:
        # The worker loads and drops contracts as partitions move.
        self.consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._revoked)

    def poll_once(self) -> bool:
        messages = self.consumer.consume(self.batch_size, self.poll_timeout)
        good = []
        for msg in messages:
            err = msg.error()
            if err is None:
                good.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error on %s: %s", self.topics, err)
        for msg in good:
            self.process(msg)  # decode + handler; failures go to the DLQ
        self.after_batch()  # persists the batch's effects (and fires what the clock made due)
        if good:
            self.commit_offsets()  # a failure after a rebalance is logged: the batch is redelivered, idempotently
        return bool(good)
