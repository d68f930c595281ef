"""The renewal opportunity of one contract as a small state machine (pure, no I/O).

Every input (a contract snapshot, a renewal or termination, a decision, the clock reaching
a stage) returns the new state plus what to say about it: whether the opportunity changed
(publish it and upsert it in the CRM) and which alerts to raise. Stages fire in order and
once per term: when several are due at once (downtime, an amendment that moved the dates
into the past) only the latest is announced and the earlier ones count as passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, TypeVar

from pydantic import TypeAdapter

from contract_schema.alert import Alert, Tier
from contract_schema.contract import ContractStatus
from contract_schema.renewal import (
    OpportunityStatus,
    RenewalDecisionKind,
    RenewalOpportunity,
    RenewalStage,
    SlaRecord,
)

from .timeline import ContractView, StagePoint, TimelineSettings, local_date, local_midnight, timeline

SERVICE = "renewal-sync"
T = TypeVar("T")
_RED_STAGES = {RenewalStage.DAYS_30, RenewalStage.NOTICE_DEADLINE, RenewalStage.END_DATE}


@dataclass(frozen=True, slots=True)
class RenewalState:
    """Everything renewal-sync remembers about one contract; persisted as JSON (`dump_state`)."""

    contract: ContractView
    term: int = 1
    announced: frozenset[str] = frozenset()  # stage keys of the current term already announced
    stage: RenewalStage | None = None  # the latest announced stage
    status: OpportunityStatus = OpportunityStatus.OPEN
    decision: RenewalDecisionKind | None = None
    last_renewal_version: int = 0
    revision: int = 0  # bumps on every published change: stable event ids for the outbox

    @property
    def contract_id(self) -> str:
        return self.contract.contract_id

    @property
    def auto_renewal_risk(self) -> bool:
        return self.contract.auto_renew and self.decision is None and self.status is OpportunityStatus.OPEN


def _copy(obj: T, changes: dict[str, Any]) -> T:
    return replace(obj, **changes)  # type: ignore[type-var]


_STATE_JSON: TypeAdapter[RenewalState] = TypeAdapter(RenewalState)


def dump_state(state: RenewalState) -> bytes:
    return _STATE_JSON.dump_json(state)


def load_state(data: str | bytes) -> RenewalState:
    return _STATE_JSON.validate_json(data)


@dataclass(frozen=True)
class Outcome:
    state: RenewalState
    changed: bool = False  # publish the opportunity and upsert it in the CRM
    alerts: tuple[Alert, ...] = field(default=())
    reason: str = ""


def _open(view: ContractView) -> bool:
    return view.status not in (ContractStatus.TERMINATED, ContractStatus.EXPIRED, ContractStatus.DRAFT)


def _bump(state: RenewalState, **update: object) -> RenewalState:
    return _copy(state, {**update, "revision": state.revision + 1})


def next_due(state: RenewalState, settings: TimelineSettings, now: datetime) -> datetime | None:
    """When this contract next needs attention: its earliest stage not yet announced."""
    if state.status is not OpportunityStatus.OPEN or not _open(state.contract):
        return None
    pending = [p.due_at for p in timeline(state.contract, settings, now) if p.key not in state.announced]
    return min(pending) if pending else None


def fire_due(state: RenewalState, settings: TimelineSettings, now: datetime) -> Outcome:
    """Announce the latest stage that is due and not yet announced; earlier due ones count as passed."""
    if state.status is not OpportunityStatus.OPEN or not _open(state.contract):
        return Outcome(state)
    points = timeline(state.contract, settings, now)
    due = [p for p in points if p.due_at <= now and p.key not in state.announced]
    if not due:
        return Outcome(state)
    latest = due[-1]
    new = _bump(state, announced=state.announced | {p.key for p in due}, stage=latest.stage)
    return Outcome(new, changed=True, alerts=(stage_alert(new, latest, settings, now),),
                   reason=f"stage {latest.key}")


def on_snapshot(state: RenewalState | None, view: ContractView, settings: TimelineSettings,
                now: datetime) -> Outcome:
    """A new or amended contract: (re)compute the timeline; stages the new dates put in the past fire now."""
    if state is None:
        state = RenewalState(contract=view)
        if view.status is ContractStatus.DRAFT:
            return Outcome(state)
        if not _open(view):
            return Outcome(_copy(state, {"status": OpportunityStatus.LOST}))
        return fire_due(state, settings, now)
    seen = state.contract.updated_at
    if seen is not None and view.updated_at is not None and view.updated_at < seen:
        return Outcome(state)  # an older snapshot redelivered after a crash: the state is already past it
    if state.status is not OpportunityStatus.OPEN:
        return Outcome(_copy(state, {"contract": view}))
    if view.status is ContractStatus.TERMINATED:
        return close(_copy(state, {"contract": view}), OpportunityStatus.LOST, "terminated")
    if view.status is ContractStatus.EXPIRED:
        return close(_copy(state, {"contract": view}), OpportunityStatus.LOST, "expired")
    dates_moved = (view.end_date, view.notice_period_days) != (state.contract.end_date,
                                                              state.contract.notice_period_days)
    visible = state.stage is not None  # the CRM only knows opportunities that reached a stage
    updated = _copy(state, {"contract": view})
    if dates_moved and visible:
        updated = _bump(updated)
    fired = fire_due(updated, settings, now)
    if fired.changed:
        return fired
    return Outcome(updated, changed=dates_moved and visible, reason="dates moved" if dates_moved else "")


def close(state: RenewalState, status: OpportunityStatus, reason: str) -> Outcome:
    if state.status is not OpportunityStatus.OPEN:
        return Outcome(state)
    return Outcome(_bump(state, status=status), changed=True, reason=reason)


def on_terminated(state: RenewalState, terminated_on: date) -> Outcome:
    view = _copy(state.contract, {"status": ContractStatus.TERMINATED, "terminated_on": terminated_on})
    return close(_copy(state, {"contract": view}), OpportunityStatus.LOST, "terminated")


def on_renewed(state: RenewalState, version: int, new_end_date: date | None, settings: TimelineSettings,
               now: datetime) -> tuple[Outcome, Outcome]:
    """Close this term's opportunity as won, then start the next term's timeline.

    Returns (won, next term). Idempotent on the renewal's contract version."""
    if version <= state.last_renewal_version:
        return Outcome(state), Outcome(state)
    won = close(state, OpportunityStatus.WON, "renewed") if state.stage is not None else Outcome(state)
    view = _copy(state.contract, {
        "end_date": new_end_date if new_end_date is not None else state.contract.end_date,
        "status": ContractStatus.RENEWED})
    next_term = RenewalState(contract=view, term=state.term + 1, last_renewal_version=version,
                             revision=won.state.revision)
    return won, fire_due(next_term, settings, now)


