"""The harness against the real broker and the real database."""

from __future__ import annotations

import psycopg
import pytest
from confluent_kafka import Producer

from mesh_testing import consume_all, create_topics, free_port, unique_name, wait_for


def test_wait_for_returns_the_truthy_value() -> None:
    calls = iter([0, None, "ready"])
    assert wait_for(lambda: next(calls), timeout=5, interval=0) == "ready"


def test_wait_for_times_out_saying_what_it_waited_for() -> None:
    with pytest.raises(TimeoutError, match="the moon"):
        wait_for(lambda: False, timeout=0.05, interval=0.01, message="the moon")


def test_unique_names_and_free_ports_differ() -> None:
    assert unique_name("t") != unique_name("t")
    assert unique_name("orders").startswith("orders-")
    assert 0 < free_port() < 65536


def test_bytes_round_trip_through_the_broker(kafka_bootstrap: str) -> None:
    topic = unique_name("roundtrip")
    create_topics(kafka_bootstrap, [topic], partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    sent = [(f"k{i}".encode(), bytes([i, 0, 255]) + b"payload") for i in range(10)]
    for key, value in sent:
        producer.produce(topic, key=key, value=value, headers=[("ce_type", b"Test")])
    assert producer.flush(30) == 0

    messages = consume_all(kafka_bootstrap, topic, expected_count=len(sent), timeout=30)

    assert sorted((m.key(), m.value()) for m in messages) == sorted(sent)
    assert all(m.headers() == [("ce_type", b"Test")] for m in messages)


def test_consume_all_times_out_when_messages_are_missing(kafka_bootstrap: str) -> None:
    topic = unique_name("empty")
    create_topics(kafka_bootstrap, [topic])
    with pytest.raises(TimeoutError, match="got 0 of 1"):
        consume_all(kafka_bootstrap, topic, expected_count=1, timeout=1)


def test_postgres_answers(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        database = postgres_url.rsplit("/", 1)[1]  # mesh_test, or the reused server's database
        assert conn.execute("select current_database()").fetchone() == (database,)
