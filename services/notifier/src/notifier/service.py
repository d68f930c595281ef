"""The notifier's service layer: applies the pure rules to alerts and drives the adapters.

HANDLERS (at the end) says what happens on each event type:
handle_alert (consumer thread): decide -> deduplicate -> store -> deliver -> record;
renewal_decided: acknowledge the contract's open renewal alerts.
tick (ticker thread, on every clock advance): escalate what is due, send due digests.
acknowledge (HTTP): stop escalation.

Every message goes out through the delivery ledger (delivery.py: at most once per alert, channel,
recipient and step; delayed by an outage, never dropped), mixed into `Notifier`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter

from contract_schema.alert import Alert, NotificationKind, Tier
from contract_schema.renewal import RenewalDecision
from mesh_common.clock import Clock
from mesh_common.kafka import EventProducer

from .adapters.channels import Channel, Outgoing
from .adapters.ports import AlertStore, StoredAlert
from .delivery import Delivery, message_id
from .domain import render
from .domain.calendar import calendar_key, feed_token, uid_for
from .domain.digest import DigestKind, due_period, last_slot
from .domain.links import Links
from .domain.rules import Decision, Recipient, RulesConfig, condition_of, decide, resolve
from .domain.state import Escalation, Outcome
from .outage import HELD, SENT, OutagePolicy

log = logging.getLogger(__name__)

SUPPRESSED = Counter("notifier_alerts_suppressed_total", "Alerts folded into an open thread by dedup", ["tier"])
ALERTS = Counter("notifier_alerts_total", "Alerts handled by tier and outcome", ["tier", "outcome"])
MIN_TICK_GAP = 0.5  # seconds: a delivery still due right after a tick (more than one batch) waits this long


class Notifier(Delivery):
    def __init__(self, *, rules: RulesConfig, store: AlertStore, channels: Mapping[str, Channel],
                 producer: EventProducer,
                 clock: Clock, links: Links, alerts_topic: str, notifications_topic: str,
                 outage: OutagePolicy | None = None) -> None:
        self.rules, self.store, self.channels, self.producer = rules, store, channels, producer
        self.clock, self.links = clock, links
        self.alerts_topic, self.notifications_topic = alerts_topic, notifications_topic
        self.outage = outage or OutagePolicy()
        self._local = threading.local()
        self._healthy: set[str] = set()  # channels whose last send worked (unknown after a start)
        # Asks the ticker to run within this many seconds (bootstrap wires Ticker.wake_within): a delivery
        # delayed by an outage, or held by a sender that may have died, is due at a wall-clock time, which
        # must not wait for the tick interval or for a clock advance that may never come.
        self.wake: Callable[[float], None] = lambda _seconds: None
        self._started = False  # the first tick of this process has run

    # --- alerts -----------------------------------------------------------------------------

    def handle_alert(self, alert: Alert) -> Outcome:
        try:
            return self._handle_alert(alert)
        finally:
            self.flush_records()

    def _handle_alert(self, alert: Alert) -> Outcome:
        stored = self.store.get_alert(alert.alert_id)
        at = stored.received_at if stored else self.clock.now()
        # A redelivered alert is decided again at its first arrival time: the same decision.
        decision = decide(self.rules, alert, at)
        escalation = (Escalation(alert.alert_id, at, decision.escalation)
                      if decision.escalation and decision.immediate else None)
        roles = decision.recipients
        recipients = resolve(self.rules, alert, roles)
        # One transaction (one commit to wait for) for everything the alert changes before delivery.
        with self.store.tx():
            outcome, thread, is_new = self.store.record_alert(alert, tier=decision.tier, rule=decision.rule, at=at,
                                                               window=decision.dedup_window, escalation=escalation)
            self._update_calendar(alert, at)
            if outcome is not Outcome.SUPPRESSED and (
                    decision.tier is Tier.GREEN or (decision.tier is Tier.YELLOW and decision.immediate)):
                # Greens only live in digests; unacknowledged yellows roll into them too.
                for r in recipients:
                    self.store.add_digest_item(r.address, alert.alert_id, decision.tier, r.timezone, at)
        if is_new:
            ALERTS.labels(decision.tier.value, outcome.value).inc()
        if outcome is Outcome.SUPPRESSED:
            if is_new:
                SUPPRESSED.labels(decision.tier.value).inc()
            self.record(alert.alert_id, alert.contract_id, NotificationKind.SUPPRESSED, None, None,
                        f"same condition as alert {thread.root_alert_id} within {decision.dedup_window}; "
                        f"threaded into it; suppressed so far: {thread.suppressed}",
                        key=f"{alert.alert_id}|suppressed")
            return outcome
        if decision.immediate:
            root = thread.root_alert_id if outcome is Outcome.THREADED else None
            self.deliver_all(alert, decision, recipients, step="0", now=at, thread_root=root)
        return outcome

    def _update_calendar(self, alert: Alert, at: datetime) -> None:
        """Keep the owner's feed current: one event per deadline, replaced by UID, removed when done."""
        uid = uid_for(calendar_key(alert.alert_type, alert.contract_id, condition_of(alert)))
        if alert.alert_type.endswith(".completed"):
            self.store.remove_calendar(uid)
            return
        if alert.deadline is None or alert.owner is None:
            return
        owner = alert.owner.email.lower()
        description = "\n".join(filter(None, [alert.what, f"Action: {alert.required_action}"
                                              if alert.required_action else "", alert.why]))
        self.store.upsert_calendar(
            uid=uid, token=feed_token(self.links.calendar_secret, owner), owner_email=owner,
            contract_id=alert.contract_id, dedup_key=alert.dedup_key, alert_id=alert.alert_id,
            summary=f"{alert.title} ({alert.contract_id})", description=description, deadline=alert.deadline,
            url=alert.links[0].url if alert.links else None, at=at)

    def notice(self, alert: Alert, decision_tier: Tier, required_action: str, recipient: Recipient | None,
               responsible: tuple[Recipient, ...], now: datetime, banner: str | None = None,
               thread_note: str | None = None) -> render.Notice:
        return render.Notice(
            alert=alert, tier=decision_tier, required_action=required_action, now=now,
            timezone=recipient.timezone if recipient else self.rules.default_timezone,
            responsible=tuple(render.responsible_line(r.name, r.address, r.role) for r in responsible),
            ack_url=self.links.ack(alert.alert_id, now) if decision_tier is not Tier.GREEN else None,
            calendar_url=self.links.calendar(alert.owner.email) if alert.owner and alert.deadline else None,
            banner=banner, thread_note=thread_note)

    def deliver_all(self, alert: Alert, decision: Decision, recipients: tuple[Recipient, ...], *, step: str,
                    now: datetime, banner: str | None = None, thread_root: str | None = None,
                    thread_note: str | None = None) -> None:
        """Deliver on every channel of the rule; for red, fall back channel by channel on failure."""
        responsible = resolve(self.rules, alert, ("owner", "backup")) + recipients
        responsible = tuple({r.address.lower(): r for r in responsible}.values())
        failed = False
        for name in decision.channels:
            if name == "digest":
                continue
            ok = self._deliver_channel(name, alert, decision, recipients, responsible, step, now, banner,
                                       thread_root, thread_note)
            failed = failed or not ok  # failed for good or delayed by an outage: red must get through now
        if failed and decision.tier is Tier.RED:
            for name in decision.fallback_channels:
                if self._deliver_channel(name, alert, decision, recipients, responsible, f"{step}-fallback", now,
                                         banner, thread_root, thread_note):
                    break

    def _deliver_channel(self, name: str, alert: Alert, decision: Decision, recipients: tuple[Recipient, ...],
                         responsible: tuple[Recipient, ...], step: str, now: datetime, banner: str | None,
                         thread_root: str | None, thread_note: str | None = None) -> bool:
        channel = self.channels.get(name)
        if channel is None or not channel.enabled:
            log.info("channel %s is not configured; skipping it for alert %s", name, alert.alert_id)
            return False
        targets: list[Recipient | None] = list(recipients) if channel.per_recipient else [None]
        ok = True
        for r in targets:
            n = self.notice(alert, decision.tier, decision.required_action, r, responsible, now, banner,
                            thread_note)
            payload = (render.slack_payload(n) if channel.kind == "slack" else render.teams_payload(n)
                       if channel.kind == "teams" else render.webhook_payload(n))
            to = r.address if r else f"#{name}"
            # Updates and escalations reply to the thread's first message to this recipient.
            in_reply_to = message_id(f"{thread_root}|{name}|{to}|0") if thread_root else None
            body = Outgoing(subject=n.subject, text=render.email_text(n), html=render.email_html(n),
                            payload=payload, message_id="", in_reply_to=in_reply_to)
            outcome = self.deliver(alert.alert_id, alert.contract_id, channel, to, step, body, alert=alert,
                                   retry_failed=step == "0" or step == "0-fallback")
            ok = outcome in (SENT, HELD) and ok  # HELD: another replica is sending it
        return ok

    # --- acknowledgement --------------------------------------------------------------------

    def acknowledge(self, alert_id: str, by: str) -> StoredAlert | None:
        now = self.clock.now()
        stored, changed = self.store.acknowledge(alert_id, by, now)
        if stored is not None and changed:
            self.record(alert_id, stored.alert.contract_id, NotificationKind.ACKNOWLEDGED, None, by,
                        f"acknowledged by {by}", key=f"{alert_id}|ack")
            self.flush_records()
        return stored

    def renewal_decided(self, decision: RenewalDecision) -> list[str]:
        """A decision recorded in the CRM answers every open renewal alert of the contract: they are
        acknowledged (by the decision), so none of them escalates further. Idempotent."""
        by = f"crm-decision:{decision.decision.value}"
        acked = [a for a in self.store.open_alerts(decision.contract_id, "renewal.")
                 if self.acknowledge(a, by) is not None]
        return acked

    # --- time passing -----------------------------------------------------------------------

    def tick(self) -> float | None:
        """Escalations, digests, delayed deliveries and unconfirmed records. Returns the seconds until the next
        waiting delivery is due (None: nothing waits, or another replica ticks), so the ticker runs again then."""
        now = self.clock.now()
        with self.store.tick_lock() as mine:
            if not mine:
                return None  # another replica is ticking
            try:
                self.retry_due()
                self.escalate(now)
                self.send_digests(now)
                # A record an earlier process left unconfirmed (it was killed, or the broker was away) is not
                # in flight in this one: produce it again at once, not a minute after its send. Another
                # replica's record still in flight may go twice, with the same event id (a duplicate by id).
                self.republish_unrecorded(timedelta(0) if not self._started else timedelta(minutes=1))
                self._started = True
            finally:
                self.flush_records()
            due = self.store.next_delivery_due([n for n, c in self.channels.items() if c.enabled])
        return None if due is None else max(MIN_TICK_GAP, due)

    def escalate(self, now: datetime) -> int:
        fired = 0
        for stored, next_step in self.store.due_escalations(now):
            alert = stored.alert
            decision = decide(self.rules, alert, stored.received_at)
            state = Escalation(alert.alert_id, stored.received_at, decision.escalation, next_step)
            for index, step in state.due(now):
                recipients = resolve(self.rules, alert, step.to)
                hours = int(step.after.total_seconds() // 3600)
                banner = (f"Escalated (step {index + 1}): not acknowledged within {hours}h of "
                          f"{stored.received_at:%Y-%m-%d %H:%M %Z}")
                thread = self.store.get_thread(alert.dedup_key)
                note = (f"{thread.suppressed} repeat(s) of this condition suppressed since it was raised"
                        if thread and thread.root_alert_id == stored.thread_root and thread.suppressed else None)
                self.deliver_all(alert, decision, recipients, step=f"esc{index + 1}", now=now, banner=banner,
                                 thread_root=stored.thread_root, thread_note=note)
                state = state.fired(index)
                fired += 1
            self.store.escalation_fired(alert.alert_id, state.next_step, state.next_due)
        return fired

    def send_digests(self, now: datetime) -> int:
        schedule = self.rules.digest
        channel = self.channels.get(schedule.channel)
        if channel is None or not channel.enabled:
            return 0
        sent = 0
        for recipient, zone in self.store.digest_recipients():
            for kind in (DigestKind.DAILY, DigestKind.WEEKLY):
                period = due_period(kind, schedule, now, zone, self.store.last_digest(recipient, kind))
                if period is None:
                    continue
                slot = last_slot(kind, schedule, now, zone)
                items = self.store.digest_items(recipient, kind, slot)
                if not items:
                    continue
                message = render.render_digest(kind, period, recipient, zone, items, now)
                digest_id = f"digest:{kind.value}:{period}:{recipient}"
                body = Outgoing(subject=message.subject, text=message.text, html=message.html,
                                payload={"digest": kind.value, "period": period, "recipient": recipient,
                                         "items": [i.alert_id for i in items], "text": message.text},
                                message_id="")
                if self.deliver(digest_id, None, channel, recipient if channel.per_recipient else f"#{channel.name}",
                                "0", body) == SENT:
                    self.store.digest_sent(recipient, kind, period, [i.alert_id for i in items], now)
                    sent += 1
        return sent


# What happens on each event type the notifier consumes, in one place.
HANDLERS: Mapping[type, Callable[[Notifier, Any], object]] = {
    Alert: Notifier.handle_alert,
    RenewalDecision: Notifier.renewal_decided,  # stops the contract's renewal escalations
}


def handle(notifier: Notifier, event: object) -> object:
    """Run the event's handler; an event of another type is bad data (the consumer dead-letters it)."""
    handler = HANDLERS.get(type(event))
    if handler is None:
        expected = " or ".join(t.__name__ for t in HANDLERS)
        raise ValueError(f"expected {expected}, got {type(event).__name__}")
    return handler(notifier, event)
