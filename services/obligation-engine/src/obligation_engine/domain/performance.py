"""Performance: a completion (ERP or contract side) completes the earliest open instance, and may ask
for the milestone's billing release; an SLA measurement completes its window and may breach it; an
input for a contract or obligation not known yet is parked (`Park`), one that can never apply rejected."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from contract_schema import (
    ContractSnapshot,
    ObligationCompleted,
    ObligationKind,
    Origin,
    ReleaseMilestoneBilling,
    SlaBreached,
    SlaMeasured,
    SlaMeasurement,
    Tier,
)

from .config import EngineConfig
from .effects import CallErp, Effect, Park, Publish, Reject, ScorecardChanged
from .messages import any_definition, definition_of, event_id_of, lifecycle, make_alert, terms_of
from .model import ContractState, Instance, Parked, Status
from .schedule import due_time, sla_instance_id
from .sla import evaluate


def apply_completion(state: ContractState, *, event_id: str, obligation_id: str, completed_at: datetime,
                     origin: Origin, source_system: str, evidence_ref: str | None, now: datetime,
                     cfg: EngineConfig) -> tuple[ContractState, list[Effect]]:
    """Complete the earliest open instance. Completing a completed obligation does nothing: that is
    what makes two-way sync loop-free (an echo finds the obligation already completed)."""
    snap = _known(state, obligation_id)
    if state.has_seen(event_id):
        return state, []
    new = state.copy()
    new.remember(event_id)
    candidates = sorted((i for i in new.instances.values() if i.obligation_id == obligation_id),
                        key=lambda i: (i.due_at is None, i.due_at or now, i.instance_id))
    open_ = [i for i in candidates if i.is_open]
    if open_:
        inst = open_[0]
    elif any(i.status == Status.COMPLETED for i in candidates):
        return new, []  # already completed: an echo or a redelivery, nothing to send anywhere
    else:
        inst = _untracked(state, snap, obligation_id, candidates)
    on_time = inst.due_at is None or completed_at <= inst.due_at
    inst = inst.with_(status=Status.COMPLETED, completed_at=completed_at, on_time=on_time, origin=str(origin),
                      source_system=source_system, evidence_ref=evidence_ref)
    new.instances[inst.instance_id] = inst
    definition = definition_of(snap, inst)
    terms = snap.versions[-1] if definition is None else terms_of(snap, inst.version)
    amount = definition.amount if definition else None
    effects: list[Effect] = [
        lifecycle(ObligationCompleted, new, inst, completed_at, "completed", completed_at=completed_at,
                  on_time=on_time, origin=origin, source_system=source_system, evidence_ref=evidence_ref,
                  amount=amount, currency=terms.currency if amount is not None else None),
        make_alert(new, inst, now, Tier.GREEN, "obligation.completed",
                   f"'{inst.title}' completed {'on time' if on_time else 'late'} ({source_system})",
                   why=f"Completion reported by {source_system} ({origin}).", required_action="None",
                   key=f"completed:{inst.instance_id}"),
    ]
    if origin == Origin.CONTRACT and (inst.kind == ObligationKind.MILESTONE or amount is not None):
        command = ReleaseMilestoneBilling(
            contract_id=new.contract_id, tenant_id=snap.tenant_id, obligation_id=inst.obligation_id,
            erp_vendor_id=snap.counterparty.erp_vendor_id, origin=Origin.CONTRACT, occurred_at=completed_at,
            amount=amount if amount is not None else Decimal(0), currency=terms.currency, completed_at=completed_at)
        command_id = event_id_of(new, inst, "release-billing")
        effects += [Publish(command, command_id), CallErp(command, command_id)]
    effects.append(ScorecardChanged())
    return new, effects


def _untracked(state: ContractState, snap: ContractSnapshot, obligation_id: str,
               candidates: list[Instance]) -> Instance:
    """A completion for a known obligation without an open instance: a one-off not tracked yet (due
    beyond the horizon, or closed history) is completed all the same; anything else is a finding for
    a person, never silence."""
    where = f"obligation {obligation_id!r} of contract {state.contract_id!r}"
    if candidates:
        raise Reject(f"{where} is cancelled ({', '.join(i.instance_id for i in candidates)}): "
                     "the completion was not applied")
    definition = any_definition(snap, obligation_id)
    assert definition is not None  # _known checked it
    if definition.recurrence or definition.sla is not None:
        raise Reject(f"{where} has no open occurrence (none within the scheduling horizon, or none left): "
                     "the completion was not applied")
    version = next(v.version for v in reversed(snap.versions) if v.obligation(obligation_id) is not None)
    due = due_time(definition.due_date, ZoneInfo(snap.timezone)) if definition.due_date else None
    return Instance(instance_id=obligation_id, obligation_id=obligation_id, kind=str(definition.kind),
                    title=definition.title, due_at=due, version=version, lead_days=definition.lead_time_days)


def apply_measurement(state: ContractState, *, event_id: str, m: SlaMeasurement, now: datetime,
                      cfg: EngineConfig) -> tuple[ContractState, list[Effect]]:
    snap = _known(state, m.obligation_id)
    if state.has_seen(event_id):
        return state, []
    tz = ZoneInfo(snap.timezone)
    terms = snap.terms_on(m.window_start.astimezone(tz).date()) or snap.current
    definition = terms.obligation(m.obligation_id) or any_definition(snap, m.obligation_id)
    if definition is None or definition.sla is None:
        raise Reject(f"obligation {m.obligation_id!r} of contract {state.contract_id!r} has no SLA terms")
    sla = definition.sla
    if m.metric != sla.metric:
        raise Reject(f"metric {m.metric!r} does not match the SLA metric {sla.metric!r} of {m.obligation_id!r}")
    new = state.copy()
    new.remember(event_id)
    iid = sla_instance_id(m.obligation_id, m.window_start, tz, sla.window)
    inst = new.instances.get(iid) or Instance(
        instance_id=iid, obligation_id=m.obligation_id, kind=str(ObligationKind.SLA), title=definition.title,
        due_at=m.window_end, version=terms.version, window_start=m.window_start, window_end=m.window_end)
    if inst.status == Status.COMPLETED:
        return new, []  # this window was measured already
    result = evaluate(sla, m.value, terms.currency)
    inst = inst.with_(status=Status.COMPLETED, completed_at=m.occurred_at, on_time=True, sla_met=result.met,
                      measured=m.value, credit=result.credit, source_system=m.source_system)
    new.instances[iid] = inst
    common = dict(metric=m.metric, window_start=m.window_start, window_end=m.window_end, measured=m.value,
                  target=sla.target)
    effects: list[Effect] = [lifecycle(SlaMeasured, new, inst, m.occurred_at, "sla-measured",
                                       met=result.met, **common)]
    if not result.met:
        effects.append(lifecycle(SlaBreached, new, inst, m.occurred_at, "sla-breached",
                                 service_credit=result.credit, currency=terms.currency, **common))
        effects.append(make_alert(
            new, inst, now, Tier.RED, "obligation.sla-breached",
            f"SLA '{definition.title}' missed: {sla.metric} {m.value} vs target {sla.target}",
            why=(f"{result.steps} step(s) of {sla.step} short: credit {result.credit_percent}% of the monthly fee "
                 f"{sla.monthly_fee} {terms.currency}"),
            required_action=f"Claim the service credit of {result.credit} {terms.currency}",
            key=f"sla-breached:{iid}", amount=result.credit, currency=terms.currency))
    effects.append(ScorecardChanged())
    return new, effects


def park(state: ContractState, parked: Parked) -> ContractState:
    if any(p.event_id == parked.event_id for p in state.parked):
        return state
    new = state.copy()
    new.parked = new.parked + (parked,)
    return new


def _known(state: ContractState, obligation_id: str) -> ContractSnapshot:
    snap = state.snapshot
    if snap is None:
        raise Park(f"unknown contract {state.contract_id!r}")
    if any_definition(snap, obligation_id) is None:
        raise Park(f"unknown obligation {obligation_id!r} in contract {state.contract_id!r}")
    return snap
