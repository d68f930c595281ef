"""HMAC-SHA256 signatures over a timestamp and a body, for webhooks in and out.

Header format: `t=<unix seconds>,v1=<hex digest>` over "<t>.<body>", as Stripe-style
webhooks do; a signature older or newer than the tolerance is a replay and is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Mesh-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    pass


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, body: bytes, header: str | None, *, now: int | None = None,
           tolerance: int = DEFAULT_TOLERANCE_SECONDS) -> None:
    """Raise SignatureError saying what is wrong; return quietly when the signature is good."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError) as exc:
        raise SignatureError("malformed signature header, expected t=<unix>,v1=<hex>") from exc
    current = int(time.time()) if now is None else now
    if abs(current - t) > tolerance:
        raise SignatureError("signature timestamp outside the allowed window (replay?)")
    expected = sign(secret, body, t).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature does not match the body")
