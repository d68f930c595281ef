"""The history: every record on every catalog topic and its DLQ, read from the start, decoded, kept in order.

One consumer by partition assignment (no group, nothing committed) that outlives broker restarts
(librdkafka reconnects). Each record is kept with its topic, partition, offset, ce_id and the decoded
event (or the decode error), and appended to `history.jsonl` so a failed run can be read afterwards.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from contract_schema.base import Event
from contract_schema.codec import DecodeError, decode
from contract_schema.topics import CATALOG


@dataclass(frozen=True)
class Seen:
    topic: str
    partition: int
    offset: int
    ce_id: str | None
    ce_type: str | None
    key: str | None
    event: Event | None
    headers: dict[str, str]
    at: float  # monotonic time it was read
    raw: bytes = b""  # the original value, kept for dead letters only

    @property
    def dlq_reason(self) -> str | None:
        return self.headers.get("dlq_reason")


def _headers(raw: Any) -> dict[str, str]:
    pairs = raw.items() if isinstance(raw, dict) else raw or []
    return {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "") for k, v in pairs}


class History:
    """Reads every catalog topic and its `.dlq` from the beginning until `stop()`."""

    def __init__(self, bootstrap: str, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.records: list[Seen] = []
        self._by_topic: dict[str, list[Seen]] = defaultdict(list)
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"mesh-chaos-{uuid.uuid4().hex[:8]}",
                                   "enable.auto.commit": False, "enable.partition.eof": False,
                                   "isolation.level": "read_committed", "log_level": 0,
                                   "topic.metadata.refresh.interval.ms": 5000})
        # Its own client: the consumer is busy polling in the history thread.
        self._probe = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        names = [t.name for t in CATALOG] + [t.dlq_name for t in CATALOG]
        metadata = self._consumer.list_topics(timeout=30).topics
        self._consumer.assign([TopicPartition(n, p, OFFSET_BEGINNING)
                               for n in names if n in metadata for p in metadata[n].partitions])
        self._file = path.open("a", encoding="utf-8")
        self._thread = threading.Thread(target=self._run, name="history", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._consumer.poll(0.2)
            except Exception:  # broker away: librdkafka reconnects, the next poll resumes
                time.sleep(0.5)
                continue
            if msg is None or msg.error() is not None:
                continue
            headers = _headers(msg.headers())
            event: Event | None = None
            problem = None
            topic = msg.topic() or ""
            if not topic.endswith(".dlq"):
                try:
                    event = decode(msg.value(), msg.headers()).event
                except DecodeError as exc:
                    problem = str(exc)
            raw_key = msg.key()
            key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else raw_key
            seen = Seen(topic, msg.partition() or 0, msg.offset() or 0, headers.get("ce_id"), headers.get("ce_type"),
                        key, event, headers, time.monotonic(), (msg.value() or b"") if event is None else b"")
            with self._lock:
                self.records.append(seen)
                self._by_topic[topic].append(seen)
            line: dict[str, Any] = {"topic": topic, "partition": seen.partition, "offset": seen.offset,
                                    "ce_id": seen.ce_id, "ce_type": seen.ce_type, "key": key}
            if event is not None:
                line["event"] = event.model_dump(mode="json")
            else:
                line["value"] = (msg.value() or b"")[:2000].decode("utf-8", "replace")
                line["headers"] = headers
                if problem:
                    line["decode_error"] = problem
            self._file.write(json.dumps(line) + "\n")

    def broker_answers(self) -> bool:
        """Whether the broker answers a metadata request now (its silence is not the mesh's)."""
        try:
            self._probe.list_topics(timeout=2)
        except Exception:  # KafkaException while it is down or restarting
            return False
        return True

    def group_offsets(self, groups: Sequence[str]) -> dict[str, tuple[tuple[str, int, int], ...] | None]:
        """Each consumer group's committed offsets, or None while the group is not Stable (rebalancing, or no
        member): a group stuck in a rebalance is as silent as one with nothing left to do."""
        result: dict[str, tuple[tuple[str, int, int], ...] | None] = {}
        try:
            described = self._probe.describe_consumer_groups(list(groups), request_timeout=5)
            for group in groups:
                if described[group].result().state != ConsumerGroupState.STABLE:
                    result[group] = None
                    continue
                committed = self._probe.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group)], request_timeout=5)[group].result()
                result[group] = tuple(sorted((tp.topic, tp.partition, tp.offset)
                                             for tp in committed.topic_partitions or ()))
        except Exception:  # the broker away or the coordinator moving: not settled
            return {group: None for group in groups}
        return result

    def on(self, topic: str) -> list[Seen]:
        with self._lock:
            return list(self._by_topic.get(topic, ()))

    def find(self, topic: str, where: Callable[[Seen], bool]) -> list[Seen]:
        return [s for s in self.on(topic) if where(s)]

    def count(self) -> int:
        with self._lock:
            return len(self.records)

    def last_read(self) -> float:
        """Monotonic time the newest record was read (0 when none)."""
        with self._lock:
            return self.records[-1].at if self.records else 0.0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
        self._file.close()
