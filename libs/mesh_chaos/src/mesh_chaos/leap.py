"""The clock leap handshake: the nemesis asks for a leap and waits; the workload's own thread takes the
request between two operations (so a leap never lands inside one), and refuses any after its last."""

from __future__ import annotations

import threading

Request = tuple[int, threading.Event, list[str]]  # days, done, the new date


class LeapRequests:
    def __init__(self) -> None:
        self._leap_lock = threading.Lock()
        self._leap: Request | None = None
        self._stepping = True  # False once the run's last operation is done: no leap is taken after it

    def request(self, days: int, timeout: float = 180) -> str | None:
        """Called by the nemesis: move the clock `days` ahead at the next step; the new date, or None."""
        done, out = threading.Event(), list[str]()
        with self._leap_lock:
            if not self._stepping:
                return None
            self._leap = (days, done, out)
        done.wait(timeout)
        with self._leap_lock:
            if self._leap is not None and self._leap[1] is done:
                self._leap = None  # not taken: never leap after the nemesis gave up
        return out[0] if out else None

    def take(self, last: bool = False) -> Request | None:
        """The pending request, if any; with `last`, every later request is refused."""
        with self._leap_lock:
            request, self._leap = self._leap, None
            if last:
                self._stepping = False
        return request
