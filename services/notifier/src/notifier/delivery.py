"""Idempotent delivery, mixed into the Notifier (service.py): the ledger, the channels' sends and the
NotificationRecorded events.

Every (alert, channel, recipient, step) has a ledger row, claimed 'sending' with a lease before the
send and 'sent' after it, and a Message-ID derived from that key. A redelivered alert, a second
replica or a restart finds 'sent' and sends nothing again, or finds the claim of a replica still
sending and leaves it to that one. Only a claim whose lease ran out (its sender died) is taken over,
and sent again with the same Message-ID: the one remaining duplicate window is a send the server
accepted whose sender died (or timed out waiting for the answer) before the 'sent' write. A channel
outage delays a delivery (outage.py), never drops it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta

from prometheus_client import Counter

from contract_schema.alert import Alert, NotificationKind, NotificationRecorded
from contract_schema.codec import encode
from mesh_common.clock import Clock
from mesh_common.delivery import CircuitOpen, DeliveryError
from mesh_common.kafka import EventProducer, produce_dead_letter, produce_event

from .adapters.channels import Channel, Outgoing
from .adapters.ports import AlertStore, LedgerEntry
from .outage import DELAYED, FAILED, HELD, SENT, OutagePolicy, dump_body, load_body, next_try_in
from .settings import SERVICE, SOURCE

log = logging.getLogger(__name__)

NOTIFICATIONS = Counter("notifier_notifications_total", "Notifications by kind and channel", ["kind", "channel"])
_NS = uuid.UUID("6f1c3a52-5d0e-4a8c-9c51-6e6f74696672")


def message_id(delivery_key: str) -> str:
    return f"<{hashlib.sha256(delivery_key.encode()).hexdigest()[:32]}@notifier.contract-mesh>"


class Delivery:
    """The delivery side of the Notifier: what it needs from it is declared here."""

    store: AlertStore
    channels: Mapping[str, Channel]
    producer: EventProducer
    clock: Clock
    outage: OutagePolicy
    alerts_topic: str
    notifications_topic: str
    wake: Callable[[float], None]
    _local: threading.local
    _healthy: set[str]

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
