"""The notifier's service layer: applies the pure rules to alerts and drives the adapters.

HANDLERS (at the end) says what happens on each event type:
handle_alert (consumer thread): decide -> deduplicate -> store -> deliver -> record;
renewal_decided: acknowledge the contract's open renewal alerts.
tick (ticker thread, on every clock advance): escalate what is due, send due digests.
acknowledge (HTTP): stop escalation.

Idempotent delivery: every (alert, channel, recipient, step) has a ledger row, claimed
'sending' with a lease before the send and 'sent' after it, and a Message-ID derived from that
key. A redelivered alert, a second replica or a restart finds 'sent' and sends nothing again, or
finds the claim of a replica still sending and leaves it to that one. Only a claim whose lease ran
out (its sender died) is taken over, and sent again with the same Message-ID: the one remaining
duplicate window is a send the server accepted whose sender died (or timed out waiting for the
answer) before the 'sent' write. A channel outage delays a delivery (outage.py), never drops it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter

from contract_schema.alert import Alert, NotificationKind, NotificationRecorded, Tier
from contract_schema.codec import encode
from contract_schema.renewal import RenewalDecision
from mesh_common.clock import Clock
from mesh_common.delivery import CircuitOpen, DeliveryError
from mesh_common.kafka import EventProducer, produce_dead_letter, produce_event

from .adapters.channels import Channel, Outgoing
from .adapters.ports import AlertStore, LedgerEntry, StoredAlert
from .domain import render
from .domain.calendar import calendar_key, feed_token, uid_for
from .domain.digest import DigestKind, due_period, last_slot
from .domain.links import Links
from .domain.rules import Decision, Recipient, RulesConfig, condition_of, decide, resolve
from .domain.state import Escalation, Outcome
from .outage import DELAYED, FAILED, HELD, SENT, OutagePolicy, dump_body, load_body, next_try_in
from .settings import SERVICE, SOURCE

log = logging.getLogger(__name__)

NOTIFICATIONS = Counter("notifier_notifications_total", "Notifications by kind and channel", ["kind", "channel"])
SUPPRESSED = Counter("notifier_alerts_suppressed_total", "Alerts folded into an open thread by dedup", ["tier"])
ALERTS = Counter("notifier_alerts_total", "Alerts handled by tier and outcome", ["tier", "outcome"])
MIN_TICK_GAP = 0.5  # seconds: a delivery still due right after a tick (more than one batch) waits this long
_NS = uuid.UUID("6f1c3a52-5d0e-4a8c-9c51-6e6f74696672")


def message_id(delivery_key: str) -> str:
    return f"<{hashlib.sha256(delivery_key.encode()).hexdigest()[:32]}@notifier.contract-mesh>"


class Notifier:
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

    def deliver(self, alert_id: str, contract_id: str | None, channel: Channel, recipient: str, step: str,
                body: Outgoing, alert: Alert | None = None, retry_failed: bool = False) -> str:
        """Send one message at most once per (alert, channel, recipient, step). Returns SENT, DELAYED (an
        outage: the ticker tries again), HELD (another replica holds the claim) or FAILED (for good).

        A delivery that failed for good is tried again only when its alert comes in again (a replay
        from the DLQ after the channel is fixed), never by ticks, so a dead endpoint is not hammered.
        """
        key = f"{alert_id}|{channel.name}|{recipient}|{step}"
        entry = self.store.ledger_begin(key, alert_id=alert_id, channel=channel.name, recipient=recipient,
                                        step=step, message_id=message_id(key), lease_seconds=self.outage.lease_seconds,
                                        owner=self.outage.owner, contract_id=contract_id, body=dump_body(body),
                                        reclaim_failed=retry_failed and alert is not None)
        return self._attempt(key, entry, alert_id, contract_id, channel, recipient, step, body, alert)

    def _attempt(self, key: str, entry: LedgerEntry, alert_id: str, contract_id: str | None, channel: Channel,
                 recipient: str, step: str, body: Outgoing, alert: Alert | None) -> str:
        if not entry.claimed:
            if entry.status == "sent":
                if not entry.recorded:
                    self._record_delivery(key, alert_id, contract_id, channel.name, recipient, step)
                return SENT
            if entry.status == "sending":
                log.info("delivery %s is claimed by another sender; leaving it to that one", key)
                self.wake(self.outage.lease_seconds)  # its lease ends by then: taken over if its sender died
                return HELD
            return FAILED if entry.status == "failed" else DELAYED
        if entry.attempts > 1 and entry.failing_for is None:
            log.warning("taking over delivery %s whose sender died before confirming it; same Message-ID %s",
                        key, entry.message_id)
        outgoing = Outgoing(subject=body.subject, text=body.text, html=body.html, payload=body.payload,
                            message_id=entry.message_id, in_reply_to=body.in_reply_to)
        try:
            channel.send(outgoing, recipient)
        except DeliveryError as exc:
            self._healthy.discard(channel.name)
            failing_for = entry.failing_for or 0.0
            if not exc.permanent and failing_for < self.outage.give_up_seconds:
                delay = next_try_in(self.outage, channel, exc, entry.attempts)
                self.store.ledger_retry(key, delay, None if isinstance(exc, CircuitOpen) else str(exc))
                log.warning("delivery %s delayed by %.0f s (failing for %.0f s): %s", key, delay, failing_for, exc)
                self.wake(delay)
                return DELAYED
            last = f"; last error: {entry.detail}" if isinstance(exc, CircuitOpen) and entry.detail else ""
            reason = (str(exc) if exc.permanent
                      else f"{exc}{last} (still failing after {failing_for / 3600:.2f} h of retries)")
            self.store.ledger_finish(key, "failed", reason)
            log.warning("delivery %s failed for good: %s", key, reason)
            self.record(alert_id, contract_id, NotificationKind.FAILED, channel.name, recipient,
                        f"step {step}: {reason}", key=f"{key}|failed")
            self._dead_letter(alert, alert_id, f"delivery to {channel.name} {recipient} failed (step {step}): {reason}")
            return FAILED
        self.store.ledger_finish(key, "sent")
        self._record_delivery(key, alert_id, contract_id, channel.name, recipient, step)
        if channel.name not in self._healthy:  # it answers again: what waits for it goes now
            self._healthy.add(channel.name)
            if resumed := self.store.ledger_resume(channel.name):
                log.info("channel %s answers again: %d waiting deliveries resumed", channel.name, resumed)
        return SENT

    def retry_due(self) -> int:
        """Send what an outage delayed, and take over claims whose sender died: one replica (the tick lock)."""
        tried = 0
        for row in self.store.due_deliveries():
            channel = self.channels.get(row["channel"])
            if channel is None or not channel.enabled:
                continue
            key, alert_id = row["delivery_key"], row["alert_id"]
            stored = None if alert_id.startswith("digest:") else self.store.get_alert(alert_id)
            entry = self.store.ledger_begin(key, alert_id=alert_id, channel=channel.name, recipient=row["recipient"],
                                            step=row["step"], message_id=row["message_id"],
                                            lease_seconds=self.outage.lease_seconds, owner=self.outage.owner,
                                            contract_id=row["contract_id"])
            self._attempt(key, entry, alert_id, row["contract_id"], channel, row["recipient"], row["step"],
                          load_body(row["body"]), stored.alert if stored else None)
            tried += 1
        return tried

    def _record_delivery(self, key: str, alert_id: str, contract_id: str | None, channel: str, recipient: str,
                         step: str) -> None:
        kind = (NotificationKind.DIGESTED if alert_id.startswith("digest:") else
                NotificationKind.ESCALATED if step.startswith("esc") else NotificationKind.DELIVERED)
        self.record(alert_id, contract_id, kind, channel, recipient, f"step {step}", key=key)
        self._unflushed().append(key)

    def _unflushed(self) -> list[str]:
        pending: list[str] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = []
        return pending

    def flush_records(self) -> None:
        """Make this thread's NotificationRecorded events durable, then mark their deliveries recorded.

        Once per alert (or tick), not per delivery: a crash in between re-produces them on
        redelivery with the same event ids, which consumers drop as duplicates.
        """
        remaining = self.producer.flush(30)
        pending = self._unflushed()
        if pending and remaining == 0:
            self.store.ledger_recorded(pending)
        elif pending:
            log.warning("%d notification records not acknowledged by the broker yet; the ticker re-produces them",
                        remaining)
        pending.clear()

    def republish_unrecorded(self, older_than: timedelta = timedelta(minutes=1)) -> int:
        """Deliveries sent whose NotificationRecorded never made it to the broker: produce them again.

        Same event ids as the first attempt, so a record that did arrive after all is a duplicate by id.
        """
        rows = self.store.unrecorded(older_than)
        for row in rows:
            self._record_delivery(row["delivery_key"], row["alert_id"], row["contract_id"], row["channel"],
                                  row["recipient"], row["step"])
        return len(rows)

    def _dead_letter(self, alert: Alert | None, alert_id: str, reason: str) -> None:
        """The alert as a CloudEvent on the alerts DLQ, so the DLQ tool can replay it once the channel works."""
        if alert is None:
            return  # a digest: it stays pending and goes out with the next period
        record = encode(alert, source=SOURCE, event_id=alert.alert_id)
        produce_dead_letter(self.producer, topic=self.alerts_topic, partition=-1, offset=-1, key=record.key,
                            value=record.value, headers=list(record.headers), error=reason, service=SERVICE)

    def record(self, alert_id: str, contract_id: str | None, kind: NotificationKind, channel: str | None,
               recipient: str | None, detail: str, *, key: str) -> None:
        """One NotificationRecorded; its event id is derived from `key`, so a repeat is a duplicate by id."""
        event_id = str(uuid.uuid5(_NS, key))
        event = NotificationRecorded(notification_id=event_id, alert_id=alert_id, contract_id=contract_id,
                                     kind=kind, channel=channel, recipient=recipient, detail=detail,
                                     at=self.clock.now())
        produce_event(self.producer, event, source=SOURCE, event_id=event_id, time=event.at,
                      topic=self.notifications_topic)
        NOTIFICATIONS.labels(kind.value, channel or "").inc()

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
