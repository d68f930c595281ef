"""The consume loop: mesh_common's EventConsumer (decode, misplaced types and handler failures to the DLQ),
taken a batch at a time so the batch's projections go to PostgreSQL in one transaction before the
offsets are committed. A database outage is waited out: nothing is committed until the batch is in."""

from __future__ import annotations

import logging
import threading

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition
from sqlalchemy.exc import DBAPIError

from contract_schema.codec import Envelope
from mesh_common.consumer import EventConsumer
from mesh_common.settings import KafkaSettings

from ..domain.projections import Projection
from ..service import PortfolioService
from ..settings import SERVICE, PortfolioSettings

log = logging.getLogger(__name__)


class ProjectingConsumer(EventConsumer):
    def __init__(self, portfolio: PortfolioService, settings: PortfolioSettings, kafka: KafkaSettings, *,
                 group_id: str | None = None) -> None:
        carries = settings.inputs()
        # Partition EOFs tell a rebuild when it has read everything that was there when it started.
        overrides: dict[str, object] = {"enable.partition.eof": True}
        super().__init__(kafka, service=SERVICE, group_id=group_id or settings.consumer_group, topics=list(carries),
                         carries=carries, handler=self._collect, poll_timeout=settings.poll_timeout,
                         **overrides)  # type: ignore[arg-type]  # librdkafka config keys
        self.portfolio, self.batch_size = portfolio, settings.batch_size
        self.pending: list[Projection] = []
        self.at_end: set[tuple[str, int]] = set()
        self.applied = 0  # new events written so far (the rebuild reports it)
        self._retry = threading.Event()

    def _collect(self, envelope: Envelope, msg: Message) -> None:
        # The projection is pure and runs here, inside process(): one that fails dead-letters its record.
        self.pending.append(self.portfolio.project(envelope, self.carries[msg.topic() or ""].name))

    def poll_once(self) -> bool:
        messages = self.consumer.consume(self.batch_size, self.poll_timeout)
        good = []
        for msg in messages:
            err = msg.error()
            if err is None:
                good.append(msg)
                self.at_end.discard((msg.topic() or "", msg.partition() or 0))
            elif err.code() == KafkaError._PARTITION_EOF:
                self.at_end.add((msg.topic() or "", msg.partition() or 0))
            else:
                log.warning("consumer error on %s: %s", self.topics, err)
        for msg in good:
            self.process(msg)
        self._write()
        if good:
            self.commit_offsets()  # a failure after a rebalance is logged: the batch is redelivered, idempotently
        return bool(good)

    def _write(self) -> None:
        delay = 0.5
        while self.pending:
            try:
                self.applied += self.portfolio.apply(self.pending)
                self.pending = []
            except DBAPIError as exc:
                if self._stop.is_set():
                    raise
                log.warning("read model not written (retrying in %.1fs): %s", delay, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    # ---- rebuild ------------------------------------------------------------------------------------

    def assign_from_beginning(self) -> list[TopicPartition]:
        """Read every partition of every input topic from its first record (a rebuild: one process, no rebalance)."""
        partitions = []
        for topic in self.topics:
            meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise RuntimeError(f"topic {topic}: {meta.error}")
            partitions += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
        self.consumer.assign(partitions)
        return partitions

    def run_to_end(self) -> int:
        """Consume every input partition from the beginning until each has reached its end once (what was
        there when the rebuild started, and whatever came meanwhile); commit; return the new events written."""
        partitions = self.assign_from_beginning()
        wanted = {(tp.topic, tp.partition) for tp in partitions}
        try:
            while not wanted <= self.at_end and not self._stop.is_set():
                self.poll_once()
        finally:
            self.producer.flush(10)
            self.consumer.close()
        return self.applied
