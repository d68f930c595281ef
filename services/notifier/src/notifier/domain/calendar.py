"""Per-owner iCalendar feed (RFC 5545): one VEVENT with a VALARM per upcoming deadline.

Each event's UID is the alert's condition (its dedup key), so a later alert about the
same condition (a moved deadline, a new stage) replaces the event instead of adding one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from icalendar import Alarm, Calendar, Event

PRODID = "-//contract mesh//notifier//EN"


@dataclass(frozen=True)
class CalendarEntry:
    uid: str
    summary: str
    description: str
    deadline: datetime
    url: str | None
    updated_at: datetime
    sequence: int = 0
    reminder: timedelta = timedelta(days=1)


def feed_token(secret: str, owner_email: str) -> str:
    """The unguessable part of an owner's feed URL: HMAC of the address, stable across restarts."""
    return hmac.new(secret.encode(), owner_email.strip().lower().encode(), hashlib.sha256).hexdigest()[:40]


# Parts of a dedup key that name the step of a condition rather than the thing with the deadline:
# obligation.due-soon:C:due-soon:inst-7:r2 and obligation.overdue:C:overdue:inst-7:r2 are one
# deadline (inst-7); renewal.stage:C:t1:90d and ...:t1:30d are one notice deadline (term 1).
_STEP = re.compile(r"^(r\d+|\d+d|notice-deadline|end-date|due[-_]soon|overdue|escalated|completed|"
                   r"sla[-_]breached|review)$")


def calendar_key(alert_type: str, contract_id: str, condition: tuple[str, ...]) -> str:
    """What one calendar event stands for: the family of the alert, the contract, the subject."""
    family = alert_type.split(".", 1)[0]
    subject = [p for p in condition if not _STEP.match(p)]
    return ":".join([family, contract_id, *subject])


def uid_for(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32] + "@contract-mesh"


def build_calendar(owner: str, entries: list[CalendarEntry], now: datetime) -> bytes:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"Contract deadlines - {owner}")
    cal.add("x-published-ttl", "PT1H")  # clients refresh hourly, so moved deadlines show up
    for entry in sorted(entries, key=lambda e: (e.deadline, e.uid)):
        event = Event()
        event.add("uid", entry.uid)
        event.add("dtstamp", now)
        event.add("last-modified", entry.updated_at)
        event.add("sequence", entry.sequence)
        event.add("dtstart", entry.deadline)
        event.add("dtend", entry.deadline + timedelta(minutes=30))
        event.add("summary", entry.summary)
        event.add("description", entry.description)
        event.add("transp", "TRANSPARENT")
        if entry.url:
            event.add("url", entry.url)
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", f"Deadline: {entry.summary}")
        alarm.add("trigger", -entry.reminder)
        event.add_component(alarm)
        cal.add_component(event)
    return bytes(cal.to_ical())
