from __future__ import annotations

from datetime import timedelta

from notifier.domain.rules import EscalationStep
from notifier.domain.state import Escalation, Outcome, on_alert

from contract_schema.alert import Tier

from .helpers import T0

W = timedelta(hours=24)


def test_first_alert_opens_a_thread_and_repeats_within_the_window_are_suppressed_and_counted() -> None:
    outcome, thread = on_alert(None, alert_id="a1", dedup_key="k", tier=Tier.RED, at=T0, window=W)
    assert outcome is Outcome.NEW and thread.root_alert_id == "a1"
    outcome, thread = on_alert(thread, alert_id="a2", dedup_key="k", tier=Tier.RED, at=T0 + timedelta(hours=1),
                               window=W)
    assert outcome is Outcome.SUPPRESSED and thread.suppressed == 1 and thread.root_alert_id == "a1"
    outcome, thread = on_alert(thread, alert_id="a3", dedup_key="k", tier=Tier.YELLOW, at=T0 + timedelta(hours=2),
                               window=W)
    assert outcome is Outcome.SUPPRESSED and thread.suppressed == 2 and thread.last_alert_id == "a3"


def test_a_raised_tier_is_threaded_not_suppressed() -> None:
    _, thread = on_alert(None, alert_id="a1", dedup_key="k", tier=Tier.YELLOW, at=T0, window=W)
    outcome, thread = on_alert(thread, alert_id="a2", dedup_key="k", tier=Tier.RED, at=T0 + timedelta(hours=1),
                               window=W)
    assert outcome is Outcome.THREADED and thread.tier is Tier.RED and thread.root_alert_id == "a1"


def test_after_the_window_a_new_thread_opens() -> None:
    _, thread = on_alert(None, alert_id="a1", dedup_key="k", tier=Tier.RED, at=T0, window=W)
    outcome, thread = on_alert(thread, alert_id="a2", dedup_key="k", tier=Tier.RED, at=T0 + W, window=W)
    assert outcome is Outcome.NEW and thread.root_alert_id == "a2" and thread.suppressed == 0


STEPS = (EscalationStep(after=timedelta(hours=24), to=("backup",)),
         EscalationStep(after=timedelta(hours=48), to=("legal",)),
         EscalationStep(after=timedelta(hours=72), to=("finance",)))


def test_escalation_fires_steps_in_order_as_time_passes() -> None:
    esc = Escalation("a1", T0, STEPS)
    assert esc.next_due == T0 + timedelta(hours=24)
    assert esc.due(T0 + timedelta(hours=23)) == ()
    assert [i for i, _ in esc.due(T0 + timedelta(hours=25))] == [0]
    esc = esc.fired(0)
    assert esc.next_due == T0 + timedelta(hours=48)
    assert esc.due(T0 + timedelta(hours=25)) == ()


def test_escalation_catches_up_every_step_missed_during_downtime() -> None:
    esc = Escalation("a1", T0, STEPS)
    assert [s.to for _, s in esc.due(T0 + timedelta(hours=80))] == [("backup",), ("legal",), ("finance",)]
    assert esc.fired(2).next_due is None


def test_acknowledgement_stops_escalation() -> None:
    esc = Escalation("a1", T0, STEPS).acknowledge(T0 + timedelta(hours=1))
    assert esc.next_due is None
    assert esc.due(T0 + timedelta(days=10)) == ()
