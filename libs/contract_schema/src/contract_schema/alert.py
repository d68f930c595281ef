"""Alerts raised by any service and the notifier's delivery log; the shared clock."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field

from .base import Event, Identifier, Link, Person, Timestamp
from .money import Amount, Currency


class Tier(StrEnum):
    RED = "red"  # act now
    YELLOW = "yellow"  # act within 48 hours
    GREEN = "green"  # information, goes into digests


class Alert(Event):
    alert_id: Identifier
    tenant_id: Identifier
    contract_id: Identifier
    alert_type: Annotated[str, Field(pattern=r"^[a-z0-9_.-]+$", description="e.g. invoice.overbilled")]
    tier: Tier
    title: str
    what: str
    why: str = ""
    required_action: str = ""
    deadline: Timestamp | None = None
    owner: Person | None = None
    backup_owner: Person | None = None
    amount_at_stake: Amount | None = None
    currency: Currency | None = None
    links: tuple[Link, ...] = ()
    dedup_key: str = Field(description="same condition for the same contract, e.g. type:contract:stage")
    source_service: str
    source_event_id: str | None = None
    raised_at: Timestamp


class NotificationKind(StrEnum):
    DELIVERED = "delivered"
    SUPPRESSED = "suppressed"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    DIGESTED = "digested"


class NotificationRecorded(Event):
    key_field: ClassVar[str] = "alert_id"

    notification_id: Identifier
    alert_id: Identifier
    contract_id: str | None = None
    kind: NotificationKind
    channel: str | None = None
    recipient: str | None = None
    detail: str = ""
    at: Timestamp


class ClockAdvanced(Event):
    """Moves the shared clock of every service forward (tests and demos); never backwards."""

    key_field: ClassVar[str] = "clock_id"

    clock_id: str = "mesh"
    now: Timestamp
