"""Through the real broker: the worker as a subprocess, time moved by ClockAdvanced events.

One worker serves the module; every test uses its own contract ids and reads only their records.
Tests run in file order and the clock only moves forward.
"""

from __future__ import annotations

import re
import signal
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from obligation_engine.samples import contract, obligations, terms_v

from contract_schema import (
    Alert,
    ContractTerminated,
    DeliverableAccepted,
    MilestoneCompleted,
    ObligationCancelled,
    ObligationCompleted,
    ObligationDefinition,
    ObligationDueSoon,
    ObligationEscalated,
    ObligationKind,
    ObligationOverdue,
    ObligationScheduled,
    Origin,
    ReleaseMilestoneBilling,
    Scorecard,
    ScorecardScope,
    SlaBreached,
    SlaMeasured,
    SlaMeasurement,
    Tier,
)
from contract_schema.topics import ERP_PERFORMANCE
from mesh_common.faust_kafka import partition_for
from mesh_testing import unique_name

from .conftest import ERP_GIVE_UP_SECONDS, PARTITIONS, Stack


def _contract(stack: Stack, cid: str, counterparty: str = "acme"):  # type: ignore[no-untyped-def]
    return contract(cid, stack.now.date(), now=stack.now, counterparty_id=counterparty)


def _scheduled_ids(stack: Stack, cid: str) -> set[str]:
    return {e.instance_id for e in stack.events(cid, ObligationScheduled)}


def test_contract_schedules_one_off_recurring_milestone_and_sla_instances(stack: Stack) -> None:
    cid = unique_name("c-sched")
    stack.send(_contract(stack, cid))
    wanted = {"insurance-cert", "monthly-report#1", "monthly-report#12", "go-live",
              f"availability@{stack.now.date().replace(day=1).isoformat()}"}
    stack.wait(lambda: wanted <= _scheduled_ids(stack, cid), f"scheduled {wanted}")
    go_live = next(e for e in stack.events(cid, ObligationScheduled) if e.instance_id == "go-live")
    assert go_live.kind == "milestone" and go_live.due_at.date() == stack.now.date() + timedelta(days=46)
    card = stack.wait(lambda: [e for e in stack.events(cid, Scorecard) if e.scope == ScorecardScope.CONTRACT],
                      "contract scorecard")[-1]
    assert card.scorecard_id == f"acme/{cid}" and card.overdue == 0


def test_amendment_moves_changed_dates_and_cancels_removed_obligations(stack: Stack) -> None:
    cid = unique_name("c-amend")
    start = stack.now.date()
    stack.send(_contract(stack, cid))
    stack.wait(lambda: {"go-live", "insurance-cert"} <= _scheduled_ids(stack, cid), "first schedule")
    amended = tuple(o.model_copy(update={"due_date": start + timedelta(days=60)}) if o.obligation_id == "go-live"
                    else o for o in obligations(start) if o.obligation_id != "insurance-cert")
    v2 = terms_v(2, start, amended)
    stack.send(contract(cid, start, now=stack.now, versions=(terms_v(1, start, obligations(start)), v2)))
    moved = stack.wait(lambda: [e for e in stack.events(cid, ObligationScheduled)
                                if e.instance_id == "go-live" and e.due_at.date() == start + timedelta(days=61)],
                       "go-live moved")
    assert len(moved) == 1
    cancelled = stack.wait(lambda: stack.events(cid, ObligationCancelled), "insurance-cert cancelled")
    assert [e.instance_id for e in cancelled] == ["insurance-cert"]


def test_termination_cancels_future_obligations(stack: Stack) -> None:
    cid = unique_name("c-term")
    stack.send(_contract(stack, cid))
    stack.wait(lambda: "go-live" in _scheduled_ids(stack, cid), "scheduled")
    snap = _contract(stack, cid)
    stack.send(ContractTerminated(contract_id=cid, tenant_id="t1", version=1, occurred_at=stack.now,
                                  terminated_on=stack.now.date() + timedelta(days=15)))
    cancelled = stack.wait(lambda: {e.instance_id for e in stack.events(cid, ObligationCancelled)} >= {"go-live"},
                           "future cancelled")
    assert cancelled
    ids = {e.instance_id for e in stack.events(cid, ObligationCancelled)}
    assert "monthly-report#1" not in ids and "monthly-report#2" in ids
    assert snap.contract_id == cid


