"""Partner outages on command, for fault drills: `POST /chaos/fault {"mode", "seconds", "retry_after"}`.

For `seconds` from now every partner call (not the simulator's own read-back and control routes) gets:
- `unavailable`: 503;
- `throttled`: 429 with `Retry-After: retry_after`;
- `hang`: no answer until the window ends (past any client timeout), then 503;
- `refuse`: the listening port is closed, so connections are refused (ECONNREFUSED), and open ones are cut.
  This needs the port gate (`SIM_FAULT_GATE=true`: the public port is a TCP relay in front of the real
  server, which a process can close and reopen; uvicorn's own socket cannot be reopened).
The SMTP catcher answers SMTP 421 (unavailable/throttled) or stalls (hang) on the same switch.
`GET /chaos/fault` shows the active window, `DELETE /chaos/fault` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .recorder import Recorder

# Routes the drill itself and the read-back use: never faulted.
CONTROL_PREFIXES = ("/chaos", "/healthz", "/readyz", "/metrics", "/received", "/opportunities", "/messages",
                    "/invoices", "/performance", "/decisions", "/faults", "/docs", "/openapi.json")


class FaultRequest(BaseModel):
    mode: Literal["unavailable", "throttled", "hang", "refuse"]
    seconds: float = Field(gt=0, le=7200, description="length of the window from now")
    retry_after: int = Field(default=1, ge=0, le=3600, description="Retry-After of a throttled answer")


class FaultSwitch:
    """The active fault window, if any; thread-safe (the SMTP catcher runs on its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: FaultRequest | None = None
        self._until = 0.0
        self.gates: list[PortGate] = []

    def set(self, fault: FaultRequest) -> None:
        with self._lock:
            self._fault, self._until = fault, time.monotonic() + fault.seconds
        if fault.mode == "refuse":
            for gate in self.gates:
                gate.refuse(fault.seconds)

    def clear(self) -> None:
        with self._lock:
            self._fault = None
        for gate in self.gates:
            gate.reopen()

    def active(self) -> tuple[FaultRequest, float] | None:
        """(fault, seconds left) while a window is open."""
        with self._lock:
            left = self._until - time.monotonic()
            if self._fault is None or left <= 0:
                return None
            return self._fault, left


def install_fault_control(app: FastAPI, switch: FaultSwitch, recorder: Recorder, *, fault_http: bool = True) -> None:
    """The /chaos/fault routes, and (fault_http) the middleware that fails the partner routes."""

    @app.post("/chaos/fault")
    def set_fault(fault: FaultRequest) -> JSONResponse:
        if fault.mode == "refuse" and not switch.gates:
            return JSONResponse({"detail": [{"field": "mode", "problem": "refuse needs SIM_FAULT_GATE=true"}]},
                                status_code=422)
        switch.set(fault)
        return JSONResponse(fault.model_dump())

    @app.get("/chaos/fault")
    def get_fault() -> dict[str, object]:
        active = switch.active()
        return {"active": None if active is None else {**active[0].model_dump(), "left": round(active[1], 3)}}

    @app.delete("/chaos/fault")
    def clear_fault() -> dict[str, bool]:
        switch.clear()
        return {"cleared": True}

    if not fault_http:
        return

    @app.middleware("http")
    async def inject(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        active = None if request.url.path.startswith(CONTROL_PREFIXES) else switch.active()
        if active is None:
            return await call_next(request)
        fault, left = active
        recorder.record("fault-injected", method=request.method, path=request.url.path, body=None,
                        accepted=False, problem=f"injected {fault.mode}")
        if fault.mode == "hang":
            await asyncio.sleep(left)
        if fault.mode == "throttled":
            return JSONResponse({"error": "injected throttling"}, status_code=429,
                                headers={"Retry-After": str(fault.retry_after)})
        return JSONResponse({"error": f"injected {fault.mode}"}, status_code=503)


class PortGate:
    """A TCP relay on the public port in front of the real server, on its own thread and event loop.

    `refuse(seconds)` closes the listener and cuts the relayed connections; it reopens by itself.
    """

    def __init__(self, host: str, port: int, target_port: int) -> None:
        self.host, self.port, self.target_port = host, port, target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._reopen: asyncio.TimerHandle | None = None

    def start(self) -> PortGate:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._open())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, name=f"port-gate-{self.port}", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError(f"port gate on {self.host}:{self.port} did not open")
        return self

    async def _open(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, self.host, self.port, reuse_address=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    def refuse(self, seconds: float) -> None:
        def close() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for w in list(self._writers):
                with contextlib.suppress(OSError, RuntimeError):
                    w.transport.abort()
            self._writers.clear()
            if self._reopen is not None:
                self._reopen.cancel()
            self._reopen = self._loop.call_later(seconds, lambda: self._loop.create_task(self._open()))

        # A moment later, so the answer to the /chaos/fault call that asked for this still goes out.
        self._loop.call_soon_threadsafe(lambda: self._loop.call_later(0.2, close))

    def reopen(self) -> None:
        def now() -> None:
            if self._reopen is not None:
                self._reopen.cancel()
                self._reopen = None
            self._loop.create_task(self._open())

        self._loop.call_soon_threadsafe(now)
