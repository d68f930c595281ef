from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy; return that value.

    Raises TimeoutError after `timeout` seconds, naming `message` (or the predicate)
    and the last value seen, so a failing test says what it was waiting for.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")
        time.sleep(interval)
