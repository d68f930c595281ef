"""Signed acknowledgement links: anyone holding the link from the message may acknowledge.

sig = HMAC-SHA256(secret, "ack:<alert id>:<expiry unix>"), sent as ?exp=<unix>&sig=<hex>.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlencode


def ack_signature(secret: str, alert_id: str, expires: int) -> str:
    return hmac.new(secret.encode(), f"ack:{alert_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def ack_url(base_url: str, secret: str, alert_id: str, expires: int) -> str:
    query = urlencode({"exp": expires, "sig": ack_signature(secret, alert_id, expires)})
    return f"{base_url.rstrip('/')}/v1/alerts/{quote(alert_id, safe='')}/ack?{query}"


def check_ack_signature(secret: str, alert_id: str, expires: int, sig: str, now: int) -> str | None:
    """None when the link is good, else what is wrong with it."""
    if now > expires:
        return "the acknowledgement link has expired"
    if not hmac.compare_digest(ack_signature(secret, alert_id, expires), sig):
        return "the acknowledgement link signature does not match"
    return None
