"""Every event type through a real Kafka broker and back, equal; bad bytes give the typed error."""

from __future__ import annotations

from confluent_kafka import Producer

import contract_schema as cs
from mesh_testing import consume_all, create_topics, unique_name

from .samples import all_samples


def test_every_event_type_round_trips_through_the_broker(kafka_bootstrap: str) -> None:
    topic = unique_name("schema-roundtrip")
    create_topics(kafka_bootstrap, [topic], partitions=3)
    samples = all_samples()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i, event in enumerate(samples):
        record = cs.encode(event, source="/schema-test", event_id=f"evt-{i}")
        producer.produce(topic, key=record.key, value=record.value, headers=record.headers)
    assert producer.flush(30) == 0

    messages = consume_all(kafka_bootstrap, topic, len(samples))
    decoded = {}
    for msg in messages:
        envelope = cs.decode(msg.value(), msg.headers())
        assert msg.key() == envelope.event.key.encode()
        decoded[envelope.id] = envelope.event
    assert decoded == {f"evt-{i}": event for i, event in enumerate(samples)}


def test_garbage_on_a_topic_gives_the_typed_decode_error(kafka_bootstrap: str) -> None:
    topic = unique_name("schema-garbage")
    create_topics(kafka_bootstrap, [topic])
    good = cs.encode(all_samples()[0], source="/schema-test")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"C-1", value=b"\xde\xad{not json", headers=good.headers)
    producer.produce(topic, key=b"C-1", value=good.value, headers=None)
    assert producer.flush(30) == 0

    first, second = consume_all(kafka_bootstrap, topic, 2)
    reasons = []
    for msg in (first, second):
        try:
            cs.decode(msg.value(), msg.headers())
        except cs.DecodeError as exc:
            reasons.append(exc.reason)
    assert reasons[0].startswith("value is not JSON")
    assert reasons[1] == "missing CloudEvents header 'ce_specversion'"
