"""The service layer through bootstrap with fakes: what happens on each event and as time passes,
without a broker, a database or a mail server (milliseconds)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from notifier.adapters.fakes import FakeChannel, FakeStore
from notifier.bootstrap import Wiring, bootstrap, load_rules
from notifier.delivery import message_id
from notifier.outage import OutagePolicy
from notifier.service import handle
from notifier.settings import DEFAULT_RULES, SOURCE

from contract_schema.alert import NotificationKind, NotificationRecorded, Tier
from contract_schema.renewal import RenewalDecision, RenewalDecisionKind
from mesh_common.clock import ManualClock
from mesh_common.delivery import DeliveryError
from mesh_common.settings import KafkaSettings, ServiceSettings
from mesh_testing.fakes import FakeProducer

from .helpers import T0, make_alert

RULES = load_rules(DEFAULT_RULES)


@pytest.fixture
def wired() -> Wiring:
    return bootstrap(service=ServiceSettings(), kafka=KafkaSettings(), rules=RULES, store=FakeStore(),
                     producer=FakeProducer(),
                     channels={"email": FakeChannel("email"), "slack": FakeChannel("slack", "slack", False)},
                     clock=ManualClock(T0), environ={})


def sent(w: Wiring, channel: str = "email") -> list[str]:
    fake = w.notifier.channels[channel]
    assert isinstance(fake, FakeChannel)
    return [to for to, _ in fake.sent]


def records(w: Wiring) -> list[NotificationRecorded]:
    producer = w.notifier.producer
    assert isinstance(producer, FakeProducer)
    return producer.events(w.settings.notifications_topic)


def test_a_red_alert_is_delivered_once_on_every_channel_and_recorded(wired: Wiring) -> None:
    alert = make_alert("sla.breached", tier=Tier.RED)
    handle(wired.notifier, alert)
    handle(wired.notifier, alert)  # redelivered: the ledger says sent, nothing goes out again
    assert sorted(sent(wired)) == ["legal@example.com", "olivia@example.com"]
    assert sent(wired, "slack") == ["#slack"]
    delivered = [r for r in records(wired) if r.kind is NotificationKind.DELIVERED]
    assert len(delivered) == 3 and len({r.notification_id for r in delivered}) == 3
    producer = wired.notifier.producer
    assert isinstance(producer, FakeProducer)
    assert {r.envelope().source for r in producer.records} == {SOURCE}


def test_the_same_condition_within_its_window_is_suppressed(wired: Wiring) -> None:
    handle(wired.notifier, make_alert("sla.breached", tier=Tier.RED, alert_id="a-1"))
    handle(wired.notifier, make_alert("sla.breached", tier=Tier.RED, alert_id="a-2"))
    assert len(sent(wired)) == 2  # only the first alert's two recipients
    suppressed = [r for r in records(wired) if r.kind is NotificationKind.SUPPRESSED]
    assert [r.alert_id for r in suppressed] == ["a-2"]


def test_an_unacknowledged_red_alert_escalates_to_the_backup_and_an_acknowledged_one_does_not(
        wired: Wiring) -> None:
    clock = wired.notifier.clock
    assert isinstance(clock, ManualClock)
    handle(wired.notifier, make_alert("sla.breached", tier=Tier.RED, alert_id="open", contract_id="C-1"))
    handle(wired.notifier, make_alert("sla.breached", tier=Tier.RED, alert_id="acked", contract_id="C-2"))
    wired.notifier.acknowledge("acked", "olivia")
    clock.advance(timedelta(hours=25))
    wired.notifier.tick()
    fake = wired.notifier.channels["email"]
    assert isinstance(fake, FakeChannel)
    escalated = [(to, m.subject) for to, m in fake.sent if "bob@example.com" == to]
    assert len(escalated) == 1 and "C-1" in escalated[0][1]


def test_a_renewal_decision_acknowledges_the_contracts_open_renewal_alerts(wired: Wiring) -> None:
    handle(wired.notifier, make_alert("renewal.stage", tier=Tier.RED, alert_id="r-30", stage="30d"))
    handle(wired.notifier, make_alert("sla.breached", tier=Tier.RED, alert_id="sla"))
    handle(wired.notifier, RenewalDecision(contract_id="C-1", tenant_id="t1", decision=RenewalDecisionKind.RENEW,
                                           decided_at=T0))
    renewal, other = wired.notifier.store.get_alert("r-30"), wired.notifier.store.get_alert("sla")
    assert renewal is not None and renewal.acked_by == "crm-decision:renew"
    assert other is not None and other.acked_at is None


def test_an_event_of_another_type_is_refused_for_the_dead_letter_queue(wired: Wiring) -> None:
    with pytest.raises(ValueError, match="expected Alert or RenewalDecision, got NotificationRecorded"):
        handle(wired.notifier, NotificationRecorded(notification_id="n", alert_id="a", kind=NotificationKind.FAILED,
                                                    detail="", at=T0))


def test_a_delivery_that_fails_for_good_is_recorded_and_the_alert_dead_lettered(wired: Wiring) -> None:
    email = wired.notifier.channels["email"]
    assert isinstance(email, FakeChannel)
    email.fail_with = DeliveryError("550 mailbox unavailable", permanent=True)
    handle(wired.notifier, make_alert("sla.breached", tier=Tier.RED))
    failed = [r for r in records(wired) if r.kind is NotificationKind.FAILED]
    assert {r.recipient for r in failed} == {"olivia@example.com", "legal@example.com"}
    producer = wired.notifier.producer
    assert isinstance(producer, FakeProducer)
    assert len(producer.on(wired.settings.alerts_topic + ".dlq")) == 2


def _outage_wiring(give_up_seconds: float) -> Wiring:
    w = bootstrap(service=ServiceSettings(), kafka=KafkaSettings(), rules=RULES, store=FakeStore(),
                  producer=FakeProducer(), channels={"email": FakeChannel("email")}, clock=ManualClock(T0),
                  environ={})
    w.notifier.outage = OutagePolicy(give_up_seconds=give_up_seconds, round_delay=0.0, max_round_delay=0.0)
    return w


def test_an_outage_delays_a_delivery_and_it_goes_out_when_the_channel_answers(wired: Wiring) -> None:
    w = _outage_wiring(give_up_seconds=3600)
    email = w.notifier.channels["email"]
    assert isinstance(email, FakeChannel)
    email.fail_with = DeliveryError("SMTP 421: try again later", permanent=False)
    handle(w.notifier, make_alert("sla.breached"))
    assert sent(w) == [] and not [r for r in records(w) if r.kind is NotificationKind.FAILED]
    producer = w.notifier.producer
    assert isinstance(producer, FakeProducer)
    assert producer.on(w.settings.alerts_topic + ".dlq") == []
    w.notifier.tick()  # still down: delayed again, not failed
    assert sent(w) == [] and producer.on(w.settings.alerts_topic + ".dlq") == []
    email.fail_with = None
    w.notifier.tick()
    assert sorted(sent(w)) == ["legal@example.com", "olivia@example.com"]
    w.notifier.tick()
    assert sorted(sent(w)) == ["legal@example.com", "olivia@example.com"]  # once each


def test_a_delivery_still_failing_after_the_give_up_time_is_dead_lettered_with_the_reason() -> None:
    w = _outage_wiring(give_up_seconds=0.0)
    email = w.notifier.channels["email"]
    assert isinstance(email, FakeChannel)
    email.fail_with = DeliveryError("SMTP 421: try again later", permanent=False)
    handle(w.notifier, make_alert("sla.breached"))
    w.notifier.tick()
    producer = w.notifier.producer
    assert isinstance(producer, FakeProducer)
    assert len(producer.on(w.settings.alerts_topic + ".dlq")) == 2  # one per recipient
    failed = [r for r in records(w) if r.kind is NotificationKind.FAILED]
    assert len(failed) == 2 and all("h of retries" in r.detail for r in failed)


def test_a_delivery_another_replica_holds_is_not_sent_again(wired: Wiring) -> None:
    alert = make_alert("sla.breached")
    key = f"{alert.alert_id}|email|olivia@example.com|0"
    wired.notifier.store.ledger_begin(key, alert_id=alert.alert_id, channel="email", recipient="olivia@example.com",
                                      step="0", message_id=message_id(key), lease_seconds=60)
    handle(wired.notifier, alert)
    wired.notifier.tick()
    assert "olivia@example.com" not in sent(wired) and "legal@example.com" in sent(wired)
