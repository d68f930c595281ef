"""One injectable clock for every service.

Production uses the wall clock. Tests and demos use a clock that only moves when told
(directly, or by ClockAdvanced events on mesh.clock.v1), so time passes without sleeping.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only forward and only when told. Thread-safe."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("clock time must be timezone-aware")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> bool:
        """Move to `when` if it is later than now; returns whether the clock moved."""
        if when.tzinfo is None:
            raise ValueError("clock time must be timezone-aware")
        with self._lock:
            if when <= self._now:
                return False
            self._now = when
            return True

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


# --- Following the shared clock topic (MESH_CLOCK=topic) -------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # a topic clock reads this until the first tick arrives


def apply_tick(clock: ManualClock, event: object, clock_id: str = "mesh") -> bool:
    """Move `clock` to a ClockAdvanced event's time; other events and other clocks are ignored.

    Returns whether the clock moved (ticks never move it backwards)."""
    from contract_schema.alert import ClockAdvanced

    if not isinstance(event, ClockAdvanced) or event.clock_id != clock_id:
        return False
    return clock.set(event.now)


class ClockFollower:
    """Keeps a ManualClock at the latest ClockAdvanced time on the clock topic.

    Every replica of every service must see every tick, so this reads all partitions by
    assignment (no consumer group, nothing committed), from the beginning: the latest
    tick wins and ticks never go backwards. `on_advance` runs in the follower's thread.
    """

    def __init__(self, clock: ManualClock, consumer_conf: dict[str, object], *, topic: str = "mesh.clock.v1",
                 clock_id: str = "mesh", on_advance: Callable[[datetime], None] | None = None,
                 poll_timeout: float = 0.1) -> None:
        self.clock, self.topic, self.clock_id = clock, topic, clock_id
        self.on_advance, self.poll_timeout = on_advance, poll_timeout
        conf = {k: v for k, v in consumer_conf.items() if k != "partition.assignment.strategy"}
        self._conf = conf | {"enable.auto.commit": False, "enable.partition.eof": False,
                             "group.id": conf.get("group.id") or f"clock-follower-{uuid.uuid4().hex[:8]}"}
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ClockFollower:
        self._thread = threading.Thread(target=self.run, name="clock-follower", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_caught_up(self, timeout: float | None = None) -> bool:
        """True once every tick that was on the topic when the follower started has been applied."""
        return self._caught_up.wait(timeout)

    def run(self) -> None:
        from confluent_kafka import Consumer

        from contract_schema.codec import DecodeError, decode

        consumer = Consumer(self._conf)
        try:
            start = self._starting_point(consumer)
            if start is None:
                return
            parts, ends = start
            consumer.assign(parts)
            seen: dict[int, int] = {}
            if all(end <= 0 for end in ends.values()):
                self._caught_up.set()
            while not self._stop.is_set():
                msg = consumer.poll(self.poll_timeout)
                if msg is None or msg.error() is not None:
                    continue
                seen[msg.partition() or 0] = (msg.offset() or 0) + 1
                try:
                    moved = apply_tick(self.clock, decode(msg.value(), msg.headers()).event, self.clock_id)
                except DecodeError as exc:
                    log.warning("ignoring undecodable record on %s: %s", self.topic, exc.reason)
                    moved = False
                if not self._caught_up.is_set() and all(seen.get(p, 0) >= end for p, end in ends.items()):
                    self._caught_up.set()
                if moved and self.on_advance is not None:
                    self.on_advance(self.clock.now())
        finally:
            consumer.close()

    def _starting_point(self, consumer: Any) -> tuple[list[Any], dict[int, int]] | None:
        """The clock topic's partitions and their end offsets, retried until the topic has leaders.

        Right after the topic is created (or while the broker restarts) metadata and watermark
        requests fail for a while (no leader yet, transport errors); a follower that gave up then
        would leave its service at the epoch for good."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

        while not self._stop.is_set():
            try:
                metadata = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
                if metadata is not None and metadata.error is None and metadata.partitions:
                    parts = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
                    ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
                    return parts, ends
            except KafkaException as exc:
                log.info("clock topic %s not ready yet: %s", self.topic, exc)
            self._stop.wait(0.5)
        return None
