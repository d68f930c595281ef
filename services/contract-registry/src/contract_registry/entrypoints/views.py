"""What the HTTP API answers: the response models its OpenAPI document names, the bodies, and the
mapping of the service's errors to status codes (422 naming the field, 404, 409, 412, 428)."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from contract_schema.contract import ContractSnapshot, ContractStatus, ContractTerms
from mesh_common.auth import Principal
from mesh_common.http_guard import bad_text, truncate

from ..domain.contracts import InvalidTransition, UnknownObligation
from ..domain.importing import CSV, NDJSON
from ..domain.validation import BusinessRuleError, Violation
from ..importer import ImportNotFound
from ..service import (
    Caller,
    IdempotencyKeyReused,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)


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


class ImportRejection(BaseModel):
    line: int
    detail: list[dict[str, Any]]


class ImportView(BaseModel):
    import_id: str
    status: str  # running | done
    received: int
    accepted: int  # created + existing
    created: int
    existing: int  # imported before: no new contract
    rejected: int
    pending: int
    rejections: list[ImportRejection]
    rejections_kept: int
    created_at: str
    updated_at: str


VIEW = {"model": ContractView, "description": "the contract; ETag header = its version"}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "body is not parseable JSON (or nested too deeply)"},
    401: {"model": Problem, "description": "no valid bearer token"},
    403: {"model": Problem, "description": "token lacks the scope"},
    404: {"model": Problem, "description": "no such contract for this tenant"},
    413: {"model": Problem, "description": "body over REGISTRY_MAX_BODY_BYTES"},
    422: {"model": Problem, "description": "invalid input; detail[].field names the field"},
}
IMPORT_ERRORS: dict[int | str, dict[str, Any]] = ERRORS | {
    404: {"model": Problem, "description": "no such import (import_id) for this tenant"},
    415: {"model": Problem, "description": "Content-Type is neither NDJSON nor CSV"},
    422: {"model": Problem, "description": "no records, or a bad query parameter; bad records are rejections"},
}
_LINES = {"type": "string", "description": "one record per line"}
IMPORT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    NDJSON: {"schema": _LINES | {"description": "one ContractDraft (JSON, optionally `external_id`) per line"}},
    CSV: {"schema": _LINES | {"description": "a header row (columns: see the README), then one contract per row"}},
    # The ContractDraft component is in the document through POST /v1/contracts.
    "application/json": {"schema": {"$ref": "#/components/schemas/ContractDraft"},
                         "description": "one record, read as a one-line NDJSON body"},
}}}
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = ERRORS | {
    409: {"model": Problem, "description": "not allowed in the contract's status"},
    412: {"model": Problem, "description": "If-Match does not match the current version"},
}


def caller(principal: Principal, request: Request) -> Caller:
    return Caller(subject=principal.subject, tenant=principal.tenant,
                  request_id=(request.headers.get("x-request-id") or str(uuid.uuid4()))[:200])  # column width


def snapshot_json(snapshot: ContractSnapshot) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(snapshot.model_dump_json())
    return body


def view(snapshot: ContractSnapshot, decision: dict[str, Any] | None = None,
         as_of: date | None = None) -> dict[str, Any]:
    body = snapshot_json(snapshot)
    body["version"] = snapshot.current.version
    body["in_force"] = body["versions"][-1]
    body["as_of"] = as_of.isoformat() if as_of else None
    body["renewal_decision"] = decision
    return body


def respond(snapshot: ContractSnapshot, status: int = 200, decision: dict[str, Any] | None = None,
            as_of: date | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(view(snapshot, decision, as_of), status_code=status,
                        headers={"ETag": f'"{snapshot.current.version}"', **(headers or {})})


def problem(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def text_only(command: BaseModel) -> None:
    """PostgreSQL text cannot hold NUL or unpaired surrogates: a rule broken by the named field, never a 500."""
    bad = [Violation(path, issue) for path, issue in bad_text(command.model_dump())]
    if bad:
        raise BusinessRuleError(bad)


# Errors whose message is the whole answer, and the status each one answers with.
PLAIN_ERRORS: dict[type[Exception], int] = {UnknownObligation: 404, PreconditionFailed: 412,
                                            PreconditionRequired: 428, InvalidTransition: 409}


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BusinessRuleError)
    async def _rules(_: Request, exc: BusinessRuleError) -> JSONResponse:
        return problem(422, [{"loc": ["body", *v.field.split(".")], "field": v.field, "msg": v.message,
                              "type": "business_rule"} for v in exc.violations])

    @app.exception_handler(ImportNotFound)
    async def _no_import(_: Request, exc: ImportNotFound) -> JSONResponse:
        return problem(404, f"import {truncate(str(exc))} not found")

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return problem(404, f"contract {truncate(str(exc))} not found")  # the id comes from the path

    async def _plain(_: Request, exc: Exception) -> JSONResponse:
        return problem(next(code for kind, code in PLAIN_ERRORS.items() if isinstance(exc, kind)), str(exc))

    for error in PLAIN_ERRORS:
        app.add_exception_handler(error, _plain)

    @app.exception_handler(IdempotencyKeyReused)
    async def _reused(_: Request, exc: IdempotencyKeyReused) -> JSONResponse:
        return problem(422, [{"loc": ["header", "Idempotency-Key"], "field": "Idempotency-Key", "msg": str(exc),
                              "type": "idempotency_key_reused"}])

