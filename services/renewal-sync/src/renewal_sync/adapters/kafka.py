"""The consume loop of renewal-sync: mesh_common's EventConsumer, taken a batch at a time so
the state changes of a whole batch (and their outbox rows) go to PostgreSQL in one
transaction before the offsets are committed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError

from mesh_common.consumer import EventConsumer, Handler
from mesh_common.settings import KafkaSettings

log = logging.getLogger(__name__)


class BatchEventConsumer(EventConsumer):
    def __init__(self, kafka: KafkaSettings, *, service: str, group_id: str, topics: Sequence[str],
                 handler: Handler, after_batch: Callable[[], None], batch_size: int = 500,
                 poll_timeout: float = 0.2) -> None:
        super().__init__(kafka, service=service, group_id=group_id, topics=topics, handler=handler,
                         poll_timeout=poll_timeout)
        self.after_batch, self.batch_size = after_batch, batch_size

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
            self.consumer.commit(asynchronous=False)
        return bool(good)
