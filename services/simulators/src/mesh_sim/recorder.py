"""A thread-safe, append-only log of what a simulator received: what the demo and tests read back."""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Received:
    seq: int
    kind: str  # e.g. "milestone-release", "ap-verdict", "opportunity-upsert", "email"
    method: str
    path: str
    at: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    accepted: bool = True  # False when the simulator refused it (bad token, bad signature, ...)
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Recorder:
    def __init__(self) -> None:
        self._items: list[Received] = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    def record(self, kind: str, *, method: str, path: str, body: Any, headers: dict[str, str] | None = None,
               accepted: bool = True, problem: str | None = None) -> Received:
        with self._lock:
            item = Received(seq=next(self._seq), kind=kind, method=method, path=path,
                            at=datetime.now(UTC).isoformat(), body=body, headers=dict(headers or {}),
                            accepted=accepted, problem=problem)
            self._items.append(item)
            return item

    def items(self, kind: str | None = None, since: int = 0) -> list[Received]:
        with self._lock:
            return [i for i in self._items if (kind is None or i.kind == kind) and i.seq > since]

    def clear(self) -> int:
        with self._lock:
            n = len(self._items)
            self._items.clear()
            return n


# Headers worth keeping in a record; never the full set (cookies, hop-by-hop noise).
KEPT_HEADERS = ("authorization", "content-type", "x-mesh-signature", "idempotency-key", "traceparent",
                "user-agent", "x-request-id")


def kept_headers(headers: Any) -> dict[str, str]:
    return {k: str(headers[k]) for k in KEPT_HEADERS if k in headers}
