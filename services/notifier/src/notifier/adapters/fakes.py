"""In-memory stand-ins for the notifier's adapters, for service-layer tests that run in milliseconds.

They keep the behaviour the service layer relies on (dedup threads, the delivery ledger, the
escalation index, digest flags, calendar entries), not PostgreSQL's: the real store is proven by
the integration tests."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from contract_schema.alert import Alert, Tier

from ..domain.calendar import CalendarEntry
from ..domain.digest import DigestItem, DigestKind
from ..domain.state import Escalation, Outcome, Thread, on_alert
from .channels import Outgoing
from .ports import LedgerEntry, StoredAlert


class FakeStore:
    def __init__(self) -> None:
        self.alerts: dict[str, StoredAlert] = {}
        self.threads: dict[str, Thread] = {}
        self.escalations: dict[str, tuple[int, datetime | None]] = {}  # alert -> (next step, next due)
        self.ledger: dict[str, dict[str, Any]] = {}
        self.digest: dict[tuple[str, str], dict[str, Any]] = {}  # (recipient, alert) -> item
        self.digest_runs: dict[tuple[str, DigestKind], str] = {}
        self.calendars: dict[str, dict[str, Any]] = {}

    def tx(self) -> AbstractContextManager[object]:
        return nullcontext()

    def ping(self) -> None:
        return None

    def tick_lock(self) -> AbstractContextManager[bool]:
        return nullcontext(True)  # one process, one ticker: it always leads

    def get_alert(self, alert_id: str) -> StoredAlert | None:
        return self.alerts.get(alert_id)

    def record_alert(self, alert: Alert, *, tier: Tier, rule: str, at: datetime, window: timedelta,
                     escalation: Escalation | None) -> tuple[Outcome, Thread, bool]:
        if (existing := self.alerts.get(alert.alert_id)) is not None:
            return existing.outcome, self.threads[alert.dedup_key], False
        outcome, thread = on_alert(self.threads.get(alert.dedup_key), alert_id=alert.alert_id,
                                   dedup_key=alert.dedup_key, tier=tier, at=at, window=window)
        self.threads[alert.dedup_key] = thread
        self.alerts[alert.alert_id] = StoredAlert(alert, tier, rule, outcome, thread.root_alert_id, at, None, None)
        if escalation is not None and outcome is not Outcome.SUPPRESSED:
            self.escalations[alert.alert_id] = (escalation.next_step, escalation.next_due)
        return outcome, thread, True

    def get_thread(self, dedup_key: str) -> Thread | None:
        return self.threads.get(dedup_key)

    def acknowledge(self, alert_id: str, by: str, at: datetime) -> tuple[StoredAlert | None, bool]:
        stored = self.alerts.get(alert_id)
        if stored is None or stored.acked_at is not None:
            return stored, False
        for other in [a for a in self.alerts.values() if a.thread_root == stored.thread_root or a is stored]:
            if other.acked_at is None:
                self.alerts[other.alert.alert_id] = replace(other, acked_at=at, acked_by=by)
            if other.alert.alert_id in self.escalations:
                self.escalations[other.alert.alert_id] = (self.escalations[other.alert.alert_id][0], None)
        return self.alerts[alert_id], True

    def open_alerts(self, contract_id: str, alert_type_prefix: str) -> list[str]:
        return [a.alert.alert_id for a in sorted(self.alerts.values(), key=lambda a: a.received_at)
                if a.alert.contract_id == contract_id and a.acked_at is None
                and a.alert.alert_type.startswith(alert_type_prefix)]

    def due_escalations(self, now: datetime, limit: int = 500) -> list[tuple[StoredAlert, int]]:
        due = sorted((d, a, step) for a, (step, d) in self.escalations.items()
                     if d is not None and d <= now and self.alerts[a].acked_at is None)
        return [(self.alerts[a], step) for _, a, step in due[:limit]]

    def escalation_fired(self, alert_id: str, next_step: int, next_due: datetime | None) -> None:
        self.escalations[alert_id] = (next_step, next_due)

    def ledger_begin(self, key: str, *, alert_id: str, channel: str, recipient: str, step: str,
                     message_id: str, lease_seconds: float, owner: str = "", contract_id: str | None = None,
                     body: dict[str, Any] | None = None, reclaim_failed: bool = False) -> LedgerEntry:
        now = time.monotonic()
        row = self.ledger.get(key)
        claimed = True
        if row is None:
            row = self.ledger[key] = {"delivery_key": key, "alert_id": alert_id, "channel": channel,
                                      "recipient": recipient, "step": step, "status": "sending",
                                      "message_id": message_id, "attempts": 1, "recorded": False, "detail": "",
                                      "lease_until": now + lease_seconds, "next_attempt_at": now,
                                      "failing_since": None, "contract_id": contract_id, "body": body}
        elif row["status"] == "failed" and reclaim_failed or (
                row["status"] in ("sending", "retrying") and row["lease_until"] <= now
                and row["next_attempt_at"] <= now):
            if row["status"] == "failed":
                row["failing_since"] = None
            row.update(status="sending", attempts=row["attempts"] + 1, lease_until=now + lease_seconds)
        else:
            claimed = False
        failing_for = None if row["failing_since"] is None else now - row["failing_since"]
        return LedgerEntry(row["status"], row["message_id"], row["attempts"], row["recorded"], failing_for, claimed,
                           row["detail"])

    def ledger_finish(self, key: str, status: str, detail: str = "") -> None:
        self.ledger[key].update(status=status, detail=detail[:2000], lease_until=time.monotonic())

    def ledger_retry(self, key: str, delay_seconds: float, detail: str | None) -> None:
        row, now = self.ledger[key], time.monotonic()
        row.update(status="retrying", detail=row["detail"] if detail is None else detail[:2000], lease_until=now,
                   next_attempt_at=now + delay_seconds)
        if row["failing_since"] is None:
            row["failing_since"] = now

    def ledger_resume(self, channel: str) -> int:
        now, resumed = time.monotonic(), 0
        for row in self.ledger.values():
            if row["channel"] == channel and row["status"] == "retrying" and row["next_attempt_at"] > now:
                row["next_attempt_at"], resumed = now, resumed + 1
        return resumed

    def due_deliveries(self, limit: int = 200) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [r for r in self.ledger.values() if r["status"] in ("sending", "retrying") and r["body"] is not None
                and r["next_attempt_at"] <= now and r["lease_until"] <= now][:limit]

    def next_delivery_due(self, channels: list[str]) -> float | None:
        waiting = [max(r["next_attempt_at"], r["lease_until"]) for r in self.ledger.values()
                   if r["status"] in ("sending", "retrying") and r["body"] is not None and r["channel"] in channels]
        return max(0.0, min(waiting) - time.monotonic()) if waiting else None

    def ledger_recorded(self, keys: list[str]) -> None:
        for key in keys:
            self.ledger[key]["recorded"] = True

    def unrecorded(self, older_than: timedelta, limit: int = 500) -> list[dict[str, Any]]:
        rows = [r for r in self.ledger.values() if r["status"] == "sent" and not r["recorded"]]
        return [r | {"contract_id": self.alerts[r["alert_id"]].alert.contract_id if r["alert_id"] in self.alerts
                     else None} for r in rows[:limit]]

    def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        return [r for r in self.ledger.values() if r["alert_id"] == alert_id]

    def add_digest_item(self, recipient: str, alert_id: str, tier: Tier, zone: str, at: datetime) -> None:
        self.digest.setdefault((recipient, alert_id), {"tier": tier, "zone": zone, "added_at": at,
                                                       DigestKind.DAILY: False, DigestKind.WEEKLY: False})

    def _pending(self, item: dict[str, Any], alert_id: str, kind: DigestKind) -> bool:
        return not item[kind] or (item["tier"] is Tier.YELLOW and self.alerts[alert_id].acked_at is None)

    def digest_recipients(self) -> list[tuple[str, str]]:
        return sorted({(r, i["zone"]) for (r, a), i in self.digest.items()
                       if any(self._pending(i, a, k) for k in DigestKind)})

    def last_digest(self, recipient: str, kind: DigestKind) -> str | None:
        return self.digest_runs.get((recipient, kind))

    def digest_items(self, recipient: str, kind: DigestKind, until: datetime) -> list[DigestItem]:
        out = []
        for (r, alert_id), item in sorted(self.digest.items(), key=lambda kv: kv[1]["added_at"]):
            if r == recipient and item["added_at"] <= until and self._pending(item, alert_id, kind):
                stored = self.alerts[alert_id]
                out.append(DigestItem(alert_id=alert_id, contract_id=stored.alert.contract_id, tier=item["tier"],
                                      title=stored.alert.title, what=stored.alert.what,
                                      deadline=stored.alert.deadline, added_at=item["added_at"],
                                      acknowledged=stored.acked_at is not None))
        return out

    def digest_sent(self, recipient: str, kind: DigestKind, period: str, alert_ids: list[str],
                    at: datetime) -> None:
        for alert_id in alert_ids:
            self.digest[(recipient, alert_id)][kind] = True
        self.digest_runs[(recipient, kind)] = period

    def upsert_calendar(self, *, uid: str, token: str, owner_email: str, contract_id: str, dedup_key: str,
                        alert_id: str, summary: str, description: str, deadline: datetime, url: str | None,
                        at: datetime) -> None:
        old = self.calendars.get(uid)
        if old is not None and old["alert_id"] == alert_id:
            return
        self.calendars[uid] = {"token": token, "owner_email": owner_email, "alert_id": alert_id,
                               "entry": CalendarEntry(uid=uid, summary=summary, description=description,
                                                      deadline=deadline, url=url, updated_at=at,
                                                      sequence=old["entry"].sequence + 1 if old else 0)}

    def remove_calendar(self, uid: str) -> None:
        self.calendars.pop(uid, None)

    def calendar(self, token: str, since: datetime) -> tuple[str | None, list[CalendarEntry]]:
        rows = sorted((c for c in self.calendars.values() if c["token"] == token),
                      key=lambda c: c["entry"].deadline)
        if not rows:
            return None, []
        return rows[0]["owner_email"], [c["entry"] for c in rows if c["entry"].deadline >= since]


@dataclass
class FakeChannel:
    """A channel that keeps what it was given; `fail_with` makes every send fail for good."""

    name: str
    kind: str = "email"
    per_recipient: bool = True
    sent: list[tuple[str, Outgoing]] = field(default_factory=list)
    fail_with: Exception | None = None

    @property
    def enabled(self) -> bool:
        return True

    def send(self, message: Outgoing, recipient: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append((recipient, message))
