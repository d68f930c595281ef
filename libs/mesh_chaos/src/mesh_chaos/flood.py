"""Malformed flood: garbage and schema-invalid records on every inbound topic, while the workload runs.

Each record is keyed `flood-<n>` so the checker finds it again in `<topic>.dlq`; half are bytes that are
not JSON, half are CloudEvents of the topic's own event type whose body misses required fields.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Producer

from contract_schema.topics import (
    ALERTS,
    CONTRACT_STATE,
    ERP_PERFORMANCE,
    INVOICE_RECEIVED,
    OBLIGATION_EVENTS,
    RENEWAL_DECISION,
    SCORECARD,
    TopicSpec,
)

# Every topic a service consumes from outside itself (the clock topic excepted: a bad tick is ignored).
INBOUND: tuple[TopicSpec, ...] = (INVOICE_RECEIVED, ERP_PERFORMANCE, CONTRACT_STATE, OBLIGATION_EVENTS,
                                  RENEWAL_DECISION, ALERTS, SCORECARD)


def malformed(n: int, topic: TopicSpec) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
    """(value, headers) of flood record `n`: alternately not JSON, and a CloudEvent missing its fields."""
    if n % 2 == 0:
        return f"\x00not json {n} {{[".encode(), [("ce_id", f"flood-{n}".encode())]
    ce_type = "contractmesh." + topic.events[0].__name__
    headers: list[tuple[str, str | bytes | None]] = [
        ("ce_id", f"flood-{n}".encode()), ("ce_source", b"/contract-mesh/chaos/flood"), ("ce_type", ce_type.encode()),
        ("ce_specversion", b"1.0"), ("ce_time", b"2031-01-01T00:00:00Z"), ("content-type", b"application/json")]
    return f'{{"flood": {n}, "tenant_id": 7}}'.encode(), headers


class Flood:
    """Produces `count` malformed records over `seconds`, spread round-robin over INBOUND."""

    def __init__(self, bootstrap: str, count: int, seconds: float) -> None:
        self.count, self.seconds = count, seconds
        self.sent: list[tuple[str, str]] = []  # (topic, key)
        self.started = self.ended = 0.0
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0,
                                   "message.timeout.ms": 120000})
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def start(self) -> Flood:
        self._thread.start()
        return self

    def _run(self) -> None:
        self.started = time.monotonic()
        for n in range(self.count):
            topic = INBOUND[n % len(INBOUND)]
            value, headers = malformed(n, topic)
            key = f"flood-{n}"
            while True:
                try:
                    self._producer.produce(topic.name, key=key.encode(), value=value, headers=headers)
                    break
                except BufferError:  # local queue full while the broker is away: wait for room
                    self._producer.poll(0.5)
            self.sent.append((topic.name, key))
            self._producer.poll(0)
            target = self.started + self.seconds * (n + 1) / self.count
            time.sleep(max(0.0, target - time.monotonic()))  # the flood's steady rate
        self._producer.flush(120)
        self.ended = time.monotonic()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
