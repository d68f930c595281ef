"""The engine places its records the way the mesh's confluent-kafka producers do (librdkafka's default
partitioner), so a contract's records share a partition number on every topic."""

from __future__ import annotations

from confluent_kafka import Producer

from mesh_common.faust_kafka import partition_for
from mesh_testing import consume_all, create_topics, unique_name


def test_partition_for_matches_the_default_partitioner_of_the_mesh_producers(kafka_bootstrap: str) -> None:
    topic = unique_name("oe-partitioning")
    create_topics(kafka_bootstrap, [topic], partitions=6)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    keys = [unique_name("contract").encode() for _ in range(60)]
    for key in keys:
        producer.produce(topic, key=key, value=b"x")
    producer.flush(10)
    placed = {m.key(): m.partition() for m in consume_all(kafka_bootstrap, topic, len(keys), timeout=30)}
    assert placed == {key: partition_for(key, 6) for key in keys}
