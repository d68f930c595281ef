from __future__ import annotations

import jwt
import pytest

from mesh_common.auth import AuthSettings, TokenVerifier, issue_token

SETTINGS = AuthSettings(hs256_secret="test-secret-that-is-long-enough-for-hs256")


def test_issued_token_verifies_with_tenant_and_scopes() -> None:
    token = issue_token(SETTINGS, subject="clerk", tenant="acme", scopes=["contracts:read", "invoices:write"])
    principal = TokenVerifier(SETTINGS).verify(token)
    assert principal.tenant == "acme"
    assert principal.scopes == frozenset({"contracts:read", "invoices:write"})


def test_wrong_audience_expired_and_wrong_key_are_rejected() -> None:
    verifier = TokenVerifier(SETTINGS)
    other_audience = issue_token(SETTINGS.model_copy(update={"audience": "else"}), subject="x", tenant="t", scopes=[])
    with pytest.raises(jwt.InvalidAudienceError):
        verifier.verify(other_audience)
    expired = issue_token(SETTINGS, subject="x", tenant="t", scopes=[], ttl_seconds=-60)
    with pytest.raises(jwt.ExpiredSignatureError):
        verifier.verify(expired)
    forged = issue_token(SETTINGS.model_copy(update={"hs256_secret": "x" * 40}), subject="x", tenant="t", scopes=[])
    with pytest.raises(jwt.InvalidSignatureError):
        verifier.verify(forged)


def test_token_without_tenant_is_rejected() -> None:
    token = jwt.encode({"sub": "x", "iss": SETTINGS.issuer, "aud": SETTINGS.audience, "exp": 4_000_000_000},
                       SETTINGS.hs256_secret, algorithm="HS256")
    with pytest.raises(jwt.InvalidTokenError, match="tenant"):
        TokenVerifier(SETTINGS).verify(token)
