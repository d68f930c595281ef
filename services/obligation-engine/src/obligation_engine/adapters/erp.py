"""The ERP's REST endpoint for releasing milestone billing (outbound, with retries and a breaker)."""

from __future__ import annotations

import httpx

from contract_schema import ReleaseMilestoneBilling
from mesh_common.delivery import CircuitBreaker, RetryPolicy, send_with_retries


class ErpClient:
    def __init__(self, base_url: str, token: str | None, *, policy: RetryPolicy, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.policy = policy
        self.timeout = timeout
        self.breaker = CircuitBreaker("erp-milestones")
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
