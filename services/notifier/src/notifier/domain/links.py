"""Signed acknowledgement links: anyone holding the link from the message may acknowledge.

sig = HMAC-SHA256(secret, "ack:<alert id>:<expiry unix>"), sent as ?exp=<unix>&sig=<hex>.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

from .calendar import feed_token


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


@dataclass
class Links:
    """The links a notice carries: a signed acknowledgement link and the owner's calendar feed."""

    public_base_url: str
    ack_secret: str
    calendar_secret: str
    ack_link_ttl: timedelta = timedelta(days=30)

    def ack(self, alert_id: str, now: datetime) -> str:
        return ack_url(self.public_base_url, self.ack_secret, alert_id, int((now + self.ack_link_ttl).timestamp()))

    def calendar(self, owner_email: str) -> str:
        return f"{self.public_base_url.rstrip('/')}/v1/calendar/{feed_token(self.calendar_secret, owner_email)}.ics"
