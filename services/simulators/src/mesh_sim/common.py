"""What every simulator shares: the FastAPI app shell, the received log endpoints, running uvicorn."""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

from mesh_common.ops import ops_router
from mesh_common.settings import ServiceSettings

from .faults import FaultSwitch, PortGate, install_fault_control
from .recorder import Recorder


def base_app(title: str, recorder: Recorder, *, fault_http: bool = True) -> FastAPI:
    app = FastAPI(title=title)
    app.state.recorder = recorder
    app.state.faults = FaultSwitch()
    app.include_router(ops_router())
    install_fault_control(app, app.state.faults, recorder, fault_http=fault_http)

    @app.get("/received")
    def received(kind: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """Everything this simulator received, oldest first; `kind` filters, `since` skips seen seqs."""
        return [item.to_json() for item in recorder.items(kind, since)]

    @app.delete("/received")
    def clear_received() -> dict[str, int]:
        return {"cleared": recorder.clear()}

    return app


async def json_body(request: Request) -> Any:
    """The request body as JSON, or the raw text when it is not JSON (recorded either way)."""
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", "replace")


def fault_gate_enabled() -> bool:
    """SIM_FAULT_GATE=true: public ports are relays that /chaos/fault can close (mode `refuse`)."""
    return os.environ.get("SIM_FAULT_GATE", "").lower() in ("1", "true", "yes")


def gated_port(app: FastAPI, host: str, port: int) -> int:
    """The port the real server should bind: `port` itself, or a free one behind a PortGate on `port`."""
    if not fault_gate_enabled():
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        inner: int = sock.getsockname()[1]
    app.state.faults.gates.append(PortGate(host, port, inner).start())
    return inner


def serve(app: FastAPI, settings: ServiceSettings | None = None, port: int | None = None, *,
          gate: bool = True) -> None:
    """Run the app; `gate=False` keeps the HTTP port out of `refuse` (the SMTP catcher's read-back API)."""
    s = settings or ServiceSettings()
    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    bind = gated_port(app, s.http_host, port or s.http_port) if gate else port or s.http_port
    uvicorn.run(app, host="127.0.0.1" if bind != (port or s.http_port) else s.http_host, port=bind,
                log_level=s.log_level.lower())
