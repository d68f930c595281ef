"""What the HTTP layer needs besides routes: the caller (bearer token, or the page's cookie), the filters
from the query string, and CSV rendering."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from mesh_common.auth import Principal, TokenVerifier

from ..domain.views import Filters

SCOPE = "portfolio:read"
_bearer = HTTPBearer(auto_error=False)


def reader(request: Request,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """mesh_common.auth's rules (401 without a valid token, 403 without the scope, the tenant from the token),
    taking the token from the Authorization header or, for the page and its event stream, from the cookie
    named by `app.state.token_cookie`."""
    token = credentials.credentials if credentials is not None else request.cookies.get(request.app.state.token_cookie)
    if not token:
        raise HTTPException(401, detail="missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        principal = verifier.verify(token)
    except jwt.PyJWTError as exc:
        raise HTTPException(401, detail=f"invalid token: {exc}", headers={"WWW-Authenticate": "Bearer"}) from exc
    if SCOPE not in principal.scopes and "admin" not in principal.scopes:
        raise HTTPException(403, detail=f"token lacks scope {SCOPE!r}")
    return principal


def filters(owner: Annotated[str | None, Query(max_length=320, description="owner e-mail")] = None,
            counterparty: Annotated[str | None, Query(max_length=200, description="counterparty party_id")] = None,
            contract_type: Annotated[str | None, Query(max_length=200)] = None,
            tag: Annotated[str | None, Query(max_length=200)] = None) -> Filters:
    return Filters(owner=owner, counterparty=counterparty, contract_type=contract_type, tag=tag)


def csv_response(rows: Iterable[BaseModel], filename: str, *, columns: list[str] | None = None,
                 extra: dict[str, Any] | None = None) -> Response:
    """Rows as CSV (one column per field, nested values as their JSON text), a download."""
    out = io.StringIO()
    writer: csv.DictWriter[str] | None = None
    for row in rows:
        data = {**(extra or {}), **row.model_dump(mode="json")}
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=columns or list(data), extrasaction="ignore")
            writer.writeheader()
        writer.writerow({k: ("" if v is None else v) for k, v in data.items()})
    if writer is None and columns:
        csv.DictWriter(out, fieldnames=columns).writeheader()
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


Caller = Annotated[Principal, Depends(reader)]
Filtered = Annotated[Filters, Depends(filters)]
