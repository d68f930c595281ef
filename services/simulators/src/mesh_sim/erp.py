"""ERP/AP simulator.

Inbound (recorded, readable at GET /received):
- `POST /milestones/{contract_id}/{obligation_id}/release`: the obligation-engine releasing milestone
  billing (bearer token checked when ERP_SIM_TOKEN is set) -> kind "milestone-release".
- `POST /ap/verdicts`: the invoice-validator's verdict webhook (HMAC signature checked when
  ERP_SIM_WEBHOOK_SECRET is set) -> kind "ap-verdict".

Outbound, on command (what the demo drives):
- `POST /invoices?via=kafka|http`: an invoice (InvoiceReceived JSON) to ap.invoice.received.v1, or to
  the validator's `POST /v1/invoices` with a bearer token.
- `POST /performance/{MilestoneCompleted|DeliverableAccepted|SlaMeasurement}`: to erp.performance.v1.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract_schema.base import Event
from contract_schema.invoice import InvoiceReceived
from contract_schema.obligation import DeliverableAccepted, MilestoneCompleted, SlaMeasurement
from mesh_common.auth import AuthSettings, issue_token
from mesh_common.clock import Clock
from mesh_common.signing import SIGNATURE_HEADER, SignatureError, verify

from .common import base_app, json_body
from .kafka_out import EventSender
from .recorder import Recorder, kept_headers

PERFORMANCE_EVENTS: dict[str, type[Event]] = {
    "MilestoneCompleted": MilestoneCompleted,
    "DeliverableAccepted": DeliverableAccepted,
    "SlaMeasurement": SlaMeasurement,
}


class ErpSimSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERP_SIM_", extra="ignore")

    token: str | None = None  # bearer the obligation-engine must present; None: any bearer
    webhook_secret: str | None = None  # HMAC secret of the validator's verdict webhook; None: unsigned ok
    validator_url: str = "http://127.0.0.1:8083"
    source: str = "erp-simulator"
    topic_prefix: str = ""  # prefixed to every topic name, as the services allow (tests share one broker)


def validation_error(exc: ValidationError) -> HTTPException:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return HTTPException(422, detail=f"{where}: {first['msg']}")


def create_app(settings: ErpSimSettings | None = None, *, clock: Clock | None = None,
               sender: EventSender | None = None, recorder: Recorder | None = None) -> FastAPI:
    s = settings or ErpSimSettings()
    rec = recorder or Recorder()
    out = sender or EventSender(s.source, topic_prefix=s.topic_prefix)
    app = base_app("ERP/AP simulator", rec)

    @app.post("/milestones/{contract_id}/{obligation_id}/release")
    async def release(contract_id: str, obligation_id: str, request: Request) -> JSONResponse:
        body = await json_body(request)
        auth = request.headers.get("authorization", "")
        problem = None
        if not auth.lower().startswith("bearer "):
            problem = "missing bearer token"
        elif s.token is not None and auth[7:].strip() != s.token:
            problem = "wrong bearer token"
        rec.record("milestone-release", method="POST", path=request.url.path,
                   body={"contract_id": contract_id, "obligation_id": obligation_id, "payload": body},
                   headers=kept_headers(request.headers), accepted=problem is None, problem=problem)
        if problem:
            return JSONResponse({"error": problem}, status_code=401)
        return JSONResponse({"status": "released", "contract_id": contract_id, "obligation_id": obligation_id},
                            status_code=202)

    @app.post("/ap/verdicts")
    async def verdict(request: Request) -> JSONResponse:
        raw = await request.body()
        body = await json_body(request)
        problem = None
        if s.webhook_secret is not None:
            try:
                verify(s.webhook_secret, raw, request.headers.get(SIGNATURE_HEADER))
            except SignatureError as exc:
                problem = str(exc)
        rec.record("ap-verdict", method="POST", path=request.url.path, body=body,
                   headers=kept_headers(request.headers), accepted=problem is None, problem=problem)
        if problem:
            return JSONResponse({"error": problem}, status_code=401)
        return JSONResponse({"status": "received"}, status_code=200)

    @app.post("/invoices", status_code=202)
    async def post_invoice(request: Request, via: Annotated[str, Query(pattern="^(kafka|http)$")] = "kafka",
                           event_id: str | None = None) -> dict[str, Any]:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise HTTPException(422, detail="body: expected an invoice JSON object")
        if "received_at" not in body and clock is not None:
            body["received_at"] = clock.now().isoformat()
        try:
            invoice = InvoiceReceived.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from exc
        if via == "kafka":
            eid = event_id or str(uuid.uuid4())
            topic, _ = await asyncio.to_thread(out.send, invoice, event_id=eid)
            rec.record("invoice-sent", method="POST", path="kafka:" + topic, body=invoice.model_dump(mode="json"))
            return {"via": "kafka", "topic": topic, "event_id": eid, "invoice_id": invoice.invoice_id}
        token = issue_token(AuthSettings(), subject=s.source, tenant=invoice.tenant_id, scopes=["invoices:write"])
        async with httpx.AsyncClient(timeout=15) as client:
            resp = await client.post(f"{s.validator_url.rstrip('/')}/v1/invoices",
                                     content=invoice.model_dump_json(),
                                     headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        rec.record("invoice-sent", method="POST", path=str(resp.request.url), body=invoice.model_dump(mode="json"),
                   accepted=resp.is_success, problem=None if resp.is_success else resp.text[:500])
        return {"via": "http", "status_code": resp.status_code, "response": _maybe_json(resp)}

    @app.post("/performance/{event_type}", status_code=202)
    async def post_performance(event_type: str, request: Request, event_id: str | None = None) -> dict[str, Any]:
        cls = PERFORMANCE_EVENTS.get(event_type)
        if cls is None:
            raise HTTPException(404, detail=f"event_type: expected one of {sorted(PERFORMANCE_EVENTS)}")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise HTTPException(422, detail="body: expected a JSON object")
        body.setdefault("source_system", s.source)
        if clock is not None:
            now = clock.now().isoformat()
            body.setdefault("occurred_at", now)
            if cls is MilestoneCompleted:
                body.setdefault("completed_at", now)
            if cls is DeliverableAccepted:
                body.setdefault("accepted_at", now)
        try:
            event = cls.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from exc
        eid = event_id or str(uuid.uuid4())
        topic, _ = await asyncio.to_thread(out.send, event, event_id=eid)
        rec.record("performance-sent", method="POST", path="kafka:" + topic,
                   body={"type": event_type, **event.model_dump(mode="json")})
        return {"topic": topic, "event_id": eid}

    return app


def _maybe_json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:2000]
