"""The ERP's REST endpoint for releasing milestone billing (outbound, with retries and a breaker), and the
relay that retries a release until ERP takes it (docs/adr/0012)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from contract_schema import ReleaseMilestoneBilling
from mesh_common.delivery import (
    CircuitBreaker,
    CircuitOpen,
    DeliveryError,
    RetryPolicy,
    breaker_wait,
    round_delay,
    send_with_retries,
)
from mesh_common.due_index import DueIndex

log = logging.getLogger(__name__)


class ErpClient:
    def __init__(self, base_url: str, token: str | None, *, policy: RetryPolicy, timeout: float = 10.0,
                 breaker: CircuitBreaker | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.policy = policy
        self.timeout = timeout
        self.breaker = breaker or CircuitBreaker("erp-milestones")
        self._client: httpx.AsyncClient | None = None

    async def release(self, command: ReleaseMilestoneBilling, idempotency_key: str) -> httpx.Response:
        """POST {base}/milestones/{contract}/{obligation}/release; raises DeliveryError after the last try."""
        if self._client is None:  # created lazily: it must live in the worker's event loop
            self._client = httpx.AsyncClient(timeout=self.timeout)
        client = self._client
        url = f"{self.base_url}/milestones/{command.contract_id}/{command.obligation_id}/release"
        headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = command.model_dump_json().encode()

        async def call() -> httpx.Response:
            return await client.post(url, content=body, headers=headers)

        return await send_with_retries(call, policy=self.policy, breaker=self.breaker)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


@dataclass
class HeldRelease:
    contract_id: str
    partition: int  # the contract's partition: where the outcome of a round is reported
    command_id: str  # also the Idempotency-Key of every try
    command: ReleaseMilestoneBilling
    attempts: int = 0  # failed rounds so far (the backoff grows with it)


@dataclass(frozen=True)
class RoundOutcome:
    """What one delivery round did, for the agent that owns the contract to record (docs/adr/0012)."""

    contract_id: str
    partition: int
    command_id: str
    ok: bool
    permanent: bool
    error: str | None
    at: datetime  # wall time
    counted: bool = True  # False: the circuit was open, no call was made (the give-up clock still runs)


class ErpRelay:
    """Sends held releases to ERP outside the agents, so a slow or down ERP holds up no other work.

    Each due release gets one round (`send_with_retries` with the client's policy); a failed round is
    retried after `round_delay` (exponential from `base` up to `cap`, equal jitter, never sooner than a
    Retry-After), an open circuit waits for the breaker's trial call without costing an attempt, and the
    first accepted call after failures makes every waiting release due at once. Every outcome is
    reported, an open circuit as not counted, so the contract's state (the Faust table, which survives a
    kill) keeps the count and the first failure's time, and the agent checks the give-up time while ERP
    stays down. Nothing here is durable: the
    worker rebuilds the relay from its table after every rebalance.
    """

    def __init__(self, client: ErpClient, report: Callable[[RoundOutcome], Awaitable[None]], *, base: float,
                 cap: float, concurrency: int = 8, can_send: Callable[[], bool] = lambda: True,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.client, self.report, self.base, self.cap = client, report, base, cap
        self.concurrency, self.can_send, self.wall = concurrency, can_send, wall
        self.held: dict[str, HeldRelease] = {}
        self.queue: DueIndex[str] = DueIndex()
        self.inflight: set[str] = set()
        self._not_before = 0.0  # monotonic: a Retry-After longer than a round holds back every call
        self._degraded = False
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def hold(self, release: HeldRelease, at: datetime | None = None) -> None:
        self.held[release.command_id] = release
        self.queue.schedule(release.command_id, at or self.wall())
        if self._wake is not None:
            self._wake.set()

    def replace(self, releases: list[HeldRelease]) -> None:
        """After a rebalance: exactly the releases of this worker's partitions, all due now."""
        self.held, self.queue = {}, DueIndex()
        for r in releases:
            self.hold(r)

    def keep_only(self, contract_id: str, command_ids: set[str]) -> None:
        """Forget this contract's releases its state no longer holds (accepted, or given up)."""
        for cid in [k for k, r in self.held.items() if r.contract_id == contract_id and k not in command_ids]:
            self._forget(cid)

    def _forget(self, command_id: str) -> None:
        self.held.pop(command_id, None)
        self.queue.cancel(command_id)

    async def run(self) -> None:
        self._wake = asyncio.Event()
        sem = asyncio.Semaphore(self.concurrency)
        while True:
            self._wake.clear()
            if self.can_send() and time.monotonic() >= self._not_before:
                for command_id, _ in list(self.queue.pop_due(self.wall())):
                    release = self.held.get(command_id)
                    if release is None:
                        continue
                    if command_id in self.inflight:  # its last round is still reporting: look again shortly
                        self.queue.schedule(command_id, self.wall() + timedelta(seconds=0.1))
                        continue
                    self.inflight.add(command_id)
                    task = asyncio.ensure_future(self._round(release, sem))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            nxt = self.queue.next_due()
            wait = 1.0 if nxt is None else min(1.0, max(0.01, (nxt - self.wall()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _round(self, r: HeldRelease, sem: asyncio.Semaphore) -> None:
        try:
            async with sem:
                await self._send(r)
        except Exception:  # a bug here must not stop the relay: try again later
            log.exception("ERP release round of %s crashed", r.command_id)
            self.queue.schedule(r.command_id, self.wall() + timedelta(seconds=self.cap))
        finally:
            self.inflight.discard(r.command_id)

    async def _send(self, r: HeldRelease) -> None:
        try:
            await self.client.release(r.command, r.command_id)
        except CircuitOpen:  # no call was made: not an attempt; come back for the breaker's trial call
            wait = breaker_wait(self.client.breaker) + random.uniform(0, self.client.breaker.reset_after / 5)
            self.queue.schedule(r.command_id, self.wall() + timedelta(seconds=wait))
            # Reported all the same, so the give-up time is checked while ERP stays down.
            await self._report(RoundOutcome(r.contract_id, r.partition, r.command_id, False, False, None,
                                            self.wall(), counted=False))
            return
        except DeliveryError as exc:
            self._degraded = True
            if exc.retry_after is not None:
                self._not_before = max(self._not_before, time.monotonic() + exc.retry_after)
            error = str(exc)
            current = self.held.get(r.command_id)  # a rebuild may have replaced the entry meanwhile
            if not exc.permanent and current is not None:
                current.attempts = max(current.attempts, r.attempts) + 1
                delay = round_delay(current.attempts - 1, base=self.base, cap=self.cap, retry_after=exc.retry_after)
                self.queue.schedule(r.command_id, self.wall() + timedelta(seconds=delay))
                log.warning("ERP release %s of %s failed (round %d), retrying in %.1f s: %s", r.command_id,
                            r.contract_id, current.attempts, delay, error)
            else:
                self._forget(r.command_id)
            await self._report(RoundOutcome(r.contract_id, r.partition, r.command_id, False, exc.permanent, error,
                                            self.wall()))
            return
        self._forget(r.command_id)
        if self._degraded:  # ERP answers again: everything waiting goes now, not when its backoff ends
            self._degraded = False
            now = self.wall()
            for command_id in list(self.held):
                if command_id not in self.inflight:
                    self.queue.schedule(command_id, now)
            log.info("ERP accepts releases again: %d waiting release(s) resumed", len(self.held))
        await self._report(RoundOutcome(r.contract_id, r.partition, r.command_id, True, False, None, self.wall()))

    async def _report(self, outcome: RoundOutcome) -> None:
        try:
            await self.report(outcome)
        except Exception:  # the state keeps the release: a rebuild sends it again, with the same key
            log.exception("reporting the ERP round of %s failed", outcome.command_id)
