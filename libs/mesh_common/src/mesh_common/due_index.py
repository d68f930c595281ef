"""A due-date index: fires exactly what is due, without scanning everything scheduled.

A min-heap of (due time, key). Rescheduling a key supersedes its earlier entry lazily,
so `schedule`, `cancel` and popping one due item are O(log n) and a tick with nothing
due is O(1), however many items are scheduled. The index holds no I/O: the service
persists what it fired (so nothing fires twice after a restart) and rebuilds the index
from its own state on start-up or when partitions move.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from datetime import datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DueIndex(Generic[K]):
    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, K]] = []
        self._due: dict[K, datetime] = {}
        self._seq = 0  # tie-breaker: keys need not be orderable

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def schedule(self, key: K, due_at: datetime) -> None:
        """Schedule `key` at `due_at`, replacing any earlier schedule of the same key."""
        if self._due.get(key) == due_at:
            return
        self._due[key] = due_at
        self._seq += 1
        heapq.heappush(self._heap, (due_at, self._seq, key))
        self._compact_if_bloated()

    def cancel(self, key: K) -> None:
        self._due.pop(key, None)

    def due_at(self, key: K) -> datetime | None:
        return self._due.get(key)

    def next_due(self) -> datetime | None:
        self._drop_stale_head()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> Iterator[tuple[K, datetime]]:
        """Remove and yield every (key, due time) with due time <= now, earliest first."""
        while True:
            self._drop_stale_head()
            if not self._heap or self._heap[0][0] > now:
                return
            due_at, _, key = heapq.heappop(self._heap)
            del self._due[key]
            yield key, due_at

    def _drop_stale_head(self) -> None:
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)

    def _compact_if_bloated(self) -> None:
        # Superseded entries stay in the heap until they surface; rebuild when they dominate.
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._due):
            self._heap = [(d, s, k) for d, s, k in self._heap if self._due.get(k) == d]
            heapq.heapify(self._heap)
