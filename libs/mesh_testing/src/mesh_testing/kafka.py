"""Small Kafka helpers for tests, on confluent_kafka."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from mesh_testing.waiting import wait_for


def unique_name(prefix: str) -> str:
    """A topic / group / id name no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create topics (existing ones are fine) and wait until every partition has a leader."""
    names = list(names)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(n, num_partitions=partitions, replication_factor=1, config=dict(config or {})) for n in names]
    for future in admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def all_led() -> bool:
        topics = admin.list_topics(timeout=5).topics
        return all(
            n in topics
            and topics[n].error is None
            and topics[n].partitions
            and all(p.leader >= 0 for p in topics[n].partitions.values())
            for n in names
        )

    wait_for(all_led, timeout=timeout, interval=0.1, message=f"leaders for {names}")


def consume_all(
    bootstrap: str,
    topic: str,
    expected_count: int,
    timeout: float = 30.0,
) -> list[Message]:
    """Read `topic` from the beginning of every partition until `expected_count` messages.

    Uses partition assignment, not a consumer group subscription, so there is no
    rebalance to wait for and nothing is committed. Raises TimeoutError (saying how
    many arrived) when fewer than `expected_count` came within `timeout` seconds.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("mesh-testing-reader"),  # required by librdkafka, never joined
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        metadata = wait_for(
            lambda: consumer.list_topics(topic, timeout=5).topics.get(topic),
            timeout=timeout,
            message=f"metadata of {topic}",
        )
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(messages) < expected_count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{topic}: got {len(messages)} of {expected_count} messages in {timeout}s")
            msg = consumer.poll(min(remaining, 1.0))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                raise KafkaException(err)
            messages.append(msg)
        return messages
    finally:
        consumer.close()
