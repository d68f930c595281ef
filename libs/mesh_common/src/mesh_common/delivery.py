"""Outbound HTTP with retries, backoff with jitter, Retry-After and a circuit breaker.

Used by every adapter that calls another system (ERP, CRM, webhooks), so the policy is
written once: 429 and 5xx and connection errors are retried; other 4xx are permanent.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After), if it did


class CircuitOpen(DeliveryError):
    def __init__(self, name: str) -> None:
        super().__init__(f"circuit {name!r} is open: the endpoint keeps failing", permanent=False)


@dataclass
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    # The longest Retry-After slept on inside one send; a longer one ends the send at once with
    # DeliveryError.retry_after set, for a caller that retries durably and can wait that long without
    # calling early. None: sleep on it, capped at 4 x max_delay.
    max_retry_after: float | None = None

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full-jitter exponential backoff; a server's Retry-After wins when it is longer."""
        backoff = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** attempt))
        cap = self.max_delay * 4 if self.max_retry_after is None else self.max_retry_after
        return max(backoff, min(retry_after, cap)) if retry_after is not None else backoff


class CircuitBreaker:
    """Opens after `threshold` consecutive failures; lets one trial call through after `reset_after`."""

    def __init__(self, name: str, threshold: int = 5, reset_after: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.threshold, self.reset_after, self._clock = name, threshold, reset_after, clock
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None and self._clock() - self.opened_at < self.reset_after

    def before_call(self) -> None:
        if self.is_open:
            raise CircuitOpen(self.name)

    def record(self, ok: bool) -> None:
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self._clock()


def round_delay(attempts: int, *, base: float, cap: float, retry_after: float | None = None,
                rng: random.Random | None = None) -> float:
    """Seconds before the next durable round (a retry scheduled in a database, not slept on): exponential
    from `base` with equal jitter (at least half the step, so a fleet of waiting rows spreads out without
    hammering), capped; never sooner than a Retry-After the partner sent."""
    step = min(cap, base * 2.0 ** min(attempts, 30))
    jitter = (rng.uniform if rng is not None else random.uniform)(0, step / 2)
    return max(step / 2 + jitter, retry_after or 0.0)


def breaker_wait(breaker: CircuitBreaker) -> float:
    """Seconds until an open circuit lets a trial call through."""
    if breaker.opened_at is None:
        return 0.0
    return max(0.0, breaker.opened_at + breaker.reset_after - breaker._clock())


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


async def send_with_retries(call: Callable[[], Awaitable[httpx.Response]], *, policy: RetryPolicy,
                            breaker: CircuitBreaker | None = None,
                            sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> httpx.Response:
    """Run `call` until it succeeds (2xx), fails permanently, or attempts run out."""
    last: DeliveryError | None = None
    for attempt in range(policy.attempts):
        if breaker:
            breaker.before_call()
        retry_after = None
        try:
            response = await call()
        except httpx.TransportError as exc:
            last = DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False)
        else:
            if response.is_success:
                if breaker:
                    breaker.record(True)
                return response
            retry_after = retry_after_seconds(response)
            last = DeliveryError(f"HTTP {response.status_code}: {response.text[:300]}",
                                 permanent=not _retryable(response.status_code), status=response.status_code,
                                 retry_after=retry_after)
        if breaker and not last.permanent:  # a 4xx means the endpoint is up: no reason to open
            breaker.record(False)
        if last.permanent:
            raise last
        if retry_after is not None and policy.max_retry_after is not None and retry_after > policy.max_retry_after:
            raise last  # the caller waits durably for as long as the server asked
        if attempt + 1 < policy.attempts:
            await sleep(policy.delay(attempt, retry_after))
    assert last is not None
    raise last
