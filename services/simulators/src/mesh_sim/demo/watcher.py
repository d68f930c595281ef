"""Watching the topics: every catalog topic from where it ends now, this run's events narrated."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, TopicPartition

from contract_schema.base import Event
from contract_schema.codec import DecodeError, Envelope, decode
from contract_schema.topics import CATALOG, CLOCK

from .output import describe, say, styled

T = TypeVar("T")


class TopicWatcher:
    """Reads every catalog topic from where it ends now, decodes, keeps and narrates this run's events."""

    def __init__(self, bootstrap: str, interesting: Callable[[Event], bool]) -> None:
        self.events: list[tuple[str, Envelope]] = []
        self.interesting = interesting
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last: str | None = None
        self._repeats = 0
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"mesh-demo-{uuid.uuid4().hex[:8]}",
                                   "enable.auto.commit": False, "enable.partition.eof": False,
                                   "isolation.level": "read_committed"})
        metadata = self._consumer.list_topics(timeout=10).topics
        parts = []
        for spec in CATALOG:
            if spec.name not in metadata or spec.name == CLOCK.name:
                continue
            for p in metadata[spec.name].partitions:
                tp = TopicPartition(spec.name, p)
                high = self._consumer.get_watermark_offsets(tp, timeout=10)[1]
                parts.append(TopicPartition(spec.name, p, high))
        self._consumer.assign(parts)
        self._thread = threading.Thread(target=self._run, name="topic-watcher", daemon=True)

    def start(self) -> TopicWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            try:
                envelope = decode(msg.value(), msg.headers())
            except DecodeError:
                continue
            with self._lock:
                self.events.append((msg.topic() or "", envelope))
            if self.interesting(envelope.event):
                self._narrate(f"{msg.topic()}: {describe(envelope.event)}")
        self._narrate(None)

    def _narrate(self, line: str | None) -> None:
        """Print an event line; a run of identical lines (e.g. a year of SLA windows) prints once, counted."""
        if line is not None and line == self._last:
            self._repeats += 1
            return
        if self._repeats:
            say(styled("2", f"        (and {self._repeats} more like it)"))
        self._last, self._repeats = line, 0
        if line is not None:
            say(styled("2", f"      ← {line}"))

    def find(self, kind: type[T], where: Callable[[T], bool] = lambda _: True) -> list[T]:
        with self._lock:
            return [e.event for _, e in self.events if isinstance(e.event, kind) and where(e.event)]
