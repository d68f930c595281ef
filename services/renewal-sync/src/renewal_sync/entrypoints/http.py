"""HTTP: the CRM decisions webhook and the operations endpoints.

Each tenant's CRM signs its webhooks with that tenant's secret (`RENEWAL_WEBHOOK_SECRETS`): the
secret that verifies the signature says whose decision it is, so a decision about a contract of
another tenant, or naming another tenant, is refused whatever the body claims.
"""

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
from mesh_common.http_guard import body_doc, field_of, guard, problem, text_violations
from mesh_common.http_publish import publish_or_problem
from mesh_common.ops import ReadinessCheck, ops_router
from mesh_common.settings import DatabaseSettings
from mesh_common.signing import SIGNATURE_HEADER, SignatureError, verify
from renewal_sync.adapters.tenants import ContractTenants
from renewal_sync.domain.renewal import SERVICE
from renewal_sync.settings import RenewalSettings

# Documents the body for clients and the fuzzer; the handler reads the raw bytes (they are what is signed).
_BODY_DOC = body_doc(RenewalDecision)


def _problems(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"field": field_of(("body", *e["loc"])), "problem": e["msg"], "type": e["type"]} for e in exc.errors()]


def signing_tenant(cfg: RenewalSettings, body: bytes, header: str | None) -> str:
    """The tenant whose secret signed `body`; SignatureError saying why when none did."""
    if not cfg.webhook_secrets:
        raise SignatureError("no webhook secrets configured (RENEWAL_WEBHOOK_SECRETS)")
    failure = SignatureError("signature does not match the body")
    for tenant, secret in cfg.webhook_secrets.items():
        try:
            verify(secret, body, header, tolerance=cfg.webhook_tolerance_seconds)
            return tenant
        except SignatureError as exc:
            failure = exc
    raise failure


def create_app(cfg: RenewalSettings, producer: Producer, checks: dict[str, ReadinessCheck] | None = None,
               on_shutdown: Callable[[], None] | None = None,
               tenant_of: Callable[[str], str | None] | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:  # uvicorn re-raises SIGTERM after shutdown: clean up here, not after run()
            await run_in_threadpool(on_shutdown)

    app = FastAPI(title="renewal-sync", lifespan=lifespan)
    # The body limit comes before the signature check: an unsigned 50 MB body is never read.
    guard(app, max_body_bytes=cfg.webhook_max_body_bytes)
    app.include_router(ops_router(checks))
    decision_topic = cfg.topic(RENEWAL_DECISION.name)
    owner_of = tenant_of or ContractTenants(DatabaseSettings().url, cfg.db_schema).tenant_of

    @app.post("/v1/crm/decisions", status_code=202, openapi_extra=_BODY_DOC,
              responses={401: {"description": "missing, bad or stale signature"},
                         403: {"description": "tenant_id is not the tenant whose secret signed the body"},
                         404: {"description": "no such contract for the signing tenant"},
                         413: {"description": "body over the limit"},
                         422: {"description": "not a RenewalDecision; detail[].field names the field"}})
    async def record_decision(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            tenant = signing_tenant(cfg, body, request.headers.get(SIGNATURE_HEADER))
        except SignatureError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=401)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return JSONResponse({"detail": [{"field": "body", "problem": f"not JSON: {exc}"}]}, status_code=422)
        except RecursionError:
            return problem(400, "body", "nested too deeply", "too_deep")
        if bad := text_violations(payload):
            return JSONResponse({"detail": bad}, status_code=422)
        try:
            decision = RenewalDecision.model_validate(payload)
        except ValidationError as exc:
            return JSONResponse({"detail": _problems(exc)}, status_code=422)
        if decision.tenant_id != tenant:
            return problem(403, "tenant_id", "is not the tenant whose secret signed this decision", "wrong_tenant")
        try:
            owner = await run_in_threadpool(owner_of, decision.contract_id)
        except Exception as exc:  # the lookup cannot run: the CRM should retry, not give up
            return problem(503, "", f"cannot check the contract now ({type(exc).__name__}); retry later",
                           "unavailable")
        if owner != tenant:  # unknown, or another tenant's: as good as absent, ids do not leak
            return problem(404, "contract_id", "no such contract for this tenant", "not_found")
        # The CRM may redeliver a webhook: the same body gives the same event id, so consumers dedup.
        event_id = "decision:" + hashlib.sha256(body).hexdigest()[:32]
        refused = await run_in_threadpool(lambda: publish_or_problem(
            producer, decision, source=SERVICE, event_id=event_id, topic=decision_topic))
        if refused is not None:
            return refused
        return JSONResponse({"status": "accepted", "event_id": event_id, "contract_id": decision.contract_id},
                            status_code=202)

    return app