def on_decision(state: RenewalState, decision: RenewalDecisionKind) -> Outcome:
    """A decision ends the auto-renewal risk and the red escalation for this term."""
    if state.decision == decision or state.status is not OpportunityStatus.OPEN:
        return Outcome(state)
    return Outcome(_bump(state, decision=decision), changed=state.stage is not None, reason=f"decision {decision}")


def opportunity(state: RenewalState, sla: SlaRecord | None, now: datetime) -> RenewalOpportunity:
    view = state.contract
    return RenewalOpportunity(
        contract_id=view.contract_id, tenant_id=view.tenant_id, contract_title=view.title,
        counterparty_name=view.counterparty_name, crm_account_id=view.crm_account_id,
        stage=state.stage or (RenewalStage.REVIEW if view.evergreen else RenewalStage.DAYS_120),
        status=state.status, close_date=view.notice_deadline, end_date=view.end_date,
        amount=view.annual_value, currency=view.currency, owner=view.owner,
        backup_owner=view.backup_owner, auto_renewal_risk=state.auto_renewal_risk,
        decision=state.decision.value if state.decision else None, sla_record=sla, updated_at=now)


def _days(n: int) -> str:
    if n == 0:
        return "today"
    if n < 0:
        return f"{-n} days ago" if n != -1 else "1 day ago"
    return f"in {n} days" if n != 1 else "in 1 day"


