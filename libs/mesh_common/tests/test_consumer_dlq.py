"""The shared consume loop against a real broker: bad records to the DLQ, the loop keeps going,
and a DLQ replay re-publishes the original bytes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from confluent_kafka import Message, Producer

import contract_schema as cs
from contract_schema.codec import Envelope
from contract_schema.topics import CLOCK
from mesh_common.consumer import EventConsumer
from mesh_common.dlq import read_dead_letter
from mesh_common.dlq_tool import inspect, replay
from mesh_common.settings import KafkaSettings
from mesh_testing import consume_all, create_topics, unique_name, wait_for


def _clock_record(minute: int) -> cs.Record:
    return cs.encode(cs.ClockAdvanced(now=datetime(2026, 1, 1, 0, minute, tzinfo=UTC)), source="/test",
                     event_id=f"tick-{minute}")


def test_garbage_goes_to_dlq_with_original_bytes_and_next_record_is_handled(kafka_bootstrap: str) -> None:
    topic = unique_name("consumer-dlq")
    create_topics(kafka_bootstrap, [topic, topic + ".dlq"])
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    seen: list[str] = []

    def handler(envelope: Envelope, msg: Message) -> None:
        if envelope.id == "tick-2":
            raise ValueError("handler refuses tick 2")
        seen.append(envelope.id)

    consumer = EventConsumer(kafka, service="test-service", group_id=unique_name("g"), topics=[topic],
                             handler=handler)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    garbage = b"\x00\x01 definitely not an event"
    producer.produce(topic, key=b"k", value=garbage, headers=[("ce_id", b"junk-1")])
    for minute in (1, 2, 3):
        r = _clock_record(minute)
        producer.produce(topic, key=r.key, value=r.value, headers=r.headers)
    producer.flush(10)
    try:
        wait_for(lambda: seen == ["tick-1", "tick-3"], timeout=30, message="valid records handled")
        dead = consume_all(kafka_bootstrap, topic + ".dlq", 2)
    finally:
        consumer.stop()
        thread.join(15)
    assert dead[0].value() == garbage
    letter = read_dead_letter(dead[0].headers())
    assert letter.source_topic == topic and letter.service == "test-service"
    assert letter.error_type == "DecodeError" and "missing CloudEvents header" in letter.reason
    assert ("ce_id", b"junk-1") in dead[0].headers()
    second = read_dead_letter(dead[1].headers())
    assert second.error_type == "ValueError" and second.reason == "handler refuses tick 2"


def test_an_event_its_topic_does_not_carry_is_dead_lettered_with_the_reason_and_never_handled(
        kafka_bootstrap: str) -> None:
    topic = unique_name("consumer-misplaced")
    create_topics(kafka_bootstrap, [topic, topic + ".dlq"])
    seen: list[str] = []
    consumer = EventConsumer(KafkaSettings(bootstrap_servers=kafka_bootstrap), service="test-service",
                             group_id=unique_name("g"), topics=[topic], carries={topic: CLOCK},
                             handler=lambda envelope, _msg: seen.append(envelope.id))
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    misplaced = cs.encode(cs.RenewalDecision(contract_id="C-1", tenant_id="t", decision=cs.RenewalDecisionKind.RENEW,
                                             decided_at=datetime(2026, 1, 1, tzinfo=UTC)),
                          source="/test", event_id="decision-1")
    placed = _clock_record(1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for r in (misplaced, placed):
        producer.produce(topic, key=r.key, value=r.value, headers=r.headers)
    producer.flush(10)
    try:
        wait_for(lambda: seen == ["tick-1"], timeout=30, message="the clock record handled")
        [dead] = consume_all(kafka_bootstrap, topic + ".dlq", 1)
    finally:
        consumer.stop()
        thread.join(15)
    assert dead.value() == misplaced.value
    reason = read_dead_letter(dead.headers()).reason
    assert reason == (f"event type contractmesh.RenewalDecision does not belong on {CLOCK.name} "
                      f"(it carries {CLOCK.event_types[0]})")


def test_replay_republishes_dead_letters_once(kafka_bootstrap: str) -> None:
    topic = unique_name("replay")
    create_topics(kafka_bootstrap, [topic, topic + ".dlq"])
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    from mesh_common.kafka import produce_dead_letter

    producer = Producer(kafka.producer())
    record = _clock_record(5)
    produce_dead_letter(producer, topic=topic, partition=0, offset=41, key=record.key, value=record.value,
                        headers=record.headers, error="fixed since", service="svc")
    producer.flush(10)
    assert any("fixed since" in line for line in inspect(kafka, topic, idle_timeout=2))
    assert replay(kafka, topic, idle_timeout=2) == 1
    assert replay(kafka, topic, idle_timeout=2) == 0  # committed: a second run replays nothing
    (back,) = consume_all(kafka_bootstrap, topic, 1)
    assert back.value() == record.value
    assert cs.decode(back.value(), back.headers()).id == "tick-5"
