"""HTTP intake for AP systems that cannot produce to Kafka, and verdict lookup.

POST /v1/invoices (JSON or UBL 2.1 XML) -> 202 + invoice id; the canonical InvoiceReceived goes
to ap.invoice.received.v1 and the worker decides. GET /v1/invoices/{id}/verdict -> the verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from confluent_kafka import Producer
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from contract_schema import InvoiceReceived, InvoiceValidated
from contract_schema.topics import INVOICE_RECEIVED
from mesh_common.auth import AuthSettings, Principal, TokenVerifier, require_scope
from mesh_common.clock import Clock
from mesh_common.http_guard import body_doc, field_of, guard, text_violations
from mesh_common.http_publish import publish_or_problem
from mesh_common.ops import ops_router

from ..adapters.faust_app import derived_id
from ..adapters.intake import IntakeError, parse_json, parse_ubl
from ..settings import SOURCE, ValidatorSettings

XML_TYPES = ("application/xml", "text/xml")


def _problem(status: int, field: str, problem: str) -> JSONResponse:
    return JSONResponse({"detail": [{"field": field, "problem": problem}]}, status_code=status)


def create_api(*, settings: ValidatorSettings, auth: AuthSettings, producer: Producer, clock: Clock,
               verdict_for: Callable[[str], InvoiceValidated | None], is_ready: Callable[[], bool]) -> FastAPI:
    api = FastAPI(title="invoice-validator", version="1")
    guard(api, max_body_bytes=settings.max_body_bytes)  # 413 before the token or the body is looked at
    api.state.token_verifier = TokenVerifier(auth)

    async def worker_ready() -> str | None:
        return None if is_ready() else "the stream worker has not finished its first partition assignment"

    api.include_router(ops_router({"worker": worker_ready}))

    @api.post("/v1/invoices", status_code=202, openapi_extra=body_doc(InvoiceReceived),
              responses={413: {"description": "body over the limit, or its event over Kafka's message size"},
                         415: {"description": "neither JSON nor UBL XML"},
                         422: {"description": "invalid invoice; detail[].field names the field"}})
    async def post_invoice(request: Request,
                           principal: Annotated[Principal, Depends(require_scope("invoices:write"))]) -> Any:
        body = await request.body()  # the guard has read it, within the limit
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        try:
            if content_type in XML_TYPES or content_type.endswith("+xml"):
                data = parse_ubl(body)
            elif content_type == "application/json" or content_type.endswith("+json"):
                data = parse_json(body)
            else:
                return _problem(415, "content-type", f"{content_type!r} is neither JSON nor UBL XML")
        except IntakeError as exc:
            return _problem(422, exc.field, exc.problem)
        except RecursionError:
            return _problem(400, "body", "nested too deeply")
        if bad := text_violations(data):
            return JSONResponse({"detail": bad}, status_code=422)
        if data.get("tenant_id") not in (None, principal.tenant):
            return _problem(422, "tenant_id", "does not match the tenant of the token")
        data["tenant_id"] = principal.tenant
        data.setdefault("source_system", "http")
        data["received_at"] = clock.now()
        if not data.get("invoice_id"):
            # Stable for a re-post of the same invoice, so a client retry never makes a second invoice.
            data["invoice_id"] = derived_id(
                "invoice", f"{principal.tenant}|{data.get('vendor_id')}|{data.get('invoice_number')}")
        try:
            invoice = InvoiceReceived.model_validate(data)
        except ValidationError as exc:
            errors = [{"field": field_of(("body", *e["loc"])), "problem": e["msg"], "type": e["type"]}
                      for e in exc.errors()]
            return JSONResponse({"detail": errors}, status_code=422)
        event_id = derived_id("http-invoice", f"{invoice.tenant_id}|{invoice.invoice_id}")

        refused = await asyncio.to_thread(
            publish_or_problem, producer, invoice, source=SOURCE, event_id=event_id, time=invoice.received_at,
            topic=settings.topic_prefix + INVOICE_RECEIVED.name)
        if refused is not None:
            return refused
        return {"invoice_id": invoice.invoice_id, "event_id": event_id,
                "verdict": f"/v1/invoices/{invoice.invoice_id}/verdict"}

    @api.get("/v1/invoices/{invoice_id}/verdict")
    async def get_verdict(invoice_id: str,
                          principal: Annotated[Principal, Depends(require_scope("invoices:read"))]) -> Any:
        verdict = verdict_for(invoice_id)
        if verdict is None or verdict.tenant_id != principal.tenant:
            return _problem(404, "invoice_id", "no verdict for this invoice (yet)")
        return JSONResponse(verdict.model_dump(mode="json"))

    return api
