"""A step's outcome, and waiting for it: polling with a timeout, never a blind sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


class StepFailed(Exception):
    """The step ran but the expected outcome did not happen; the message is what was observed."""


class ServiceMissing(StepFailed):
    pass


@dataclass
class Outcome:
    step: str
    expected: str
    observed: str
    ok: bool


def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll until `predicate` returns something truthy; StepFailed naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except httpx.HTTPError as exc:  # a service restarting: keep polling
            last = f"{type(exc).__name__}: {exc}"
        if last and not isinstance(last, str):
            return last
        if time.monotonic() >= deadline:
            raise StepFailed(f"nothing within {timeout:.0f}s: {what}" + (f" ({last})" if isinstance(last, str) else ""))
        time.sleep(interval)  # poll interval
