"""What every simulator shares: the FastAPI app shell, the received log endpoints, running uvicorn."""

from __future__ import annotations

import json
import logging
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

from mesh_common.ops import ops_router
from mesh_common.settings import ServiceSettings

from .recorder import Recorder


def base_app(title: str, recorder: Recorder) -> FastAPI:
    app = FastAPI(title=title)
    app.state.recorder = recorder
    app.include_router(ops_router())

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


def serve(app: FastAPI, settings: ServiceSettings | None = None, port: int | None = None) -> None:
    s = settings or ServiceSettings()
    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(app, host=s.http_host, port=port or s.http_port, log_level=s.log_level.lower())
