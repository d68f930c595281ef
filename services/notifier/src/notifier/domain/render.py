"""Messages that carry the context: deadline and countdown, action, people, amounts, links.

One `Notice` (what to say) rendered four ways: e-mail text + HTML, Slack Block Kit,
a Teams message card and a generic webhook body. Pure functions; no I/O.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contract_schema.alert import Alert, Tier

from .digest import DigestItem, DigestKind

TIER_LABEL = {Tier.RED: "RED - act now", Tier.YELLOW: "YELLOW - act within 48 hours", Tier.GREEN: "GREEN - info"}
TIER_COLOUR = {Tier.RED: "C0392B", Tier.YELLOW: "F1C40F", Tier.GREEN: "27AE60"}


def countdown(deadline: datetime, now: datetime) -> str:
    """'in 3 days 4 hours' / 'in 45 minutes' / 'overdue by 2 days'."""
    left = deadline - now
    past = left < timedelta(0)
    left = abs(left)
    days, rest = divmod(int(left.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = []
    if days:
        parts.append(f"{days} day{'s' if days != 1 else ''}")
    if hours and days < 7:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if not days and not hours:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    text = " ".join(parts)
    return f"overdue by {text}" if past else f"in {text}"


def format_deadline(deadline: datetime, zone: str) -> str:
    local = deadline.astimezone(ZoneInfo(zone))
    return local.strftime("%a %d %b %Y %H:%M ") + (local.tzname() or zone)


def format_amount(alert: Alert) -> str | None:
    if alert.amount_at_stake is None:
        return None
    return f"{alert.amount_at_stake:,.2f} {alert.currency or ''}".strip()


@dataclass(frozen=True)
class Notice:
    alert: Alert
    tier: Tier
    required_action: str
    now: datetime
    timezone: str = "UTC"
    responsible: tuple[str, ...] = ()  # "Name <email> (role)"
    ack_url: str | None = None
    calendar_url: str | None = None
    banner: str | None = None  # e.g. "Escalated: not acknowledged within 24h"
    thread_note: str | None = None  # e.g. "2 similar alerts suppressed"
    extra_links: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def subject(self) -> str:
        prefix = f"[{self.tier.value.upper()}]"
        if self.banner:
            prefix += " [ESCALATED]"
        due = f" - due {countdown(self.alert.deadline, self.now)}" if self.alert.deadline else ""
        return f"{prefix} {self.alert.title} ({self.alert.contract_id}){due}"

    def facts(self) -> list[tuple[str, str]]:
        a = self.alert
        rows = [("Tier", TIER_LABEL[self.tier]), ("Contract", a.contract_id), ("What", a.what)]
        if a.why:
            rows.append(("Why", a.why))
        if a.deadline:
            rows.append(("Deadline", f"{format_deadline(a.deadline, self.timezone)} "
                                     f"({countdown(a.deadline, self.now)})"))
        if self.required_action:
            rows.append(("Required action", self.required_action))
        if self.responsible:
            rows.append(("Responsible", "; ".join(self.responsible)))
        if amount := format_amount(a):
            rows.append(("Amount at stake", amount))
        if self.thread_note:
            rows.append(("Thread", self.thread_note))
        rows.append(("Source", f"{a.source_service}" + (f" event {a.source_event_id}" if a.source_event_id else "")))
        rows.append(("Alert id", a.alert_id))
        return rows

    def links(self) -> list[tuple[str, str]]:
        out = [(link.title, link.url) for link in self.alert.links] + list(self.extra_links)
        if self.ack_url:
            out.append(("Acknowledge", self.ack_url))
        if self.calendar_url:
            out.append(("Deadlines calendar feed", self.calendar_url))
        return out


def responsible_line(name: str, email: str, role: str) -> str:
    return f"{name} <{email}> ({role})"


def email_text(n: Notice) -> str:
    lines = [n.banner, ""] if n.banner else []
    lines += [n.alert.title, "=" * len(n.alert.title), ""]
    lines += [f"{k}: {v}" for k, v in n.facts()]
    links = n.links()
    if links:
        lines += ["", "Links:"] + [f"  {title}: {url}" for title, url in links]
    return "\n".join(lines) + "\n"


def email_html(n: Notice) -> str:
    e = html.escape
    rows = "".join(f"<tr><th align='left' style='padding-right:12px'>{e(k)}</th><td>{e(v)}</td></tr>"
                   for k, v in n.facts())
    links = "".join(f"<li><a href='{e(url, quote=True)}'>{e(title)}</a></li>" for title, url in n.links())
    banner = f"<p style='color:#{TIER_COLOUR[Tier.RED]}'><b>{e(n.banner)}</b></p>" if n.banner else ""
    return (f"<html><body>{banner}<h2 style='border-left:6px solid #{TIER_COLOUR[n.tier]};padding-left:8px'>"
            f"{e(n.alert.title)}</h2><table>{rows}</table>"
            f"{f'<ul>{links}</ul>' if links else ''}</body></html>")


def slack_payload(n: Notice) -> dict[str, Any]:
    """Slack Block Kit message for an incoming webhook (text is the notification fallback)."""
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in n.facts() if k not in ("What", "Alert id")]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": n.subject[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": n.alert.what[:3000]}},
    ]
    for i in range(0, len(fields), 10):  # Slack allows 10 fields per section
        blocks.append({"type": "section", "fields": fields[i:i + 10]})
    buttons = [{"type": "button", "text": {"type": "plain_text", "text": title[:75]}, "url": url}
               for title, url in n.links()[:5]]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert {n.alert.alert_id}"}]})
    return {"text": n.subject, "blocks": blocks}


def teams_payload(n: Notice) -> dict[str, Any]:
    """Microsoft Teams incoming webhook (classic connector or Workflows): an Adaptive Card message."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {"type": "TextBlock", "text": n.subject, "weight": "Bolder", "size": "Medium", "wrap": True,
             "color": "Attention" if n.tier is Tier.RED else "Warning" if n.tier is Tier.YELLOW else "Good"},
            *([{"type": "TextBlock", "text": n.banner, "wrap": True, "color": "Attention"}] if n.banner else []),
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in n.facts()]},
        ],
        "actions": [{"type": "Action.OpenUrl", "title": title, "url": url} for title, url in n.links()],
    }
    return {"type": "message", "summary": n.subject,
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}


