"""Retry policy against a real HTTP server on loopback that fails on purpose."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from mesh_common.delivery import CircuitBreaker, CircuitOpen, DeliveryError, RetryPolicy, send_with_retries


class ScriptedServer:
    """Answers each POST with the next (status, headers) of a script, then 200."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                outer.calls += 1
                status, headers = outer.script.pop(0) if outer.script else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server_factory() -> Iterator[list[ScriptedServer]]:
    servers: list[ScriptedServer] = []
    yield servers
    for s in servers:
        s.httpd.shutdown()


async def _run(server: ScriptedServer, policy: RetryPolicy, sleeps: list[float],
               breaker: CircuitBreaker | None = None) -> httpx.Response:
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with httpx.AsyncClient() as client:
        return await send_with_retries(lambda: client.post(server.url, json={}), policy=policy,
                                       breaker=breaker, sleep=fake_sleep)


async def test_retries_5xx_and_429_then_succeeds_honouring_retry_after(server_factory: list[ScriptedServer]) -> None:
    server = ScriptedServer([(500, {}), (429, {"Retry-After": "7"})])
    server_factory.append(server)
    sleeps: list[float] = []
    response = await _run(server, RetryPolicy(attempts=5, base_delay=0.01, max_delay=10), sleeps)
    assert response.status_code == 200 and server.calls == 3
    assert sleeps[1] == 7.0  # the server's Retry-After, longer than the backoff


async def test_other_4xx_is_permanent_without_retry(server_factory: list[ScriptedServer]) -> None:
    server = ScriptedServer([(400, {})])
    server_factory.append(server)
    with pytest.raises(DeliveryError) as info:
        await _run(server, RetryPolicy(attempts=5), [])
    assert info.value.permanent and info.value.status == 400 and server.calls == 1


async def test_gives_up_after_the_last_attempt(server_factory: list[ScriptedServer]) -> None:
    server = ScriptedServer([(503, {})] * 3)
    server_factory.append(server)
    with pytest.raises(DeliveryError) as info:
        await _run(server, RetryPolicy(attempts=3, base_delay=0.001), [])
    assert not info.value.permanent and server.calls == 3


async def test_circuit_opens_after_threshold_and_refuses_calls(server_factory: list[ScriptedServer]) -> None:
    server = ScriptedServer([(503, {})] * 10)
    server_factory.append(server)
    now = [0.0]
    breaker = CircuitBreaker("crm", threshold=2, reset_after=30, clock=lambda: now[0])
    with pytest.raises(CircuitOpen):
        await _run(server, RetryPolicy(attempts=5, base_delay=0.001), [], breaker)
    assert server.calls == 2
    now[0] = 31.0  # after the reset period one trial call goes through
    server.script = []
    assert (await _run(server, RetryPolicy(attempts=1), [], breaker)).status_code == 200
    assert not breaker.is_open


def test_backoff_grows_but_stays_capped() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=8)
    assert all(0 <= policy.delay(a) <= 8 for a in range(20))


async def test_a_retry_after_longer_than_max_retry_after_ends_the_send_saying_how_long_to_wait(
        server_factory: list[ScriptedServer]) -> None:
    server = ScriptedServer([(429, {"Retry-After": "120"})])
    server_factory.append(server)
    sleeps: list[float] = []
    with pytest.raises(DeliveryError) as info:
        await _run(server, RetryPolicy(attempts=5, base_delay=0.01, max_delay=1, max_retry_after=5), sleeps)
    assert server.calls == 1 and sleeps == []  # no early call: the caller waits durably
    assert info.value.retry_after == 120.0 and info.value.status == 429 and not info.value.permanent
