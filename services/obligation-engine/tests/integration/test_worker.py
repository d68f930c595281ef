"""Through the real broker: the worker as a subprocess, time moved by ClockAdvanced events.

One worker serves the module; every test uses its own contract ids and reads only their records.
Tests run in file order and the clock only moves forward.
"""

from __future__ import annotations

import signal
from datetime import date, timedelta
from decimal import Decimal

from contract_schema import (
    Alert,
    ContractTerminated,
    DeliverableAccepted,
    MilestoneCompleted,
    ObligationCancelled,
    ObligationCompleted,
    ObligationDueSoon,
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
from mesh_testing import unique_name

from obligation_engine.samples import contract, obligations, terms_v

from .conftest import Stack


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
