"""The topic-driven clock: ticks move a ManualClock forward only; a follower started late
catches up on the ticks already on the topic."""

from __future__ import annotations

from datetime import UTC, datetime

from confluent_kafka import Producer

import contract_schema as cs
from mesh_common.clock import EPOCH, ClockFollower, ManualClock, apply_tick
from mesh_common.settings import KafkaSettings
from mesh_testing import create_topics, unique_name, wait_for


def _at(day: int) -> datetime:
    return datetime(2026, 1, day, tzinfo=UTC)


def test_apply_tick_moves_forward_only_and_ignores_other_clocks_and_events() -> None:
    clock = ManualClock(EPOCH)
    assert apply_tick(clock, cs.ClockAdvanced(now=_at(5)))
    assert not apply_tick(clock, cs.ClockAdvanced(now=_at(3)))
    assert not apply_tick(clock, cs.ClockAdvanced(clock_id="other", now=_at(9)))
    assert not apply_tick(clock, "not a tick")
    assert clock.now() == _at(5)


def test_follower_catches_up_then_follows_new_ticks(kafka_bootstrap: str) -> None:
    topic = unique_name("clock")
    create_topics(kafka_bootstrap, [topic])
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for day in (2, 4):
        record = cs.encode(cs.ClockAdvanced(now=_at(day)), source="/test")
        producer.produce(topic, key=record.key, value=record.value, headers=record.headers)
    producer.flush(10)

    clock = ManualClock(EPOCH)
    advanced: list[datetime] = []
    follower = ClockFollower(clock, KafkaSettings(bootstrap_servers=kafka_bootstrap).consumer("unused"),
                             topic=topic, on_advance=advanced.append).start()
    try:
        assert follower.wait_caught_up(30)
        assert clock.now() == _at(4)
        record = cs.encode(cs.ClockAdvanced(now=_at(7)), source="/test")
        producer.produce(topic, key=record.key, value=record.value, headers=record.headers)
        producer.flush(10)
        wait_for(lambda: clock.now() == _at(7), timeout=20, message="clock at day 7")
        assert advanced[-1] == _at(7)
    finally:
        follower.stop()
