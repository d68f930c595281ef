"""SMTP catcher: aiosmtpd on loopback keeps every message; GET /messages shows them over HTTP."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI
from pydantic_settings import BaseSettings, SettingsConfigDict

from .common import base_app
from .faults import FaultSwitch
from .recorder import Recorder


class SmtpSimSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_SMTP_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 1025


def parse_message(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> dict[str, Any]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    return {
        "mail_from": mail_from,
        "rcpt_tos": list(rcpt_tos),
        "from": str(msg.get("From", "")),
        "to": str(msg.get("To", "")),
        "cc": str(msg.get("Cc", "")),
        "subject": str(msg.get("Subject", "")),
        "date": str(msg.get("Date", "")),
        "message_id": str(msg.get("Message-ID", "")),
        "headers": {k: str(v) for k, v in msg.items()},
        "text": text.get_content() if text is not None else "",
        "html": html.get_content() if html is not None else "",
        "received_at": datetime.now(UTC).isoformat(),
    }


class CatchingHandler:
    """aiosmtpd handler: every accepted message goes into the recorder as kind "email"."""

    def __init__(self, recorder: Recorder, faults: FaultSwitch | None = None) -> None:
        self.recorder = recorder
        self.faults = faults

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        active = self.faults.active() if self.faults is not None else None
        if active is not None:
            fault, left = active
            self.recorder.record("fault-injected", method="SMTP", path="RCPT", body={"rcpt": address},
                                 accepted=False, problem=f"injected {fault.mode}")
            if fault.mode == "hang":
                await asyncio.sleep(left)
            return "421 4.3.2 injected fault: service not available"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        try:
            body = parse_message(raw, str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos])
        except Exception as exc:  # a malformed message is still caught, with the reason
            self.recorder.record("email", method="SMTP", path="DATA", body={"raw": raw.decode("utf-8", "replace")},
                                 accepted=False, problem=f"unparseable: {exc}")
            return "250 OK (unparsed)"
        self.recorder.record("email", method="SMTP", path="DATA", body=body)
        return "250 OK"


class SmtpCatcher:
    def __init__(self, recorder: Recorder, host: str = "127.0.0.1", port: int = 1025,
                 faults: FaultSwitch | None = None) -> None:
        self.controller = Controller(CatchingHandler(recorder, faults), hostname=host, port=port)
        self._lock = threading.Lock()

    def start(self) -> SmtpCatcher:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def create_app(recorder: Recorder) -> FastAPI:
    # The fault switch acts on SMTP (the handler), not on this read-back API.
    app = base_app("SMTP catcher", recorder, fault_http=False)

    @app.get("/messages")
    def messages(to: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """Caught e-mails, oldest first; `to` filters on any recipient (substring, case-insensitive)."""
        out = []
        for item in recorder.items("email", since):
            body = dict(item.body) if isinstance(item.body, dict) else {"raw": item.body}
            if to and not any(to.lower() in r.lower() for r in body.get("rcpt_tos", [])):
                continue
            out.append({"seq": item.seq, **body})
        return out

    @app.delete("/messages")
    def clear() -> dict[str, int]:
        return {"cleared": recorder.clear()}

    return app
