"""HTTP: the CRM decisions webhook and the operations endpoints."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from confluent_kafka import Producer
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from contract_schema.renewal import RenewalDecision
from contract_schema.topics import RENEWAL_DECISION
from mesh_common.kafka import produce_event
from mesh_common.ops import ReadinessCheck, ops_router
from mesh_common.signing import SIGNATURE_HEADER, SignatureError, verify
from renewal_sync.config import RenewalSettings
from renewal_sync.domain.renewal import SERVICE


def _problems(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"field": ".".join(str(p) for p in e["loc"]) or "body", "problem": e["msg"]} for e in exc.errors()]


def create_app(cfg: RenewalSettings, producer: Producer, checks: dict[str, ReadinessCheck] | None = None,
               on_shutdown: Callable[[], None] | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:  # uvicorn re-raises SIGTERM after shutdown: clean up here, not after run()
            await run_in_threadpool(on_shutdown)

    app = FastAPI(title="renewal-sync", lifespan=lifespan)
    app.include_router(ops_router(checks))
    decision_topic = cfg.topic(RENEWAL_DECISION.name)

    @app.post("/v1/crm/decisions", status_code=202)
    async def record_decision(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            verify(cfg.webhook_secret, body, request.headers.get(SIGNATURE_HEADER),
                   tolerance=cfg.webhook_tolerance_seconds)
        except SignatureError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=401)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return JSONResponse({"detail": [{"field": "body", "problem": f"not JSON: {exc}"}]}, status_code=422)
        try:
            decision = RenewalDecision.model_validate(payload)
        except ValidationError as exc:
            return JSONResponse({"detail": _problems(exc)}, status_code=422)
        # The CRM may redeliver a webhook: the same body gives the same event id, so consumers dedup.
        event_id = "decision:" + hashlib.sha256(body).hexdigest()[:32]

        def publish() -> int:
            produce_event(producer, decision, source=SERVICE, event_id=event_id, topic=decision_topic)
            return int(producer.flush(10))

        if await run_in_threadpool(publish) > 0:
            return JSONResponse({"detail": "could not publish the decision, retry later"}, status_code=503)
        return JSONResponse({"status": "accepted", "event_id": event_id, "contract_id": decision.contract_id},
                            status_code=202)

    return app
