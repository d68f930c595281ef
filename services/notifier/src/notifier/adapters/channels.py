"""Outbound channels: SMTP e-mail, Slack and Teams incoming webhooks, signed generic webhooks.

HTTP channels go through mesh_common.delivery (backoff with jitter, Retry-After, circuit
breaker); SMTP uses the same RetryPolicy and CircuitBreaker with SMTP's own notion of
transient (4xx, connection trouble) and permanent (5xx) failure. Every failure surfaces as
mesh_common.delivery.DeliveryError so the caller handles one kind of error.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
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
    ca_file: str | None = None  # trust this CA bundle (private relay) instead of the system store


class EmailChannel:
    kind = "email"
    per_recipient = True

    def __init__(self, name: str, settings: SmtpSettings, policy: RetryPolicy,
                 sleep: Callable[[float], None] = time.sleep, breaker_reset: float = 30.0) -> None:
        self.name = name
        self.settings = settings
        self.policy = policy
        self.breaker = CircuitBreaker(f"smtp:{settings.host}:{settings.port}", reset_after=breaker_reset)
        self._sleep = sleep
        self._local = threading.local()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.host)

    def build(self, message: Outgoing, recipient: str) -> Message:
        # email.mime (compat32) rather than EmailMessage: the header registry of the modern policy
        # costs milliseconds per message, and these headers are all generated here anyway.
        msg = MIMEMultipart("alternative")
        msg["From"] = formataddr(("Contract mesh", self.settings.sender))
        msg["To"] = recipient
        subject = message.subject if message.subject.isascii() else Header(message.subject, "utf-8").encode()
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message.message_id
        if message.in_reply_to:
            msg["In-Reply-To"] = message.in_reply_to
            msg["References"] = message.in_reply_to
        msg.attach(MIMEText(message.text, "plain", "utf-8"))
        msg.attach(MIMEText(message.html, "html", "utf-8"))
        return msg

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context(cafile=s.ca_file)  # verifies the certificate and host name
        smtp = (smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
                if s.ssl else smtplib.SMTP(s.host, s.port, timeout=s.timeout))
        try:
            if s.starttls and not s.ssl:
                smtp.starttls(context=context)
            if s.username:
                smtp.login(s.username, s.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _send_once(self, msg: Message, recipient: str) -> None:
        # One open session per thread, reused across messages; a session the server dropped while
        # idle is replaced once without counting as a failed attempt.
        smtp: smtplib.SMTP | None = getattr(self._local, "smtp", None)
        if smtp is not None:
            try:
                smtp.send_message(msg, from_addr=self.settings.sender, to_addrs=[recipient])
                return
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                self._drop()
        self._local.smtp = smtp = self._connect()
        try:
            smtp.send_message(msg, from_addr=self.settings.sender, to_addrs=[recipient])
        except (OSError, smtplib.SMTPServerDisconnected):
            self._drop()
            raise

    def _drop(self) -> None:
        smtp: smtplib.SMTP | None = getattr(self._local, "smtp", None)
        self._local.smtp = None
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

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
                 secret: str | None = None, timeout: float = 10.0, breaker_reset: float = 30.0) -> None:
        self.name, self.kind, self.url, self.policy, self.secret = name, kind, url, policy, secret
        self.breaker = CircuitBreaker(f"{kind}:{name}", reset_after=breaker_reset)
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
