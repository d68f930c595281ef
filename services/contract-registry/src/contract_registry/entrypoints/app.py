"""The HTTP API (FastAPI) under /v1, plus /healthz, /readyz and /metrics; what it answers is in views.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry import trace

from contract_schema.contract import ContractStatus
from mesh_common.auth import Principal, TokenVerifier, require_scope
from mesh_common.http_guard import guard
from mesh_common.ops import ops_router
from mesh_common.tracing import context_from_headers, current_traceparent, tracer

from .. import importer
from ..bootstrap import AppConfig, bootstrap
from ..domain import importing
from ..domain.model import Amendment, ContractDraft, MilestoneCompletion, Renewal, Termination
from ..service import Registry, etag_matches
from ..settings import SERVICE
from .views import (
    CHANGE_ERRORS,
    ERRORS,
    IMPORT_BODY,
    IMPORT_ERRORS,
    VIEW,
    ContractPageView,
    ImportView,
    Problem,
    add_error_handlers,
    caller,
    problem,
    respond,
    text_only,
)

READ = require_scope("contracts:read")
WRITE = require_scope("contracts:write")


def create_app(config: AppConfig | None = None, registry_cls: type[Registry] = Registry) -> FastAPI:
    """The app on bootstrap's wiring; `registry_cls` lets the benchmark swap in its no-outbox baseline."""
    wiring = bootstrap(config, registry_cls=registry_cls)
    registry = wiring.registry

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(wiring.start)
        try:
            yield
        finally:
            await asyncio.to_thread(wiring.stop)

    app = FastAPI(title="contract-registry", version="1.0.0", lifespan=lifespan,
                  description="System of record for contracts; every change is published through an outbox.")
    guard(app, max_body_bytes=wiring.config.registry.max_body_bytes)
    app.state.token_verifier = TokenVerifier(wiring.config.auth)

    @app.middleware("http")
    async def trace_requests(request: Request, call_next: Any) -> Any:
        # Continue the caller's W3C trace; outbox records written in this request carry it on to Kafka.
        parent = context_from_headers(list(request.headers.items()))
        with tracer(SERVICE).start_as_current_span(f"{request.method} {request.url.path}", context=parent,
                                                   kind=trace.SpanKind.SERVER):
            return await call_next(request)

    app.state.registry = registry
    app.state.runtime = wiring.running
    app.include_router(ops_router({"database": wiring.database_ready, "producer": wiring.producer_ready}))
    add_error_handlers(app)

    @app.post("/v1/contracts", status_code=201, tags=["contracts"], responses={201: VIEW, **ERRORS})
    def create_contract(draft: ContractDraft, request: Request, principal: Annotated[Principal, Depends(WRITE)],
                        idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> JSONResponse:
        text_only(draft)
        result = registry.create(caller(principal, request), draft, idempotency_key)
        headers = {"Location": f"/v1/contracts/{result.snapshot.contract_id}"}
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
        return respond(result.snapshot, 201, headers=headers)

    @app.get("/v1/contracts", tags=["contracts"], responses={200: {"model": ContractPageView}, **ERRORS})
    def list_contracts(principal: Annotated[Principal, Depends(READ)],
                       status: ContractStatus | None = None, counterparty: str | None = None,
                       owner: str | None = None, ending_before: date | None = None, tag: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None) -> JSONResponse:
        try:
            page = registry.list_contracts(principal.tenant, status=status.value if status else None,
                                           counterparty=counterparty, owner=owner, ending_before=ending_before,
                                           tag=tag, limit=limit, cursor=cursor)
        except ValueError as exc:
            return problem(422, [{"loc": ["query", "cursor"], "field": "cursor", "msg": str(exc),
                                   "type": "value_error"}])
        return JSONResponse({"items": page.items, "next_cursor": page.next_cursor})

    @app.get("/v1/contracts/{contract_id}", tags=["contracts"], responses={200: VIEW, **ERRORS})
    def get_contract(contract_id: str, principal: Annotated[Principal, Depends(READ)],
                     as_of: date | None = None,
                     if_none_match: Annotated[str | None, Header()] = None) -> Response:
        snapshot, decision = registry.get(principal.tenant, contract_id, as_of)
        if if_none_match and etag_matches(if_none_match, snapshot.current.version):
            return Response(status_code=304, headers={"ETag": f'"{snapshot.current.version}"'})
        return respond(snapshot, decision=decision, as_of=as_of)

    @app.post("/v1/contracts/{contract_id}/amendments", tags=["contracts"],
              responses={200: VIEW, 428: {"model": Problem, "description": "If-Match missing"}, **CHANGE_ERRORS})
    def amend_contract(contract_id: str, amendment: Amendment, request: Request,
                       principal: Annotated[Principal, Depends(WRITE)],
                       if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
        text_only(amendment)
        return respond(registry.amend(caller(principal, request), contract_id, amendment, if_match))

    @app.post("/v1/contracts/{contract_id}/activate", tags=["contracts"], responses={200: VIEW, **CHANGE_ERRORS})
    def activate_contract(contract_id: str, request: Request, principal: Annotated[Principal, Depends(WRITE)],
                          if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
        return respond(registry.activate(caller(principal, request), contract_id, if_match))

    @app.post("/v1/contracts/{contract_id}/terminate", tags=["contracts"], responses={200: VIEW, **CHANGE_ERRORS})
    def terminate_contract(contract_id: str, termination: Termination, request: Request,
                           principal: Annotated[Principal, Depends(WRITE)],
                           if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
        text_only(termination)
        return respond(registry.terminate(caller(principal, request), contract_id, termination, if_match))

    @app.post("/v1/contracts/{contract_id}/renew", tags=["contracts"], responses={200: VIEW, **CHANGE_ERRORS})
    def renew_contract(contract_id: str, renewal: Renewal, request: Request,
                       principal: Annotated[Principal, Depends(WRITE)],
                       if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
        return respond(registry.renew(caller(principal, request), contract_id, renewal, if_match))

    @app.post("/v1/contracts/{contract_id}/obligations/{obligation_id}/complete", tags=["obligations"],
              responses={202: VIEW | {"description": "completed; MilestoneCompleted published"},
                         200: VIEW | {"description": "already completed; nothing published"}, **CHANGE_ERRORS})
    def complete_obligation(contract_id: str, obligation_id: str, request: Request,
                            principal: Annotated[Principal, Depends(WRITE)],
                            body: MilestoneCompletion | None = None) -> JSONResponse:
        if body is not None:
            text_only(body)
        snapshot, created = registry.complete_obligation(caller(principal, request), contract_id, obligation_id,
                                                         body or MilestoneCompletion())
        return respond(snapshot, 202 if created else 200)

    @app.post("/v1/contracts:import", status_code=202, tags=["imports"], openapi_extra=IMPORT_BODY,
              responses={202: {"model": ImportView, "description": "accepted; Location = the import"},
                         **IMPORT_ERRORS})
    async def import_contracts(request: Request, principal: Annotated[Principal, Depends(WRITE)],
                               import_id: Annotated[str | None, Query(max_length=64)] = None,
                               first_line: Annotated[int, Query(ge=1, le=1_000_000_000)] = 1) -> JSONResponse:
        """NDJSON or CSV, one contract per record; a further part of an import with `import_id`."""
        kind = importing.media_type(request.headers.get("content-type"))
        if kind is None:
            return problem(415, [{"loc": ["header", "Content-Type"], "field": "Content-Type", "type": "media_type",
                                  "msg": f"send one of {', '.join(importing.MEDIA_TYPES)}"}])
        records = await asyncio.to_thread(importing.read, await request.body(), kind, first_line)
        if not records:
            return problem(422, [{"loc": ["body"], "field": "body", "msg": "no records", "type": "missing"}])
        who = caller(principal, request)
        state = await asyncio.to_thread(wiring.importer.begin, who, len(records), import_id)
        wiring.import_part(who, state.id, records, current_traceparent())
        return JSONResponse(importer.view(state), status_code=202, headers={"Location": f"/v1/imports/{state.id}"})

    @app.get("/v1/imports/{import_id}", tags=["imports"], responses={200: {"model": ImportView}, **ERRORS})
    def get_import(import_id: Annotated[str, Path(max_length=64)],
                   principal: Annotated[Principal, Depends(READ)]) -> JSONResponse:
        return JSONResponse(importer.view(wiring.importer.status(principal.tenant, import_id)))

    @app.get("/v1/contracts/{contract_id}/audit", tags=["contracts"])
    def audit_log(contract_id: str, principal: Annotated[Principal, Depends(READ)]) -> dict[str, Any]:
        return {"items": registry.audit_log(principal.tenant, contract_id)}

    return app
