"""Digests: when a recipient's daily summary and weekly report are due, in their time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from .rules import DigestSchedule

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class DigestKind(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


def _at(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def last_slot(kind: DigestKind, schedule: DigestSchedule, now: datetime, zone: str) -> datetime:
    """The latest scheduled send time <= now, in the recipient's zone (DST handled by zoneinfo)."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    if kind is DigestKind.DAILY:
        slot = datetime.combine(local.date(), _at(schedule.daily_at), tz)
        return slot if slot <= now else datetime.combine(local.date() - timedelta(days=1), slot.timetz())
    target = WEEKDAYS.index(schedule.weekly_day)
    day: date = local.date() - timedelta(days=(local.weekday() - target) % 7)
    slot = datetime.combine(day, _at(schedule.weekly_at), tz)
    return slot if slot <= now else datetime.combine(day - timedelta(days=7), slot.timetz())


def period_key(kind: DigestKind, slot: datetime) -> str:
    """Names the digest a slot sends: one daily digest per local date, one weekly per ISO week."""
    if kind is DigestKind.DAILY:
        return slot.date().isoformat()
    year, week, _ = slot.date().isocalendar()
    return f"{year}-W{week:02d}"


def due_period(kind: DigestKind, schedule: DigestSchedule, now: datetime, zone: str,
               last_sent: str | None) -> str | None:
    """The period to send now, or None when the latest one was already sent."""
    key = period_key(kind, last_slot(kind, schedule, now, zone))
    return None if last_sent is not None and key <= last_sent else key


@dataclass(frozen=True)
class DigestItem:
    alert_id: str
    contract_id: str
    tier: str
    title: str
    what: str
    deadline: datetime | None
    added_at: datetime
    acknowledged: bool
