"""A Salesforce-shaped CRM simulator.

- `POST /services/oauth2/token` (form: grant_type=client_credentials, client_id, client_secret) ->
  {"access_token", "instance_url", "token_type": "Bearer", ...}, as Salesforce's OAuth2 endpoint answers.
- `PATCH /services/data/{version}/sobjects/Opportunity/{external_id_field}/{external_id}`: upsert by external id
  with the bearer token; 201 {"id", "success", "errors", "created": true} on insert, 200 with created false
  on update (Salesforce API >= 46.0). A retry with the same external id never creates a second record.
- `PATCH /services/data/{version}/composite/sobjects/Opportunity/{external_id_field}`: the sObject Collections
  upsert, `{"allOrNone": false, "records": [{"attributes": {"type": "Opportunity"}, "<field>": "<id>", ...}]}`,
  up to 200 records. 200 with one result per record, in request order: `{"id", "success": true, "errors": [],
  "created"}` or `{"id": null, "success": false, "errors": [{"statusCode", "message", "fields"}]}`; the other
  records of the call are applied (with `allOrNone: true` none is, each carrying
  ALL_OR_NONE_OPERATION_ROLLED_BACK). A malformed body is a 400 for the whole call.
- `GET /opportunities`: what is stored, each with the history of upserts (what the demo reads).
- `POST /decisions`: a person's decision in the CRM, sent to renewal-sync's signed webhook
  (CRM_SIM_DECISION_URL, HMAC over the body with CRM_SIM_WEBHOOK_SECRET, header X-Mesh-Signature).
- `POST /crm/v3/objects/deals/batch/upsert`: HubSpot CRM v3 deal upsert by a unique property (bearer
  private-app token, checked against CRM_SIM_HUBSPOT_TOKEN when set); stored beside the Salesforce ones.
- `POST /faults {"status": 503, "count": 2, "retry_after": 1}`: the next `count` API calls fail (outage drills).
- `POST /faults/records {"external_id": "C-1", "status_code": "UNABLE_TO_LOCK_ROW", "count": 1}`: the next `count`
  upserts of that record inside a collection call fail with that per-record error, the rest of the call succeeds.
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mesh_common.signing import SIGNATURE_HEADER, sign

from .common import base_app, json_body
from .recorder import Recorder, kept_headers


class CrmSimSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_SIM_", extra="ignore")

    client_id: str | None = None  # None: any client id is accepted
    client_secret: str | None = None
    webhook_secret: str = "local-crm-webhook-secret"  # the secret of the tenant this CRM belongs to
    tenant_id: str = "demo"  # that tenant: decisions name it unless the request says otherwise
    decision_url: str = "http://127.0.0.1:8084/v1/crm/decisions"
    hubspot_token: str | None = None  # private-app token HubSpot calls must carry; None: any bearer


class Fault(BaseModel):
    status: int = Field(default=503, ge=400, le=599)
    count: int = Field(default=1, ge=0)
    retry_after: int | None = None


class RecordFault(BaseModel):
    external_id: str = Field(min_length=1)
    status_code: str = Field(default="UNABLE_TO_LOCK_ROW", min_length=1)
    message: str = "unable to obtain exclusive access to this record"
    count: int = Field(default=1, ge=0)


class DecisionRequest(BaseModel):
    contract_id: str = Field(min_length=1)
    decision: str = Field(pattern="^(renew|renegotiate|terminate)$")
    tenant_id: str | None = None
    decided_by: str = "crm.user@example.com"
    note: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="more fields for the webhook body")


class Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.opportunities: dict[tuple[str, str], dict[str, Any]] = {}
        self.fault: Fault | None = None
        self.record_faults: dict[str, RecordFault] = {}

    def take_record_fault(self, external_id: str) -> RecordFault | None:
        """Called with the lock held."""
        fault = self.record_faults.get(external_id)
        if fault is None or fault.count <= 0:
            return None
        fault.count -= 1
        return fault

    def upsert(self, field: str, external_id: str, version: str, fields: dict[str, Any]) -> tuple[str, bool]:
        """(record id, created). Called with the lock held."""
        now = datetime.now(UTC).isoformat()
        existing = self.opportunities.get((field, external_id))
        created = existing is None
        if existing is None:
            existing = {"id": "006" + secrets.token_hex(6).upper(), "external_id_field": field,
                        "external_id": external_id, "api_version": version, "fields": {},
                        "created_at": now, "history": []}
            self.opportunities[(field, external_id)] = existing
        existing["fields"] = {**existing["fields"], **fields}
        existing["updated_at"] = now
        existing["history"].append({"at": now, "fields": fields})
        return existing["id"], created

    def take_fault(self) -> Fault | None:
        with self.lock:
            if self.fault is None or self.fault.count <= 0:
                return None
            self.fault = self.fault.model_copy(update={"count": self.fault.count - 1})
            return self.fault


def _sf_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse([{"message": message, "errorCode": code}], status_code=status, headers=headers)


def create_app(settings: CrmSimSettings | None = None, *, recorder: Recorder | None = None) -> FastAPI:
    s = settings or CrmSimSettings()
    rec = recorder or Recorder()
    store = Store()
    app = base_app("CRM simulator (Salesforce-shaped)", rec)
    app.state.store = store

    def authorised(request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        with store.lock:
            return bearer in store.tokens

    def faulted(request: Request, body: Any) -> Response | None:
        fault = store.take_fault()
        if fault is None:
            return None
        rec.record("fault-injected", method=request.method, path=request.url.path, body=body,
                   headers=kept_headers(request.headers), accepted=False, problem=f"injected {fault.status}")
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return _sf_error(fault.status, "SERVER_UNAVAILABLE", "injected fault", headers)

    @app.post("/services/oauth2/token")
    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if (hit := faulted(request, {"client_id": form.get("client_id")})) is not None:
            return hit
        problem = None
        if form.get("grant_type") != "client_credentials":
            problem = "unsupported_grant_type"
        elif s.client_id is not None and (form.get("client_id") != s.client_id
                                          or form.get("client_secret") != s.client_secret):
            problem = "invalid_client"
        rec.record("oauth-token", method="POST", path=request.url.path,
                   body={"grant_type": form.get("grant_type"), "client_id": form.get("client_id")},
                   accepted=problem is None, problem=problem)
        if problem:
            return JSONResponse({"error": problem, "error_description": problem.replace("_", " ")}, status_code=400)
        access = "00D" + secrets.token_hex(20)
        with store.lock:
            store.tokens.add(access)
        now_ms = str(int(datetime.now(UTC).timestamp() * 1000))
        return JSONResponse({"access_token": access, "instance_url": str(request.base_url).rstrip("/"),
                             "id": f"{str(request.base_url).rstrip('/')}/id/00D/005", "token_type": "Bearer",
                             "issued_at": now_ms, "signature": secrets.token_urlsafe(24)})

    @app.patch("/services/data/{version}/sobjects/Opportunity/{field}/{external_id}")
    async def upsert(version: str, field: str, external_id: str, request: Request) -> Response:
        body = await json_body(request)
        if (hit := faulted(request, body)) is not None:
            return hit
        if not authorised(request):
            rec.record("opportunity-upsert", method="PATCH", path=request.url.path, body=body,
                       headers=kept_headers(request.headers), accepted=False, problem="INVALID_SESSION_ID")
            return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if not isinstance(body, dict):
            rec.record("opportunity-upsert", method="PATCH", path=request.url.path, body=body,
                       headers=kept_headers(request.headers), accepted=False, problem="JSON_PARSER_ERROR")
            return _sf_error(400, "JSON_PARSER_ERROR", "body must be a JSON object of Opportunity fields")
        with store.lock:
            opp_id, created = store.upsert(field, external_id, version, body)
        rec.record("opportunity-upsert", method="PATCH", path=request.url.path, body=body,
                   headers=kept_headers(request.headers))
        return JSONResponse({"id": opp_id, "success": True, "errors": [], "created": created},
                            status_code=201 if created else 200)

    @app.patch("/services/data/{version}/composite/sobjects/Opportunity/{field}")
    async def upsert_collection(version: str, field: str, request: Request) -> Response:
        """sObject Collections upsert: one API call, one result per record, partial success by default."""
        body = await json_body(request)
        if (hit := faulted(request, body)) is not None:
            return hit
        headers = kept_headers(request.headers)
        if not authorised(request):
            rec.record("opportunity-collection-upsert", method="PATCH", path=request.url.path, body=body,
                       headers=headers, accepted=False, problem="INVALID_SESSION_ID")
            return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        records = body.get("records") if isinstance(body, dict) else None
        problem = None
        if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
            problem = ("JSON_PARSER_ERROR", "records: expected a non-empty list of Opportunity objects")
        elif len(records) > 200:
            problem = ("EXCEEDED_ID_LIMIT", f"records: {len(records)} records, the limit is 200")
        rec.record("opportunity-collection-upsert", method="PATCH", path=request.url.path, body=body,
                   headers=headers, accepted=problem is None, problem=problem and problem[0])
        if problem is not None:
            return _sf_error(400, *problem)
        assert isinstance(body, dict) and isinstance(records, list)
        counts: dict[str, int] = {}
        for r in records:
            counts[str(r.get(field))] = counts.get(str(r.get(field)), 0) + 1
        errors: list[dict[str, Any] | None] = []
        with store.lock:
            for r in records:
                ext = r.get(field)
                if (r.get("attributes") or {}).get("type") != "Opportunity":
                    errors.append({"statusCode": "INVALID_TYPE", "message": "attributes.type must be Opportunity",
                                   "fields": []})
                elif not isinstance(ext, str) or not ext:
                    errors.append({"statusCode": "REQUIRED_FIELD_MISSING",
                                   "message": f"Required fields are missing: [{field}]", "fields": [field]})
                elif counts[ext] > 1:
                    errors.append({"statusCode": "DUPLICATE_EXTERNAL_ID",
                                   "message": f"{field}: {ext} appears more than once in this request",
                                   "fields": [field]})
                elif (fault := store.take_record_fault(ext)) is not None:
                    errors.append({"statusCode": fault.status_code, "message": fault.message, "fields": []})
                else:
                    errors.append(None)
            rolled_back = bool(body.get("allOrNone")) and any(e is not None for e in errors)
            results: list[dict[str, Any]] = []
            for r, error in zip(records, errors, strict=True):
                fields = {k: v for k, v in r.items() if k not in ("attributes", field)}
                if error is None and not rolled_back:
                    opp_id, created = store.upsert(field, r[field], version, fields)
                    results.append({"id": opp_id, "success": True, "errors": [], "created": created})
                    continue
                error = error or {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "fields": [],
                                  "message": "Record rolled back because not all records were valid and the "
                                             "request was using AllOrNone header"}
                results.append({"id": None, "success": False, "errors": [error]})
        for r, result in zip(records, results, strict=True):
            rec.record("opportunity-upsert", method="PATCH", path=f"{request.url.path}/{r.get(field)}",
                       body=r, headers=headers, accepted=result["success"],
                       problem=None if result["success"] else result["errors"][0]["statusCode"])
        return JSONResponse(results)

    @app.post("/crm/v3/objects/deals/batch/upsert")
    async def hubspot_upsert(request: Request) -> Response:
        """HubSpot CRM v3 batch upsert of deals by a unique property (what renewal-sync's HubSpot adapter calls)."""
        body = await json_body(request)
        if (hit := faulted(request, body)) is not None:
            return hit
        auth = request.headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        problem = None
        if bearer is None or (s.hubspot_token is not None and bearer != s.hubspot_token):
            problem = "Authentication credentials not found"
        elif not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            problem = "inputs: expected a list of {idProperty, id, properties}"
        rec.record("opportunity-upsert", method="POST", path=request.url.path, body=body,
                   headers=kept_headers(request.headers), accepted=problem is None, problem=problem)
        if problem:
            status = 401 if problem.startswith("Authentication") else 400
            return JSONResponse({"status": "error", "message": problem, "category": "VALIDATION_ERROR"},
                                status_code=status)
        now = datetime.now(UTC).isoformat()
        results = []
        with store.lock:
            for item in body["inputs"]:
                key = ("hubspot:" + str(item.get("idProperty")), str(item.get("id")))
                existing = store.opportunities.get(key)
                created = existing is None
                if existing is None:
                    existing = {"id": str(secrets.randbelow(10**10)), "external_id_field": key[0],
                                "external_id": key[1], "api_version": "crm/v3", "fields": {},
                                "created_at": now, "history": []}
                    store.opportunities[key] = existing
                props = dict(item.get("properties") or {})
                existing["fields"] = {**existing["fields"], **props}
                existing["updated_at"] = now
                existing["history"].append({"at": now, "fields": props})
                results.append({"id": existing["id"], "properties": existing["fields"], "createdAt":
                                existing["created_at"], "updatedAt": now, "archived": False, "new": created})
        return JSONResponse({"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now})

    @app.get("/opportunities")
    def opportunities() -> list[dict[str, Any]]:
        with store.lock:
            return [json.loads(json.dumps(o)) for o in store.opportunities.values()]

    @app.post("/faults")
    def set_fault(fault: Fault) -> dict[str, Any]:
        with store.lock:
            store.fault = fault
        return fault.model_dump()

    @app.post("/faults/records")
    def set_record_fault(fault: RecordFault) -> dict[str, Any]:
        with store.lock:
            store.record_faults[fault.external_id] = fault
        return fault.model_dump()

    @app.post("/decisions")
    async def decide(decision: DecisionRequest) -> dict[str, Any]:
        with store.lock:
            opp = next((o for (f, ext), o in store.opportunities.items() if ext == decision.contract_id), None)
        payload: dict[str, Any] = {
            "contract_id": decision.contract_id,
            "decision": decision.decision,
            "decided_by": decision.decided_by,
            "decided_at": datetime.now(UTC).isoformat(),
            "note": decision.note,
            "crm_opportunity_id": opp["id"] if opp else None,
        }
        payload["tenant_id"] = decision.tenant_id or s.tenant_id
        payload.update(decision.extra)
        raw = json.dumps(payload).encode()
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(s.webhook_secret, raw)}
        try:
            async with httpx.AsyncClient(timeout=15) as client:
                resp = await client.post(s.decision_url, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            rec.record("decision-sent", method="POST", path=s.decision_url, body=payload, accepted=False,
                       problem=f"{type(exc).__name__}: {exc}")
            raise HTTPException(502, detail=f"decision_url: {s.decision_url} unreachable: {exc}") from exc
        rec.record("decision-sent", method="POST", path=s.decision_url, body=payload, accepted=resp.is_success,
                   problem=None if resp.is_success else f"{resp.status_code}: {resp.text[:300]}")
        return {"status_code": resp.status_code, "response": resp.text[:2000], "sent": payload}

    return app