def test_erp_milestone_completion_completes_and_is_never_sent_back(stack: Stack) -> None:
    cid = unique_name("c-erp")
    stack.send(_contract(stack, cid))
    stack.wait(lambda: "go-live" in _scheduled_ids(stack, cid), "scheduled")
    stack.send(MilestoneCompleted(contract_id=cid, obligation_id="go-live", source_system="sap", origin=Origin.ERP,
                                  occurred_at=stack.now, completed_at=stack.now, evidence_ref="GR-42"))
    done = stack.wait(lambda: stack.events(cid, ObligationCompleted), "completed")
    assert done[0].origin == Origin.ERP and done[0].on_time and done[0].evidence_ref == "GR-42"
    assert done[0].amount == Decimal("25000.00")
    green = stack.wait(lambda: [a for a in stack.events(cid, Alert) if a.alert_type == "obligation.completed"], "green")
    assert green[0].tier == Tier.GREEN
    # A later record of the same contract is processed after the first one: when it is done, so is that.
    stack.send(DeliverableAccepted(contract_id=cid, obligation_id="monthly-report", source_system="pm",
                                   occurred_at=stack.now, accepted_at=stack.now))
    stack.wait(lambda: len(stack.events(cid, ObligationCompleted)) == 2, "sentinel completed")
    assert stack.events(cid, ReleaseMilestoneBilling) == []
    assert [c for c in stack.erp.calls if cid in c["path"]] == []


def test_contract_side_completion_calls_erp_and_publishes_the_command(stack: Stack) -> None:
    cid = unique_name("c-ctr")
    stack.send(_contract(stack, cid))
    stack.wait(lambda: "go-live" in _scheduled_ids(stack, cid), "scheduled")
    stack.send(MilestoneCompleted(contract_id=cid, obligation_id="go-live", source_system="contract-registry",
                                  origin=Origin.CONTRACT, occurred_at=stack.now, completed_at=stack.now))
    calls = stack.wait(lambda: [c for c in stack.erp.calls if c["path"] == f"/milestones/{cid}/go-live/release"],
                       "ERP endpoint called")
    assert calls[0]["body"]["amount"] == "25000.00" and calls[0]["body"]["currency"] == "EUR"
    assert calls[0]["idempotency_key"]
    commands = stack.wait(lambda: stack.events(cid, ReleaseMilestoneBilling), "command on the topic")
    assert commands[0].origin == Origin.CONTRACT and commands[0].erp_vendor_id == "V-100"
    done = stack.wait(lambda: stack.events(cid, ObligationCompleted), "completed")
    assert [d.origin for d in done] == [Origin.CONTRACT]
    assert stack.erp.unauthorised == 0


def test_erp_down_past_the_give_up_time_dead_letters_and_raises_a_red_alert(stack: Stack) -> None:
    """A release ERP never accepts is retried in rounds until the give-up time, not dropped after one round."""
    cid = unique_name("c-down")
    stack.send(_contract(stack, cid))
    stack.wait(lambda: "go-live" in _scheduled_ids(stack, cid), "scheduled")
    sent = time.monotonic()
    stack.send(MilestoneCompleted(contract_id=cid, obligation_id="go-live", source_system="contract-registry",
                                  origin=Origin.CONTRACT, occurred_at=stack.now, completed_at=stack.now))
    dead = stack.wait(lambda: [s for s in stack.records(cid) if s.topic.endswith(ERP_PERFORMANCE.name + ".dlq")],
                      "dead letter after the give-up time")
    assert time.monotonic() - sent >= ERP_GIVE_UP_SECONDS  # not after the first round's 3 attempts
    reason = dead[0].headers["dlq_reason"]
    assert "HTTP 503" in reason and "gave up after" in reason, reason
    calls = [c for c in stack.erp.calls if cid in c["path"]]
    assert len(calls) > 3  # more than one round of OBLIGATION_ERP_ATTEMPTS
    command_id = stack.records(cid, ReleaseMilestoneBilling)[0].ce_id
    assert {c["idempotency_key"] for c in calls} == {command_id}  # every try is the same release
    red = stack.wait(lambda: [a for a in stack.events(cid, Alert) if a.alert_type == "obligation.erp-release-failed"],
                     "red alert")
    assert red[0].tier == Tier.RED and red[0].amount_at_stake == Decimal("25000.00")
    assert len(dead) == 1 and len(red) == 1
    assert len(stack.events(cid, ReleaseMilestoneBilling)) == 1  # the command is on the topic all the same


