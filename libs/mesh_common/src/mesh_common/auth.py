"""OAuth2 bearer JWTs for every HTTP API: issuer, audience, scopes and a tenant.

HS256 with a shared secret for local runs; RS256 with a JWKS URL in production.
401 without a valid token, 403 without the scope. The tenant claim scopes all data access.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore")

    issuer: str = "contract-mesh-local"
    audience: str = "contract-mesh"
    algorithm: str = Field(default="HS256", pattern="^(HS256|RS256)$")
    hs256_secret: str = "local-development-secret-change-me-please"
    jwks_url: str | None = None
    tenant_claim: str = "tenant"


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str
    scopes: frozenset[str]


class TokenVerifier:
    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwks_url) if settings.jwks_url else None

    def verify(self, token: str) -> Principal:
        """Decode and check a bearer token; raises jwt.InvalidTokenError with the reason."""
        s = self.settings
        key: Any = s.hs256_secret
        if s.algorithm == "RS256":
            if self._jwks is None:
                raise jwt.InvalidTokenError("RS256 needs AUTH_JWKS_URL")
            key = self._jwks.get_signing_key_from_jwt(token).key
        claims = jwt.decode(token, key, algorithms=[s.algorithm], audience=s.audience, issuer=s.issuer,
                            options={"require": ["exp", "sub", "iss", "aud"]})
        tenant = claims.get(s.tenant_claim)
        if not tenant:
            raise jwt.InvalidTokenError(f"token has no {s.tenant_claim!r} claim")
        scope = claims.get("scope", claims.get("scp", ""))
        scopes = frozenset(scope.split() if isinstance(scope, str) else scope)
        return Principal(subject=str(claims["sub"]), tenant=str(tenant), scopes=scopes)


def issue_token(settings: AuthSettings, *, subject: str, tenant: str, scopes: list[str],
                ttl_seconds: int = 3600) -> str:
    """An HS256 token for local runs, demos and tests."""
    import time

    now = int(time.time())
    claims = {"sub": subject, "iss": settings.issuer, "aud": settings.audience, "iat": now,
              "exp": now + ttl_seconds, settings.tenant_claim: tenant, "scope": " ".join(scopes)}
    return jwt.encode(claims, settings.hs256_secret, algorithm="HS256")


_bearer = HTTPBearer(auto_error=False)


def require_scope(scope: str) -> Callable[..., Principal]:
    """A FastAPI dependency: the caller's principal, if it holds `scope` (or `admin`).

    The app must set `app.state.token_verifier` to a TokenVerifier.
    """

    def dependency(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, detail="missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        verifier: TokenVerifier = request.app.state.token_verifier
        try:
            principal = verifier.verify(credentials.credentials)
        except jwt.PyJWTError as exc:
            raise HTTPException(401, detail=f"invalid token: {exc}",
                                headers={"WWW-Authenticate": "Bearer"}) from exc
        if scope not in principal.scopes and "admin" not in principal.scopes:
            raise HTTPException(403, detail=f"token lacks scope {scope!r}")
        return principal

    return dependency
