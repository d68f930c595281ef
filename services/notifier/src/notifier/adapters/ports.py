"""What the service layer needs of its storage: PostgreSQL (adapters/store.py) in production,
an in-memory fake (adapters/fakes.py) in the service-layer tests. Channels are `channels.Channel`,
the producer is `mesh_common.kafka.EventProducer`."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from contract_schema.alert import Alert, Tier

from ..domain.calendar import CalendarEntry
from ..domain.digest import DigestItem, DigestKind
from ..domain.state import Escalation, Outcome, Thread


@dataclass(frozen=True)
class StoredAlert:
    alert: Alert
    tier: Tier
    rule: str
    outcome: Outcome
    thread_root: str
    received_at: datetime
    acked_at: datetime | None
    acked_by: str | None


@dataclass(frozen=True)
class LedgerEntry:
    status: str
    message_id: str
    attempts: int
    recorded: bool


class AlertStore(Protocol):
    def tx(self) -> AbstractContextManager[object]: ...
    def ping(self) -> None: ...
    def tick_lock(self) -> AbstractContextManager[bool]: ...

    # alerts and dedup threads
    def get_alert(self, alert_id: str) -> StoredAlert | None: ...
    def record_alert(self, alert: Alert, *, tier: Tier, rule: str, at: datetime, window: timedelta,
                     escalation: Escalation | None) -> tuple[Outcome, Thread, bool]: ...
    def get_thread(self, dedup_key: str) -> Thread | None: ...
    def acknowledge(self, alert_id: str, by: str, at: datetime) -> tuple[StoredAlert | None, bool]: ...
    def open_alerts(self, contract_id: str, alert_type_prefix: str) -> list[str]: ...

    # escalation
    def due_escalations(self, now: datetime, limit: int = 500) -> list[tuple[StoredAlert, int]]: ...
    def escalation_fired(self, alert_id: str, next_step: int, next_due: datetime | None) -> None: ...

    # the delivery ledger
    def ledger_begin(self, key: str, *, alert_id: str, channel: str, recipient: str, step: str,
                     message_id: str) -> LedgerEntry: ...
    def ledger_finish(self, key: str, status: str, detail: str = "") -> None: ...
    def ledger_recorded(self, keys: list[str]) -> None: ...
    def unrecorded(self, older_than: timedelta, limit: int = 500) -> list[dict[str, Any]]: ...
    def deliveries(self, alert_id: str) -> list[dict[str, Any]]: ...

    # digests
    def add_digest_item(self, recipient: str, alert_id: str, tier: Tier, zone: str, at: datetime) -> None: ...
    def digest_recipients(self) -> list[tuple[str, str]]: ...
    def last_digest(self, recipient: str, kind: DigestKind) -> str | None: ...
    def digest_items(self, recipient: str, kind: DigestKind, until: datetime) -> list[DigestItem]: ...
    def digest_sent(self, recipient: str, kind: DigestKind, period: str, alert_ids: list[str],
                    at: datetime) -> None: ...

    # calendar feeds
    def upsert_calendar(self, *, uid: str, token: str, owner_email: str, contract_id: str, dedup_key: str,
                        alert_id: str, summary: str, description: str, deadline: datetime, url: str | None,
                        at: datetime) -> None: ...
    def remove_calendar(self, uid: str) -> None: ...
    def calendar(self, token: str, since: datetime) -> tuple[str | None, list[CalendarEntry]]: ...