def test_both_directions_at_once_complete_once_and_do_not_loop(stack: Stack) -> None:
    cid = unique_name("c-both")
    stack.send(_contract(stack, cid))
    stack.wait(lambda: "go-live" in _scheduled_ids(stack, cid), "scheduled")
    for origin, system in ((Origin.CONTRACT, "contract-registry"), (Origin.ERP, "sap")):
        stack.send(MilestoneCompleted(contract_id=cid, obligation_id="go-live", source_system=system, origin=origin,
                                      occurred_at=stack.now, completed_at=stack.now))
    # ERP echoing our command back as a completion, and a redelivery, must change nothing either.
    stack.send(MilestoneCompleted(contract_id=cid, obligation_id="go-live", source_system="sap",
                                  origin=Origin.CONTRACT, occurred_at=stack.now, completed_at=stack.now))
    stack.send(DeliverableAccepted(contract_id=cid, obligation_id="monthly-report", source_system="pm",
                                   occurred_at=stack.now, accepted_at=stack.now))
    stack.wait(lambda: any(e.obligation_id == "monthly-report" for e in stack.events(cid, ObligationCompleted)),
               "sentinel")
    go_live = [e for e in stack.events(cid, ObligationCompleted) if e.obligation_id == "go-live"]
    assert len(go_live) == 1 and go_live[0].origin == Origin.CONTRACT
    assert len(stack.events(cid, ReleaseMilestoneBilling)) == 1
    # The release is sent outside the agent (docs/adr/0012): wait for it, then it is the only one.
    stack.wait(lambda: [c for c in stack.erp.calls if cid in c["path"]], "release call")
    assert len([c for c in stack.erp.calls if cid in c["path"]]) == 1


def test_sla_breach_earns_the_credit_and_updates_scorecards(stack: Stack) -> None:
    cid, cp = unique_name("c-sla"), unique_name("cp")
    stack.send(_contract(stack, cid, counterparty=cp))
    month = stack.now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    stack.wait(lambda: f"availability@{month.date().isoformat()}" in _scheduled_ids(stack, cid), "sla window")
    nxt = (month + timedelta(days=32)).replace(day=1)
    stack.send(SlaMeasurement(contract_id=cid, obligation_id="availability", source_system="monitoring",
                              occurred_at=stack.now, metric="availability", window_start=month, window_end=nxt,
                              value=Decimal("99.65")))
    breach = stack.wait(lambda: stack.events(cid, SlaBreached), "breach")[0]
    assert breach.service_credit == Decimal("1500.00") and breach.currency == "EUR"  # 3 steps x 5% of 10,000
    measured = stack.events(cid, SlaMeasured)
    assert len(measured) == 1 and measured[0].met is False
    red = stack.wait(lambda: [a for a in stack.events(cid, Alert) if a.alert_type == "obligation.sla-breached"], "red")
    assert red[0].tier == Tier.RED and red[0].amount_at_stake == Decimal("1500.00")
    card = stack.wait(lambda: [s.event for s in stack.records(f"{cp}/{cid}") if isinstance(s.event, Scorecard)
                               and s.event.sla_measurements == 1], "contract scorecard")[-1]
    assert (card.sla_met, card.credits_earned, card.currency) == (0, Decimal("1500.00"), "EUR")
    total = stack.wait(lambda: [s.event for s in stack.records(cp) if isinstance(s.event, Scorecard)
                                and s.event.scope == ScorecardScope.COUNTERPARTY and s.event.sla_measurements == 1],
                       "counterparty scorecard")[-1]
    assert total.credits_earned == Decimal("1500.00") and total.sla_attainment == Decimal(0)


