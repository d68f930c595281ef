from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar
from notifier.domain.calendar import CalendarEntry, build_calendar, calendar_key, feed_token, uid_for
from notifier.domain.digest import DigestItem, DigestKind, due_period, last_slot
from notifier.domain.links import ack_url, check_ack_signature
from notifier.domain.render import (
    Notice,
    countdown,
    email_html,
    email_text,
    render_digest,
    slack_payload,
    teams_payload,
    webhook_payload,
)
from notifier.domain.rules import DigestSchedule

from contract_schema.alert import Tier

from .helpers import T0, make_alert

SCHEDULE = DigestSchedule(daily_at="08:00", weekly_day="monday", weekly_at="09:00")


def test_daily_slot_is_in_the_recipients_time_zone() -> None:
    # 10:00 UTC on Monday 2 March is 19:00 in Tokyo, 02:00 in Los Angeles
    tokyo = last_slot(DigestKind.DAILY, SCHEDULE, T0, "Asia/Tokyo")
    assert tokyo == datetime(2026, 3, 2, 8, 0, tzinfo=tokyo.tzinfo) and tokyo.utcoffset() == timedelta(hours=9)
    la = last_slot(DigestKind.DAILY, SCHEDULE, T0, "America/Los_Angeles")
    assert la.date().isoformat() == "2026-03-01"  # today's 08:00 has not come yet in LA


def test_each_period_is_due_once() -> None:
    assert due_period(DigestKind.DAILY, SCHEDULE, T0, "UTC", None) == "2026-03-02"
    assert due_period(DigestKind.DAILY, SCHEDULE, T0, "UTC", "2026-03-02") is None
    assert due_period(DigestKind.DAILY, SCHEDULE, T0 + timedelta(days=1), "UTC", "2026-03-02") == "2026-03-03"
    assert due_period(DigestKind.WEEKLY, SCHEDULE, T0, "UTC", None) == "2026-W10"
    assert due_period(DigestKind.WEEKLY, SCHEDULE, T0 + timedelta(days=3), "UTC", "2026-W10") is None
    assert due_period(DigestKind.WEEKLY, SCHEDULE, T0 + timedelta(days=7), "UTC", "2026-W10") == "2026-W11"


def test_countdown() -> None:
    assert countdown(T0 + timedelta(days=3, hours=4), T0) == "in 3 days 4 hours"
    assert countdown(T0 + timedelta(minutes=45), T0) == "in 45 minutes"
    assert countdown(T0 - timedelta(days=2), T0) == "overdue by 2 days"


def test_messages_carry_deadline_countdown_action_people_amount_and_links() -> None:
    alert = make_alert("sla.breached", deadline=T0 + timedelta(days=2))
    n = Notice(alert=alert, tier=Tier.RED, required_action="Claim the credit", now=T0, timezone="Europe/Berlin",
               responsible=("Olivia Owner <olivia@example.com> (owner)",), ack_url="https://n/ack?sig=x")
    text = email_text(n)
    for expected in ("Wed 04 Mar 2026 11:00 CET", "in 2 days", "Claim the credit", "Olivia Owner",
                     "12,500.50 EUR", "https://clm.example/contracts/C-1", "https://n/ack?sig=x"):
        assert expected in text
    assert "Claim the credit" in email_html(n) and "<table>" in email_html(n)
    assert n.subject.startswith("[RED]")
    slack = slack_payload(n)
    assert slack["blocks"][0]["type"] == "header"
    assert any(b["type"] == "actions" for b in slack["blocks"])
    teams = teams_payload(n)
    card = teams["attachments"][0]["content"]
    assert teams["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert {"title": "Required action", "value": "Claim the credit"} in card["body"][-1]["facts"]
    assert {"type": "Action.OpenUrl", "title": "Acknowledge", "url": "https://n/ack?sig=x"} in card["actions"]
    assert webhook_payload(n)["alert"]["alert_id"] == alert.alert_id


def test_digest_separates_open_yellows_from_information() -> None:
    items = [DigestItem("a1", "C-1", "green", "Done", "Milestone done", None, T0, False),
             DigestItem("a2", "C-2", "yellow", "Due soon", "Report due", T0 + timedelta(days=2), T0, False)]
    msg = render_digest(DigestKind.DAILY, "2026-03-02", "x@example.com", "UTC", items, T0)
    assert msg.text.index("Waiting for you") < msg.text.index("Report due") < msg.text.index("For information")
    assert "Milestone done" in msg.text and "2 items" in msg.subject


def test_calendar_feed_parses_and_has_one_event_with_alarm_per_deadline() -> None:
    entries = [CalendarEntry(uid_for("renewal.stage:C-1:30d"), "Notice deadline C-1", "Decide", T0 + timedelta(days=30),
                             "https://clm/c1", T0),
               CalendarEntry(uid_for("obligation.due_soon:C-2:ob1"), "Report due C-2", "Send it",
                             T0 + timedelta(days=3), None, T0, sequence=2)]
    cal = icalendar.Calendar.from_ical(build_calendar("olivia@example.com", entries, T0))
    events = list(cal.walk("VEVENT"))
    assert [str(e["SUMMARY"]) for e in events] == ["Report due C-2", "Notice deadline C-1"]
    assert events[0].decoded("DTSTART") == T0 + timedelta(days=3)
    assert all(len(list(e.walk("VALARM"))) == 1 for e in events)
    assert len({str(e["UID"]) for e in events}) == 2


def test_one_calendar_event_per_deadline_whatever_step_the_alert_is_at() -> None:
    due = calendar_key("obligation.due-soon", "C-1", ("due-soon", "inst-7", "r2"))
    assert due == calendar_key("obligation.overdue", "C-1", ("overdue", "inst-7", "r2"))
    assert due == calendar_key("obligation.completed", "C-1", ("completed", "inst-7"))
    assert due != calendar_key("obligation.due-soon", "C-1", ("due-soon", "inst-8", "r1"))
    assert calendar_key("renewal.stage", "C-1", ("t1", "120d")) == calendar_key("renewal.stage", "C-1", ("t1", "30d"))
    assert calendar_key("renewal.stage", "C-1", ("t1", "30d")) != calendar_key("renewal.stage", "C-1", ("t2", "30d"))


def test_feed_tokens_and_ack_links_are_hmacs() -> None:
    assert feed_token("s", "A@x.com") == feed_token("s", "a@x.com") != feed_token("t", "a@x.com")
    url = ack_url("http://n", "secret", "a-1", 2_000_000_000)
    sig = url.split("sig=")[1]
    assert check_ack_signature("secret", "a-1", 2_000_000_000, sig, now=1_900_000_000) is None
    assert "does not match" in (check_ack_signature("secret", "a-2", 2_000_000_000, sig, 1_900_000_000) or "")
    assert "expired" in (check_ack_signature("secret", "a-1", 2_000_000_000, sig, 2_000_000_001) or "")
    assert datetime.fromtimestamp(2_000_000_000, UTC).year == 2033
