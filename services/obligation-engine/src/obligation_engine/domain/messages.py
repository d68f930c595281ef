"""Building the engine's events and alerts: stable ids, owners, wording. Pure, like the decider."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from contract_schema import (
    Alert,
    ContractSnapshot,
    ContractTerms,
    Event,
    ObligationDefinition,
    ObligationDueSoon,
    ObligationEscalated,
    ObligationOverdue,
    Person,
    ReleaseMilestoneBilling,
    Tier,
)

from .model import ContractState, Instance, Status, Transition

SERVICE = "obligation-engine"
FOUND_OVERDUE_LISTED = 20  # instances named in the summary alert; the rest are counted


@dataclass(frozen=True)
class Publish:
    event: Event
    event_id: str


def found_overdue_alert(state: ContractState, found: list[Instance], now: datetime) -> Publish:
    """One red alert per contract for everything found overdue at once (registration or amendment)."""
    found = sorted(found, key=lambda i: (i.due_at or now, i.instance_id))
    digest = hashlib.sha1(",".join(f"{i.instance_id}/r{i.revision}" for i in found).encode()).hexdigest()[:12]
    shown = [f"'{i.title}' ({i.instance_id}, due {fmt(i.due_at)})" for i in found[:FOUND_OVERDUE_LISTED]]
    more = len(found) - len(shown)
    listing = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
    n = len(found)
    return make_alert(state, None, now, Tier.RED, "obligation.found-overdue",
                      f"{n} obligation{'s' if n > 1 else ''} already overdue when the contract was registered",
                      why=f"Due before the obligation engine learned of them, with no completion reported: {listing}.",
                      required_action=("Complete them and record it in ERP or the contract registry (completions are "
                                       "accepted as usual), or amend the contract if they no longer apply"),
                      key=f"found-overdue:{digest}")


def transition_event(state: ContractState, inst: Instance, transition: Transition, when: datetime) -> Publish:
    if transition == Transition.DUE_SOON:
        return lifecycle(ObligationDueSoon, state, inst, when, "due-soon")
    if transition == Transition.OVERDUE:
        return lifecycle(ObligationOverdue, state, inst, when, "overdue")
    assert inst.overdue_since is not None
    return lifecycle(ObligationEscalated, state, inst, when, "escalated", overdue_since=inst.overdue_since)


def transition_alert(state: ContractState, inst: Instance, transition: Transition, now: datetime) -> Publish:
    due = fmt(inst.due_at)
    if transition == Transition.DUE_SOON:
        return make_alert(state, inst, now, Tier.YELLOW, "obligation.due-soon", f"'{inst.title}' is due on {due}",
                          why="The obligation falls due within its lead time and is not completed yet.",
                          required_action=action(inst), key=f"due-soon:{inst.instance_id}:r{inst.revision}")
    if transition == Transition.OVERDUE:
        return make_alert(state, inst, now, Tier.RED, "obligation.overdue", f"'{inst.title}' was due on {due}",
                          why="The due time passed without a completion.",
                          required_action=action(inst), key=f"overdue:{inst.instance_id}:r{inst.revision}")
    return make_alert(state, inst, now, Tier.RED, "obligation.escalated", f"'{inst.title}' is still overdue",
                      why=f"Overdue since {fmt(inst.overdue_since)}, past the escalation threshold.",
                      required_action="Escalate to the backup owner: " + action(inst),
                      key=f"escalated:{inst.instance_id}:r{inst.revision}")


def any_definition(snap: ContractSnapshot, obligation_id: str) -> ObligationDefinition | None:
    for terms in reversed(snap.versions):
        if (d := terms.obligation(obligation_id)) is not None:
            return d
    return None


def terms_of(snap: ContractSnapshot, version: int) -> ContractTerms:
    return next((v for v in snap.versions if v.version == version), snap.current)


def definition_of(snap: ContractSnapshot, inst: Instance) -> ObligationDefinition | None:
    return terms_of(snap, inst.version).obligation(inst.obligation_id) or any_definition(snap, inst.obligation_id)


def owner_of(state: ContractState, inst: Instance | None) -> Person | None:
    snap = state.snapshot
    if snap is None:
        return None
    definition = definition_of(snap, inst) if inst is not None else None
    return (definition.owner if definition else None) or snap.owner


def event_id_of(state: ContractState, inst: Instance, what: str) -> str:
    return f"{state.contract_id}/{inst.instance_id}/r{inst.revision}/{what}"


def lifecycle(cls: type[Event], state: ContractState, inst: Instance, occurred_at: datetime, what: str,
              **extra: object) -> Publish:
    snap = state.snapshot
    assert snap is not None
    event = cls(contract_id=state.contract_id, tenant_id=snap.tenant_id, obligation_id=inst.obligation_id,
                instance_id=inst.instance_id, kind=inst.kind, title=inst.title, due_at=inst.due_at,
                owner=owner_of(state, inst), occurred_at=occurred_at, **extra)  # type: ignore[call-arg]
    return Publish(event, event_id_of(state, inst, what))


def make_alert(state: ContractState, inst: Instance | None, now: datetime, tier: Tier, alert_type: str, what: str, *,
               why: str = "", required_action: str = "", key: str, amount: Decimal | None = None,
               currency: str | None = None) -> Publish:
    snap = state.snapshot
    assert snap is not None
    alert_id = f"{state.contract_id}/{key}"
    alert = Alert(alert_id=alert_id, tenant_id=snap.tenant_id, contract_id=state.contract_id, alert_type=alert_type,
                  tier=tier, title=f"{snap.title}: {what}", what=what, why=why, required_action=required_action,
                  deadline=inst.due_at if inst else None, owner=owner_of(state, inst), backup_owner=snap.backup_owner,
                  amount_at_stake=amount, currency=currency, dedup_key=f"{alert_type}:{state.contract_id}:{key}",
                  source_service=SERVICE, source_event_id=event_id_of(state, inst, alert_type) if inst else None,
                  raised_at=now)
    return Publish(alert, alert_id)


_ACTIONS = {
    "milestone": "Complete the milestone '{t}' and record it in ERP or the contract registry",
    "deliverable": "Deliver '{t}' and have it accepted",
    "payment": "Make the payment '{t}'",
    "notice": "Send the notice '{t}' before the deadline",
    "compliance": "Provide the compliance evidence for '{t}'",
    "sla": "Report the SLA measurement for '{t}'",
}


def action(inst: Instance) -> str:
    return _ACTIONS.get(inst.kind, "Complete '{t}'").format(t=inst.title) + f" by {fmt(inst.due_at)}"


def fmt(when: datetime | None) -> str:
    return when.isoformat() if when else "(no date)"


def erp_failure_alert(state: ContractState, command: ReleaseMilestoneBilling, reason: str, now: datetime) -> Publish:
    """Red: the milestone is complete but ERP could not be told to release its billing."""
    inst = next((i for i in state.instances.values() if i.obligation_id == command.obligation_id
                 and i.status == Status.COMPLETED), None)
    return make_alert(state, inst, now, Tier.RED, "obligation.erp-release-failed",
                      f"ERP did not accept the billing release of milestone '{command.obligation_id}'",
                      why=reason,
                      required_action="Release the milestone billing in ERP by hand, or replay the DLQ record",
                      key=f"erp-release-failed:{command.obligation_id}", amount=command.amount,
                      currency=command.currency)