def test_unknown_contract_is_parked_then_applied_when_the_contract_arrives(stack: Stack) -> None:
    cid = unique_name("c-late")
    stack.send(MilestoneCompleted(contract_id=cid, obligation_id="go-live", source_system="sap", origin=Origin.ERP,
                                  occurred_at=stack.now, completed_at=stack.now))
    stack.send(_contract(stack, cid))
    done = stack.wait(lambda: stack.events(cid, ObligationCompleted), "completed once the contract came")
    assert done[0].instance_id == "go-live"


def test_milestone_due_before_registration_is_tracked_completed_and_billable(stack: Stack) -> None:
    """A contract registered late: its milestone fell due two months before 'now' (topic clock)."""
    cid = unique_name("c-legacy")
    today = stack.now.date()
    legacy = (
        ObligationDefinition(obligation_id="legacy-go-live", kind=ObligationKind.MILESTONE, title="Legacy go-live",
                             due_date=today - timedelta(days=60), amount=Decimal("40000.00")),
        ObligationDefinition(obligation_id="legacy-handover", kind=ObligationKind.DELIVERABLE, title="Handover",
                             due_date=today - timedelta(days=75)),
        ObligationDefinition(obligation_id="next-report", kind=ObligationKind.DELIVERABLE, title="Report",
                             due_date=today + timedelta(days=5), lead_time_days=3),
        ObligationDefinition(obligation_id="recert", kind=ObligationKind.COMPLIANCE, title="Recertification",
                             due_date=today + timedelta(days=500), recurrence="FREQ=YEARLY"),
    )
    start = today - timedelta(days=120)
    stack.send(contract(cid, start, now=stack.now, versions=(terms_v(1, start, legacy),)))
    overdue = stack.wait(lambda: {e.instance_id: e for e in stack.events(cid, ObligationOverdue)}
                         if {"legacy-go-live", "legacy-handover"} <= {e.instance_id for e in
                                                                     stack.events(cid, ObligationOverdue)} else None,
                         "found overdue at registration")
    assert overdue["legacy-go-live"].due_at.date() == today - timedelta(days=59)  # end of the due day

    stack.send(MilestoneCompleted(contract_id=cid, obligation_id="legacy-go-live", source_system="sap",
                                  origin=Origin.ERP, occurred_at=stack.now,
                                  completed_at=stack.now - timedelta(days=61), evidence_ref="GR-7"))
    done = stack.wait(lambda: stack.events(cid, ObligationCompleted), "ObligationCompleted for the validator")
    assert [(d.instance_id, d.kind, d.amount, d.on_time) for d in done] == [
        ("legacy-go-live", "milestone", Decimal("40000.00"), True)]
    # A completion that matches no open instance is never dropped silently.
    stack.send(MilestoneCompleted(contract_id=cid, obligation_id="recert", source_system="sap", origin=Origin.ERP,
                                  occurred_at=stack.now, completed_at=stack.now))
    dead = stack.wait(lambda: [s for s in stack.records(cid) if s.topic.endswith(ERP_PERFORMANCE.name + ".dlq")],
                      "unmatched completion dead-lettered")
    assert "'recert'" in dead[0].headers["dlq_reason"] and "no open occurrence" in dead[0].headers["dlq_reason"]

    stack.advance_by(timedelta(days=8))  # past every escalation threshold: found overdue never escalates
    stack.wait(lambda: [e for e in stack.events(cid, ObligationOverdue) if e.instance_id == "next-report"],
               "an ordinary obligation of the same contract fell due")
    kinds = sorted(a.alert_type for a in stack.events(cid, Alert))
    assert kinds == ["obligation.completed", "obligation.found-overdue", "obligation.overdue"], kinds
    summary = next(a for a in stack.events(cid, Alert) if a.alert_type == "obligation.found-overdue")
    assert summary.tier == Tier.RED and "2 obligations already overdue" in summary.what
    assert "legacy-go-live" in summary.why and "legacy-handover" in summary.why
    assert not [e for e in stack.events(cid, ObligationEscalated) if e.instance_id.startswith("legacy-")]


