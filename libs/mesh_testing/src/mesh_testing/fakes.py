"""Fakes of the Kafka edge for service-layer tests (no broker): a producer that keeps what it was given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contract_schema.codec import Envelope, decode


@dataclass
class Produced:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, Any]]

    def envelope(self) -> Envelope:
        return decode(self.value, self.headers)


@dataclass
class FakeProducer:
    """Implements mesh_common.kafka.EventProducer; every record is 'acknowledged' by the next flush."""

    records: list[Produced] = field(default_factory=list)

    def produce(self, topic: str, value: str | bytes | None = None, key: str | bytes | None = None, *,
                headers: Any = None, **_: Any) -> None:
        as_bytes = [(k, v.encode() if isinstance(v, str) else v) for k, v in (headers or [])]
        self.records.append(Produced(topic, key.encode() if isinstance(key, str) else key,
                                     value.encode() if isinstance(value, str) else value, as_bytes))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0

    def on(self, topic: str) -> list[Produced]:
        return [r for r in self.records if r.topic == topic]

    def events(self, topic: str) -> list[Any]:
        return [r.envelope().event for r in self.on(topic)]
