"""One injectable clock for every service.

Production uses the wall clock. Tests and demos use a clock that only moves when told
(directly, or by ClockAdvanced events on mesh.clock.v1), so time passes without sleeping.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


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