def test_an_event_of_another_topic_is_dead_lettered_with_the_reason(stack: Stack) -> None:
    cid = unique_name("c-misrouted")
    stack.send(_contract(stack, cid))
    stack.wait(lambda: "go-live" in _scheduled_ids(stack, cid), "scheduled")
    # An ObligationCompleted (it belongs on clm.obligation.events.v1) produced to erp.performance.v1 by mistake.
    stack.send(ObligationCompleted(contract_id=cid, tenant_id="t1", obligation_id="go-live", instance_id="go-live",
                                   kind=ObligationKind.MILESTONE, occurred_at=stack.now, completed_at=stack.now,
                                   on_time=True, origin=Origin.ERP, source_system="sap"),
               topic=stack.topic(ERP_PERFORMANCE.name))
    dead = stack.wait(lambda: [s for s in stack.records(cid) if s.topic.endswith(ERP_PERFORMANCE.name + ".dlq")],
                      "misrouted record dead-lettered")
    assert "ObligationCompleted" in dead[0].headers["dlq_reason"]
    assert ERP_PERFORMANCE.name in dead[0].headers["dlq_reason"]
    assert dead[0].headers["ce_type"].endswith("ObligationCompleted")  # the original record, headers kept
    assert not [s for s in stack.records(cid, ObligationCompleted) if s.topic.endswith("obligation.events.v1")]


def test_bad_records_go_to_the_dlq_and_the_worker_keeps_going(stack: Stack) -> None:
    cid = unique_name("c-bad")
    stack.send_raw("clm.contract.state.v1", cid.encode(), b"{not json", [("ce_specversion", b"1.0"),
                   ("ce_id", b"x1"), ("ce_source", b"/t"), ("ce_type", b"contractmesh.ContractSnapshot")])
    dead = stack.wait(lambda: [s for s in stack.records(cid) if s.topic.endswith("clm.contract.state.v1.dlq")],
                      "dead letter")
    assert "not JSON" in dead[0].headers["dlq_reason"]
    stack.send(_contract(stack, cid))
    stack.wait(lambda: "go-live" in _scheduled_ids(stack, cid), "still scheduling")


def _same_partition_as(key: str, prefix: str) -> str:
    while True:
        other = unique_name(prefix)
        if partition_for(other.encode(), PARTITIONS) == partition_for(key.encode(), PARTITIONS):
            return other


