"""The channel adapters against real servers on loopback: SMTP with STARTTLS + AUTH, webhooks with retries."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from notifier.adapters.channels import EmailChannel, HttpChannel, Outgoing, SmtpSettings

from mesh_common.delivery import DeliveryError, RetryPolicy
from mesh_common.signing import SIGNATURE_HEADER, verify
from mesh_testing import free_port

MESSAGE = Outgoing(subject="[RED] Überfällig: SLA breach (C-1)", text="plain body", html="<p>html body</p>",
                   payload={"text": "hello"}, message_id="<abc@notifier.contract-mesh>")


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"notifier" and data.password == b"s3cret"
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)


def test_smtp_with_starttls_and_auth_sends_multipart_text_and_html(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True,
                            authenticator=inbox.authenticate, auth_required=True, auth_require_tls=True)
    controller.start()
    try:
        settings = SmtpSettings(host="127.0.0.1", port=port, starttls=True, username="notifier", password="s3cret",
                                sender="notifier@example.com", ca_file=str(cert))
        channel = EmailChannel("email", settings, RetryPolicy(2, 0.01, 0.1))
        channel.send(MESSAGE, "owner@example.com")
        channel.send(MESSAGE, "legal@example.com")  # the same authenticated session is reused
        assert [r for r, _ in inbox.messages] == [["owner@example.com"], ["legal@example.com"]]
        raw = inbox.messages[0][1].decode()
        assert "multipart/alternative" in raw and "text/plain" in raw and "text/html" in raw
        assert "Message-ID: <abc@notifier.contract-mesh>" in raw
        assert "=?utf-8?" in raw  # the non-ASCII subject is encoded
        assert inbox.logins
        # wrong password: 535 is permanent, no retry loop
        bad = EmailChannel("email", SmtpSettings(host="127.0.0.1", port=port, starttls=True, username="notifier",
                                                 password="wrong", ca_file=str(cert)), RetryPolicy(3, 0.01, 0.1))
        with pytest.raises(DeliveryError) as info:
            bad.send(MESSAGE, "owner@example.com")
        assert info.value.permanent and info.value.status == 535
        # an untrusted certificate is refused (not silently accepted)
        untrusted = EmailChannel("email", SmtpSettings(host="127.0.0.1", port=port, starttls=True,
                                                       username="notifier", password="s3cret"),
                                 RetryPolicy(1, 0.01, 0.1))
        with pytest.raises(DeliveryError) as info:
            untrusted.send(MESSAGE, "owner@example.com")
        assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    finally:
        controller.stop()


@pytest.fixture
def flaky_http() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]], list[int]]]:
    """Answers with the statuses queued in `plan` (then 200) and keeps what it got."""
    got: list[tuple[dict[str, str], bytes]] = []
    plan: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = plan.pop(0) if plan else 200
            if status == 200:
                got.append((dict(self.headers), body))
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got, plan
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_retries_transient_failures_and_signs_every_attempt(
        flaky_http: tuple[str, list[tuple[dict[str, str], bytes]], list[int]]) -> None:
    url, got, plan = flaky_http
    plan.extend([503, 429])
    channel = HttpChannel("webhook", "webhook", url, RetryPolicy(4, 0.01, 0.05), secret="k")
    channel.send(MESSAGE, "#webhook")
    assert len(got) == 1
    headers, body = got[0]
    assert json.loads(body) == {"text": "hello"}
    verify("k", body, {k.lower(): v for k, v in headers.items()}[SIGNATURE_HEADER.lower()])
    assert {k.lower(): v for k, v in headers.items()}["idempotency-key"] == "abc@notifier.contract-mesh"


def test_chat_webhook_4xx_is_permanent(flaky_http: tuple[str, list[tuple[dict[str, str], bytes]], list[int]]) -> None:
    url, got, plan = flaky_http
    plan.append(400)
    with pytest.raises(DeliveryError) as info:
        HttpChannel("slack", "slack", url, RetryPolicy(4, 0.01, 0.05)).send(MESSAGE, "#slack")
    assert info.value.permanent and info.value.status == 400 and got == []
