"""Outbound channels: SMTP e-mail, Slack and Teams incoming webhooks, signed generic webhooks.

HTTP channels go through mesh_common.delivery (backoff with jitter, Retry-After, circuit
breaker); SMTP uses the same RetryPolicy and CircuitBreaker with SMTP's own notion of
transient (4xx, connection trouble) and permanent (5xx) failure. Every failure surfaces as
mesh_common.delivery.DeliveryError so the caller handles one kind of error.
"""

from __future__ import annotations

import asyncio
import email.policy
import json
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any, Protocol

import httpx

from mesh_common.delivery import CircuitBreaker, DeliveryError, RetryPolicy, send_with_retries
from mesh_common.signing import SIGNATURE_HEADER, sign


@dataclass(frozen=True)
class Outgoing:
    """One message for one channel and one recipient, whatever the channel."""

    subject: str
    text: str
    html: str
    payload: dict[str, Any]  # chat / webhook body
    message_id: str  # stable per delivery key: the same delivery always has the same Message-ID
    in_reply_to: str | None = None  # threading of later updates


class Channel(Protocol):
    name: str
    kind: str
    per_recipient: bool  # e-mail: one message per address; chat/webhook: one post per alert

    @property
    def enabled(self) -> bool: ...

    def send(self, message: Outgoing, recipient: str) -> None: ...


@dataclass
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = "contract-mesh-notifier@localhost"
    timeout: float = 10.0


class EmailChannel:
    kind = "email"
    per_recipient = True

    def __init__(self, name: str, settings: SmtpSettings, policy: RetryPolicy,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = name
        self.settings = settings
        self.policy = policy
        self.breaker = CircuitBreaker(f"smtp:{settings.host}:{settings.port}")
        self._sleep = sleep

    @property
    def enabled(self) -> bool:
        return bool(self.settings.host)

    def build(self, message: Outgoing, recipient: str) -> EmailMessage:
        # Long lines rather than folding: Python folds a subject starting with "[RED]" onto a
        # continuation line, which some clients show with a leading space. 998 is RFC 5322's limit.
        msg = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))
        msg["From"] = formataddr(("Contract mesh", self.settings.sender))
        msg["To"] = recipient
        msg["Subject"] = message.subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message.message_id
        if message.in_reply_to:
            msg["In-Reply-To"] = message.in_reply_to
            msg["References"] = message.in_reply_to
        msg.set_content(message.text)
        msg.add_alternative(message.html, subtype="html")
        return msg

    def _send_once(self, msg: EmailMessage, recipient: str) -> None:
        s = self.settings
        cls = smtplib.SMTP_SSL if s.ssl else smtplib.SMTP
        with cls(s.host, s.port, timeout=s.timeout) as smtp:
            if s.starttls and not s.ssl:
                smtp.starttls(context=ssl.create_default_context())
            if s.username:
                smtp.login(s.username, s.password or "")
            smtp.send_message(msg, from_addr=s.sender, to_addrs=[recipient])

    def send(self, message: Outgoing, recipient: str) -> None:
        msg = self.build(message, recipient)
        last: DeliveryError | None = None
        for attempt in range(self.policy.attempts):
            self.breaker.before_call()
            try:
                self._send_once(msg, recipient)
                self.breaker.record(True)
                return
            except smtplib.SMTPResponseException as exc:
                permanent = 500 <= exc.smtp_code < 600
                last = DeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=permanent,
                                     status=exc.smtp_code)
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                last = DeliveryError(f"SMTP recipient refused: {exc.recipients}",
                                     permanent=all(500 <= c < 600 for c in codes))
            except (OSError, smtplib.SMTPException) as exc:
                last = DeliveryError(f"SMTP {type(exc).__name__}: {exc}", permanent=False)
            if last.permanent:
                raise last
            self.breaker.record(False)
            if attempt + 1 < self.policy.attempts:
                self._sleep(self.policy.delay(attempt))
        assert last is not None
        raise last


class HttpChannel:
    """Slack / Teams incoming webhooks and the signed generic webhook (they differ in body and headers)."""

    per_recipient = False

    def __init__(self, name: str, kind: str, url: str | None, policy: RetryPolicy, *,
                 secret: str | None = None, timeout: float = 10.0) -> None:
        self.name, self.kind, self.url, self.policy, self.secret = name, kind, url, policy, secret
        self.breaker = CircuitBreaker(f"{kind}:{name}")
        self.timeout = timeout

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def send(self, message: Outgoing, recipient: str) -> None:
        if not self.url:
            raise DeliveryError(f"channel {self.name} has no URL configured", permanent=True)
        body = json.dumps(message.payload, separators=(",", ":"), default=str).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.message_id.strip("<>")}
        if self.kind == "webhook" and self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        url = self.url

        async def run() -> None:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                async def call() -> httpx.Response:
                    if self.kind == "webhook" and self.secret:  # fresh timestamp on every retry
                        headers[SIGNATURE_HEADER] = sign(self.secret, body)
                    return await client.post(url, content=body, headers=headers)

                await send_with_retries(call, policy=self.policy, breaker=self.breaker)

        # The consumer and the ticker are threads of their own: each send gets its own event loop.
        asyncio.run(run())