def test_due_soon_and_overdue_fire_once_across_restart_and_catch_up(stack: Stack) -> None:
    cid = unique_name("c-time")
    stack.send(_contract(stack, cid))
    sched = stack.wait(lambda: [e for e in stack.events(cid, ObligationScheduled) if e.instance_id == "insurance-cert"],
                       "scheduled")
    due = sched[0].due_at
    stack.advance(due - timedelta(days=14) + timedelta(minutes=1))  # compliance lead time: 14 days
    stack.wait(lambda: [e for e in stack.events(cid, ObligationDueSoon) if e.instance_id == "insurance-cert"],
               "due soon")
    yellow = stack.wait(lambda: [a for a in stack.events(cid, Alert) if a.alert_type == "obligation.due-soon"
                                 and "insurance-cert" in a.alert_id], "yellow alert")[0]
    assert yellow.tier == Tier.YELLOW and yellow.deadline == due and yellow.backup_owner is not None

    stack.stop(signal.SIGTERM)
    stack.advance(due + timedelta(hours=1))  # falls due while the worker is down: caught up on recovery
    stack.start()
    stack.wait(lambda: [e for e in stack.events(cid, ObligationOverdue) if e.instance_id == "insurance-cert"],
               "overdue after restart", timeout=120)
    red = stack.wait(lambda: [a for a in stack.events(cid, Alert) if a.alert_type == "obligation.overdue"
                              and "insurance-cert" in a.alert_id], "red alert")
    assert red[0].tier == Tier.RED

    # A record for an unknown contract is parked (in the table), survives a crash, and is
    # dead-lettered when its parking time (1 h here) has passed on the clock.
    ghost = unique_name("c-ghost")
    probe = _same_partition_as(ghost, "c-probe")
    stack.send(_contract(stack, probe))
    stack.wait(lambda: _scheduled_ids(stack, probe), "probe scheduled")
    stack.send(MilestoneCompleted(contract_id=ghost, obligation_id="x", source_system="sap", origin=Origin.ERP,
                                  occurred_at=stack.now, completed_at=stack.now))
    # same topic and partition, sent after the ghost: once it is done, the ghost has been parked
    stack.send(MilestoneCompleted(contract_id=probe, obligation_id="go-live", source_system="sap", origin=Origin.ERP,
                                  occurred_at=stack.now, completed_at=stack.now))
    stack.wait(lambda: stack.events(probe, ObligationCompleted), "ghost parked")
    stack.wait(lambda: stack.changelog_has(ghost), "parked state in the changelog")
    stack.stop(signal.SIGKILL)
    stack.advance_by(timedelta(hours=2))
    stack.start()
    dead = stack.wait(lambda: [s for s in stack.records(ghost) if s.topic.endswith(ERP_PERFORMANCE.name + ".dlq")],
                      "parked record dead-lettered", timeout=120)
    assert "unknown contract" in dead[0].headers["dlq_reason"]
    # Still not done a week after the due date (compliance threshold: 7 days): escalated.
    stack.advance(due + timedelta(days=7, minutes=1))
    escalated = stack.wait(lambda: [e for e in stack.events(cid, ObligationEscalated)
                                    if e.instance_id == "insurance-cert"], "escalated")
    assert escalated[0].overdue_since == due
    # Once each, over two restarts (one of them a kill).
    for cls in (ObligationDueSoon, ObligationOverdue, ObligationEscalated):
        assert len([e for e in stack.events(cid, cls) if e.instance_id == "insurance-cert"]) == 1, cls


def _assigned_in(log: Path) -> list[list[int]]:
    """The partitions each index rebuild of that worker covered, from its log."""
    found = re.findall(r"due index rebuilt: .* on partitions \[([0-9, ]*)\]", log.read_text(errors="replace"))
    return [[int(p) for p in f.split(",") if p.strip()] for f in found]


def test_two_replicas_split_the_partitions_and_fire_each_transition_once(stack: Stack) -> None:
    cids = []
    for partition in range(PARTITIONS):  # some contracts on every partition
        while len(cids) < 3 * (partition + 1):
            cid = unique_name("c-rebal")
            if partition_for(cid.encode(), PARTITIONS) == partition:
                cids.append(cid)
    for cid in cids:
        stack.send(_contract(stack, cid))
    stack.wait(lambda: all("insurance-cert" in _scheduled_ids(stack, c) for c in cids), "all scheduled")
    log = stack.start_second()
    # both replicas hold some partitions: each index now covers only its own
    stack.wait(lambda: any(0 < len(a) < PARTITIONS for a in _assigned_in(log)), "second replica assigned",
               timeout=120)
    due = next(e.due_at for e in stack.events(cids[0], ObligationScheduled) if e.instance_id == "insurance-cert")
    stack.advance(due - timedelta(days=14) + timedelta(minutes=1))
    stack.wait(lambda: all(any(e.instance_id == "insurance-cert" for e in stack.events(c, ObligationDueSoon))
                           for c in cids), "due soon on every contract", timeout=60)
    stack.stop_second()  # its partitions come back to the first replica, whose index is rebuilt
    stack.advance(due + timedelta(minutes=1))
    stack.wait(lambda: all(any(e.instance_id == "insurance-cert" for e in stack.events(c, ObligationOverdue))
                           for c in cids), "overdue on every contract", timeout=120)
    for cid in cids:
        for cls in (ObligationDueSoon, ObligationOverdue):
            assert len([e for e in stack.events(cid, cls) if e.instance_id == "insurance-cert"]) == 1, (cid, cls)


def test_health_readiness_and_metrics_endpoints(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.http_port}"
    assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    metrics = httpx.get(f"{base}/metrics", timeout=5).text
    assert 'mesh_records_processed_total{service="obligation-engine"' in metrics