def stage_alert(state: RenewalState, point: StagePoint, settings: TimelineSettings, now: datetime) -> Alert:
    view = state.contract
    today = local_date(now, view.timezone)
    name = f"Contract {view.title} ({view.contract_id})"
    deadline = view.notice_deadline
    if point.stage is RenewalStage.REVIEW:
        tier = Tier.GREEN if state.decision else Tier.YELLOW
        what = f"{name} has no end date: periodic review due {_days((point.on - today).days)}."
        action = "Review the contract's terms, value and performance."
        due_at = point.due_at
    else:
        assert view.end_date is not None and deadline is not None
        to_notice = (deadline - today).days
        what = f"{name} expires {_days((view.end_date - today).days)}."
        if state.decision is None:
            what += " Renewal decision required."
        if view.auto_renew and state.decision is None:
            what += (f" Auto-renewal triggers {_days(to_notice)} without notice." if to_notice >= 0
                     else " The notice deadline has passed: the contract renews automatically.")
        else:
            what += (f" Notice deadline {_days(to_notice)}." if to_notice >= 0 else " The notice deadline has passed.")
        if state.decision is not None:
            tier = Tier.GREEN
        elif point.stage in _RED_STAGES or to_notice < settings.red_within_days:
            tier = Tier.RED
        else:
            tier = Tier.YELLOW
        action = ("Record a renewal decision (renew, renegotiate or terminate) in the CRM"
                  + (f" and give notice by {deadline.isoformat()} if not renewing." if view.auto_renew else "."))
        due_at = local_midnight(deadline, view.timezone)
    why = f"Renewal stage {point.key} of term {state.term} reached on {point.on.isoformat()}."
    if view.auto_renew and state.decision is None:
        why += " The contract renews automatically unless notice is given."
    return Alert(
        alert_id=f"renewal:{view.contract_id}:t{state.term}:{point.key}", tenant_id=view.tenant_id,
        contract_id=view.contract_id, alert_type="renewal.stage", tier=tier,
        title=f"Renewal {point.stage.value}: {view.title}", what=what, why=why, required_action=action,
        deadline=due_at, owner=view.owner, backup_owner=view.backup_owner, amount_at_stake=view.annual_value,
        currency=view.currency, dedup_key=f"renewal.stage:{view.contract_id}:t{state.term}:{point.key}",
        source_service=SERVICE, raised_at=now)


def crm_delayed_alert(opp: RenewalOpportunity, error: str, now: datetime, failing_for: float,
                      give_up_after: float, delivery_id: str) -> Alert:
    """Yellow, once per failing spell: the update waits for the CRM and is still being retried."""
    name = f"{opp.contract_title} ({opp.contract_id})"
    return Alert(
        alert_id=f"renewal-crm-delayed:{delivery_id}", tenant_id=opp.tenant_id, contract_id=opp.contract_id,
        alert_type="renewal.crm_sync_delayed", tier=Tier.YELLOW, title=f"CRM sync delayed: {opp.contract_title}",
        what=f"CRM sync delayed: the renewal opportunity of {name} (stage {opp.stage.value}) has not reached the "
             f"CRM for {_duration(failing_for)}; retrying, the update is kept.",
        why=error[:500],
        required_action=f"Check the CRM; the update is sent as soon as it answers. It is dead-lettered only after "
                        f"{_duration(give_up_after)} of failures.",
        owner=opp.owner, backup_owner=opp.backup_owner, amount_at_stake=opp.amount, currency=opp.currency,
        dedup_key=f"renewal.crm_sync_delayed:{opp.contract_id}", source_service=SERVICE, raised_at=now)


def crm_failing_alert(opp: RenewalOpportunity, error: str, now: datetime, delivery_id: str) -> Alert:
    name = f"{opp.contract_title} ({opp.contract_id})"
    return Alert(
        alert_id=f"renewal-crm:{delivery_id}", tenant_id=opp.tenant_id, contract_id=opp.contract_id,
        alert_type="renewal.crm_sync_failing", tier=Tier.RED, title=f"CRM sync failing: {opp.contract_title}",
        what=f"CRM sync failing: the renewal opportunity of {name} (stage {opp.stage.value}) could not be "
             f"delivered to the CRM after the last retry.",
        why=error[:500],
        required_action="Fix the CRM connection or the rejected field, then re-send it: "
                        f"`renewal-sync redrive --contract {opp.contract_id}`.",
        owner=opp.owner, backup_owner=opp.backup_owner, amount_at_stake=opp.amount, currency=opp.currency,
        dedup_key=f"renewal.crm_sync_failing:{opp.contract_id}", source_service=SERVICE, raised_at=now)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
