"""At most one e-mail per (alert, recipient); every red alert delivered, recorded or dead-lettered."""

from __future__ import annotations

from collections import Counter

import httpx

from contract_schema.alert import Alert, NotificationRecorded

from ..harness import Mesh
from ..history import History
from .report import Report, raw


def notifications(r: Report, h: History, mesh: Mesh) -> None:
    mails = httpx.get(mesh.url("smtp-catcher") + "/messages", timeout=30).json()
    per: Counter[tuple[str, str]] = Counter()
    for m in mails:
        for rcpt in m.get("rcpt_tos", []):
            per[(m.get("message_id", ""), rcpt.lower())] += 1
    for (mid, rcpt), n in per.items():
        if n > 1:
            r.add("notifications", "duplicated", f"e-mail {mid} to {rcpt} delivered {n} times")
    r.effects["e-mails"] = len(mails)
    for a in unhandled_red_alerts(h):
        r.add("notifications", "lost", f"red alert {a.alert_id} ({a.alert_type}) neither "
                                       "delivered/recorded nor in the DLQ")


def unhandled_red_alerts(history: History) -> list[Alert]:
    """Red alerts on the topic with neither a notification record nor a dead letter with its reason."""
    handled = {s.event.alert_id for s in history.on("clm.notification.v1") if isinstance(s.event, NotificationRecorded)}
    dlq = history.on("clm.alert.v1.dlq")
    return [s.event for s in history.on("clm.alert.v1")
            if isinstance(s.event, Alert) and s.event.tier.value == "red" and s.event.alert_id not in handled
            and not any(s.event.alert_id.encode() in raw(d) and d.headers.get("dlq_reason") for d in dlq)]
