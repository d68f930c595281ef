"""The HTTP API (FastAPI) under /v1, plus /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry import trace
from pydantic import BaseModel
from sqlalchemy import text

from contract_schema.contract import ContractSnapshot, ContractStatus, ContractTerms
from mesh_common.auth import AuthSettings, Principal, TokenVerifier, require_scope
from mesh_common.clock import Clock, SystemClock
from mesh_common.http_guard import bad_text, guard, truncate
from mesh_common.ops import ops_router
from mesh_common.settings import DatabaseSettings, KafkaSettings
from mesh_common.tracing import context_from_headers, tracer

from ..adapters.db import make_engine, make_sessionmaker, migrate
from ..adapters.expiry import ExpirySweeper
from ..adapters.inbound import InboundConsumer
from ..adapters.relay import OutboxRelay
from ..config import SERVICE, RegistrySettings
from ..domain.contracts import InvalidTransition, UnknownObligation
from ..domain.model import Amendment, ContractDraft, MilestoneCompletion, Renewal, Termination
from ..domain.validation import BusinessRuleError, Violation
from ..service import (
    Caller,
    IdempotencyKeyReused,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Registry,
    etag_matches,
    snapshot_json,
)

log = logging.getLogger(__name__)

class ContractView(ContractSnapshot, abstract=True):
    """GET/POST response: the snapshot plus the terms in force and what the registry heard back."""

    version: int
    in_force: ContractTerms
    as_of: date | None = None
    renewal_decision: dict[str, Any] | None = None


class ContractSummary(BaseModel):
    contract_id: str
    title: str
    status: ContractStatus
    counterparty: dict[str, Any]
    owner: dict[str, Any]
    tags: list[str]
    version: int
    currency: str
    end_date: date | None
    updated_at: str


class ContractPageView(BaseModel):
    items: list[ContractSummary]
    next_cursor: str | None


class Problem(BaseModel):
    detail: Any


VIEW = {"model": ContractView, "description": "the contract; ETag header = its version"}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "body is not parseable JSON (or nested too deeply)"},
    401: {"model": Problem, "description": "no valid bearer token"},
    403: {"model": Problem, "description": "token lacks the scope"},
    404: {"model": Problem, "description": "no such contract for this tenant"},
    413: {"model": Problem, "description": "body over REGISTRY_MAX_BODY_BYTES"},
    422: {"model": Problem, "description": "invalid input; detail[].field names the field"},
}
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = ERRORS | {
    409: {"model": Problem, "description": "not allowed in the contract's status"},
    412: {"model": Problem, "description": "If-Match does not match the current version"},
}

READ = require_scope("contracts:read")
WRITE = require_scope("contracts:write")


@dataclass
class AppConfig:
    database_url: str = field(default_factory=lambda: DatabaseSettings().url)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    clock: Clock = field(default_factory=SystemClock)


def _caller(principal: Principal, request: Request) -> Caller:
    return Caller(subject=principal.subject, tenant=principal.tenant,
                  request_id=(request.headers.get("x-request-id") or str(uuid.uuid4()))[:200])  # column width


def _view(snapshot: ContractSnapshot, decision: dict[str, Any] | None = None,
          as_of: date | None = None) -> dict[str, Any]:
    body = snapshot_json(snapshot)
    body["version"] = snapshot.current.version
    body["in_force"] = body["versions"][-1]
    body["as_of"] = as_of.isoformat() if as_of else None
    body["renewal_decision"] = decision
    return body


def _respond(snapshot: ContractSnapshot, status: int = 200, decision: dict[str, Any] | None = None,
             as_of: date | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(_view(snapshot, decision, as_of), status_code=status,
                        headers={"ETag": f'"{snapshot.current.version}"', **(headers or {})})


def _problem(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _text_only(command: BaseModel) -> None:
    """PostgreSQL text cannot hold NUL or unpaired surrogates: a rule broken by the named field, never a 500."""
    bad = [Violation(path, problem) for path, problem in bad_text(command.model_dump())]
    if bad:
        raise BusinessRuleError(bad)


def create_app(config: AppConfig | None = None, registry_cls: type[Registry] = Registry) -> FastAPI:
    """The app; `registry_cls` lets the benchmark swap in its no-outbox baseline."""
    cfg = config or AppConfig()
    engine = make_engine(cfg.database_url, cfg.registry.db_schema)
    registry = registry_cls(make_sessionmaker(engine), cfg.registry, cfg.clock)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if cfg.registry.migrate_on_start:
            await asyncio.to_thread(migrate, cfg.database_url, cfg.registry.db_schema)
        if cfg.registry.relay_in_process:
            relay = OutboxRelay(cfg.database_url, cfg.registry, cfg.kafka, name="in-process")
            relay.start()
            state["relay"] = relay
        if cfg.registry.consume_in_process:
            inbound = InboundConsumer(registry, cfg.registry, cfg.kafka)
            inbound.start()
            state["inbound"] = inbound
        if cfg.registry.expiry_in_process:
            sweeper = ExpirySweeper(registry, cfg.registry.expiry_interval_seconds)
            sweeper.start()
            state["expiry"] = sweeper
        try:
            yield
        finally:
            for name in ("expiry", "inbound", "relay"):
                if name in state:
                    await asyncio.to_thread(state.pop(name).stop)
            engine.dispose()

    app = FastAPI(title="contract-registry", version="1.0.0", lifespan=lifespan,
                  description="System of record for contracts; every change is published through an outbox.")
    guard(app, max_body_bytes=cfg.registry.max_body_bytes)
    app.state.token_verifier = TokenVerifier(cfg.auth)

    @app.middleware("http")
    async def trace_requests(request: Request, call_next: Any) -> Any:
        # Continue the caller's W3C trace; outbox records written in this request carry it on to Kafka.
        parent = context_from_headers(list(request.headers.items()))
        with tracer(SERVICE).start_as_current_span(f"{request.method} {request.url.path}", context=parent,
                                                   kind=trace.SpanKind.SERVER):
            return await call_next(request)

    app.state.registry = registry
    app.state.runtime = state

    async def db_ready() -> str | None:
        def ping() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        await asyncio.to_thread(ping)
        return None

    async def producer_ready() -> str | None:
        relay: OutboxRelay | None = state.get("relay")
        if relay is None:
            return None  # the relay runs as its own deployment (`contract-registry relay`)
        return await asyncio.to_thread(relay.ready)

    app.include_router(ops_router({"database": db_ready, "producer": producer_ready}))

    @app.exception_handler(BusinessRuleError)
    async def _rules(_: Request, exc: BusinessRuleError) -> JSONResponse:
        return _problem(422, [{"loc": ["body", *v.field.split(".")], "field": v.field, "msg": v.message,
                               "type": "business_rule"} for v in exc.violations])

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _problem(404, f"contract {truncate(str(exc))} not found")  # the id comes from the path

    @app.exception_handler(UnknownObligation)
    async def _unknown_obligation(_: Request, exc: UnknownObligation) -> JSONResponse:
        return _problem(404, str(exc))

    @app.exception_handler(PreconditionFailed)
    async def _stale(_: Request, exc: PreconditionFailed) -> JSONResponse:
        return _problem(412, str(exc))

    @app.exception_handler(PreconditionRequired)
    async def _missing(_: Request, exc: PreconditionRequired) -> JSONResponse:
        return _problem(428, str(exc))

    @app.exception_handler(InvalidTransition)
    async def _transition(_: Request, exc: InvalidTransition) -> JSONResponse:
        return _problem(409, str(exc))

    @app.exception_handler(IdempotencyKeyReused)
    async def _reused(_: Request, exc: IdempotencyKeyReused) -> JSONResponse:
        return _problem(422, [{"loc": ["header", "Idempotency-Key"], "field": "Idempotency-Key", "msg": str(exc),
                               "type": "idempotency_key_reused"}])

    @app.post("/v1/contracts", status_code=201, tags=["contracts"], responses={201: VIEW, **ERRORS})
    def create_contract(draft: ContractDraft, request: Request, principal: Annotated[Principal, Depends(WRITE)],
                        idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> JSONResponse:
        _text_only(draft)
        result = registry.create(_caller(principal, request), draft, idempotency_key)
        headers = {"Location": f"/v1/contracts/{result.snapshot.contract_id}"}
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
        return _respond(result.snapshot, 201, headers=headers)

    @app.get("/v1/contracts", tags=["contracts"], responses={200: {"model": ContractPageView}, **ERRORS})
    def list_contracts(principal: Annotated[Principal, Depends(READ)],
                       status: ContractStatus | None = None, counterparty: str | None = None,
                       owner: str | None = None, ending_before: date | None = None, tag: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None) -> JSONResponse:
        try:
            page = registry.list_contracts(principal.tenant, status=status.value if status else None,
                                 counterparty=counterparty, owner=owner, ending_before=ending_before, tag=tag,
                                 limit=limit, cursor=cursor)
        except ValueError as exc:
            return _problem(422, [{"loc": ["query", "cursor"], "field": "cursor", "msg": str(exc),
                                   "type": "value_error"}])
        return JSONResponse({"items": page.items, "next_cursor": page.next_cursor})

    @app.get("/v1/contracts/{contract_id}", tags=["contracts"], responses={200: VIEW, **ERRORS})
    def get_contract(contract_id: str, principal: Annotated[Principal, Depends(READ)],
                     as_of: date | None = None,
                     if_none_match: Annotated[str | None, Header()] = None) -> Response:
        snapshot, decision = registry.get(principal.tenant, contract_id, as_of)
        if if_none_match and etag_matches(if_none_match, snapshot.current.version):
            return Response(status_code=304, headers={"ETag": f'"{snapshot.current.version}"'})
        return _respond(snapshot, decision=decision, as_of=as_of)

    @app.post("/v1/contracts/{contract_id}/amendments", tags=["contracts"],
              responses={200: VIEW, 428: {"model": Problem, "description": "If-Match missing"}, **CHANGE_ERRORS})
    def amend_contract(contract_id: str, amendment: Amendment, request: Request,
                       principal: Annotated[Principal, Depends(WRITE)],
                       if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
        _text_only(amendment)
        return _respond(registry.amend(_caller(principal, request), contract_id, amendment, if_match))

    @app.post("/v1/contracts/{contract_id}/activate", tags=["contracts"], responses={200: VIEW, **CHANGE_ERRORS})
    def activate_contract(contract_id: str, request: Request, principal: Annotated[Principal, Depends(WRITE)],
                          if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
        return _respond(registry.activate(_caller(principal, request), contract_id, if_match))

    @app.post("/v1/contracts/{contract_id}/terminate", tags=["contracts"], responses={200: VIEW, **CHANGE_ERRORS})
    def terminate_contract(contract_id: str, termination: Termination, request: Request,
                           principal: Annotated[Principal, Depends(WRITE)],
                           if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
        _text_only(termination)
        return _respond(registry.terminate(_caller(principal, request), contract_id, termination, if_match))

    @app.post("/v1/contracts/{contract_id}/renew", tags=["contracts"], responses={200: VIEW, **CHANGE_ERRORS})
    def renew_contract(contract_id: str, renewal: Renewal, request: Request,
                       principal: Annotated[Principal, Depends(WRITE)],
                       if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
        return _respond(registry.renew(_caller(principal, request), contract_id, renewal, if_match))

    @app.post("/v1/contracts/{contract_id}/obligations/{obligation_id}/complete", tags=["obligations"],
              responses={202: VIEW | {"description": "completed; MilestoneCompleted published"},
                         200: VIEW | {"description": "already completed; nothing published"}, **CHANGE_ERRORS})
    def complete_obligation(contract_id: str, obligation_id: str, request: Request,
                            principal: Annotated[Principal, Depends(WRITE)],
                            body: MilestoneCompletion | None = None) -> JSONResponse:
        if body is not None:
            _text_only(body)
        snapshot, created = registry.complete_obligation(_caller(principal, request), contract_id, obligation_id,
                                                         body or MilestoneCompletion())
        return _respond(snapshot, 202 if created else 200)

    @app.get("/v1/contracts/{contract_id}/audit", tags=["contracts"])
    def audit_log(contract_id: str, principal: Annotated[Principal, Depends(READ)]) -> dict[str, Any]:
        return {"items": registry.audit_log(principal.tenant, contract_id)}

    return app


