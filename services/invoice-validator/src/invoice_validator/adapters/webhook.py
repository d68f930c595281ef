"""Optional HMAC-signed webhook to the AP system with each verdict (mesh_common signing + retries)."""

from __future__ import annotations

import asyncio
import logging

import httpx

from mesh_common.delivery import CircuitBreaker, DeliveryError, RetryPolicy, send_with_retries
from mesh_common.signing import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)


class ApWebhook:
    def __init__(self, url: str, secret: str, policy: RetryPolicy | None = None) -> None:
        self.url, self.secret = url, secret
        self.policy = policy or RetryPolicy(attempts=5, base_delay=0.2, max_delay=10)
        self.breaker = CircuitBreaker("ap-webhook")
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def deliver_later(self, event_id: str, body: bytes) -> None:
        """Deliver in the background: the agent must not wait on AP's HTTP latency."""
        task = asyncio.get_running_loop().create_task(self.deliver(event_id, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(self, event_id: str, body: bytes) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10)
        client = self._client

        async def call() -> httpx.Response:
            # Signed per attempt: the timestamp must be fresh within the receiver's replay window.
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body),
                       "X-Mesh-Event-Id": event_id}
            return await client.post(self.url, content=body, headers=headers)

        try:
            await send_with_retries(call, policy=self.policy, breaker=self.breaker)
        except DeliveryError as exc:
            log.error("AP webhook delivery of %s failed: %s", event_id, exc)
