"""Health, readiness and Prometheus metrics endpoints for Kubernetes probes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

ReadinessCheck = Callable[[], Awaitable[str | None]]  # returns None when ready, else the problem

PROCESSED = Counter("mesh_records_processed_total", "Records processed", ["service", "topic"])
REJECTED = Counter("mesh_records_rejected_total", "Records rejected (business verdict or invalid)",
                   ["service", "topic", "reason"])
DEAD_LETTERED = Counter("mesh_records_dead_lettered_total", "Records sent to a DLQ", ["service", "topic"])
COMMIT_FAILED = Counter("mesh_commit_failed_total", "Offset commits that failed (records redelivered)", ["service"])
CONSUMER_LAG = Gauge("mesh_consumer_lag", "Records behind the partition end", ["service", "topic", "partition"])


def ops_router(checks: dict[str, ReadinessCheck] | None = None) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> Response:
        problems = {}
        for name, check in (checks or {}).items():
            try:
                problem = await check()
            except Exception as exc:  # a failing check means not ready, never a crash
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                problems[name] = problem
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