def webhook_payload(n: Notice) -> dict[str, Any]:
    """Generic webhook body: the alert itself plus the notifier's decision."""
    return {
        "alert": n.alert.model_dump(mode="json"),
        "tier": n.tier.value,
        "required_action": n.required_action,
        "escalation": n.banner,
        "responsible": list(n.responsible),
        "countdown": countdown(n.alert.deadline, n.now) if n.alert.deadline else None,
        "links": [{"title": t, "url": u} for t, u in n.links()],
    }


@dataclass(frozen=True)
class DigestMessage:
    subject: str
    text: str
    html: str


def render_digest(kind: DigestKind, period: str, recipient: str, zone: str, items: list[DigestItem],
                  now: datetime) -> DigestMessage:
    title = ("Daily summary" if kind is DigestKind.DAILY else "Weekly report") + f" {period}"
    open_yellow = [i for i in items if i.tier == Tier.YELLOW.value and not i.acknowledged]
    info = [i for i in items if i not in open_yellow]

    def line(i: DigestItem) -> str:
        due = (f" - due {format_deadline(i.deadline, zone)} ({countdown(i.deadline, now)})"
               if i.deadline else "")
        return f"[{i.tier}] {i.contract_id}: {i.title}{due} - {i.what}"

    sections = [("Waiting for you (yellow, not acknowledged)", open_yellow), ("For information", info)]
    text = [f"{title} for {recipient}", ""]
    body = [f"<h2>{html.escape(title)}</h2>"]
    for heading, group in sections:
        if not group:
            continue
        text += [heading + ":"] + [f"  - {line(i)}" for i in group] + [""]
        body.append(f"<h3>{html.escape(heading)}</h3><ul>"
                    + "".join(f"<li>{html.escape(line(i))}</li>" for i in group) + "</ul>")
    text.append(f"{len(items)} item(s).")
    return DigestMessage(subject=f"[DIGEST] {title} ({len(items)} items)", text="\n".join(text) + "\n",
                         html="<html><body>" + "".join(body) + "</body></html>")
