"""The decider: (state, input, now) -> (new state, effects). The shell performs the effects.

Every effect carries a stable event id derived from the contract, the instance, its revision
and what happened, so a replay after a crash produces the same ids and downstream consumers
(and this engine) drop the duplicate. Effects are performed *before* the state is saved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from contract_schema import (
    ContractSnapshot,
    ObligationCancelled,
    ObligationCompleted,
    ObligationKind,
    ObligationOverdue,
    ObligationScheduled,
    Origin,
    ReleaseMilestoneBilling,
    SlaBreached,
    SlaMeasured,
    SlaMeasurement,
    Tier,
)

from .config import EngineConfig
from .messages import Publish as Publish  # an effect, like the others below
from .messages import (
    any_definition,
    definition_of,
    erp_failure_alert,
    event_id_of,
    found_overdue_alert,
    lifecycle,
    make_alert,
    terms_of,
    transition_alert,
    transition_event,
)
from .model import ContractState, Instance, Parked, PendingRelease, Status, Transition
from .schedule import Planned, due_time, expand, sla_instance_id
from .sla import evaluate

REPLAN_KEY = "__replan__"
PARK_KEY = "__park__"


@dataclass(frozen=True)
class CallErp:
    """Tell ERP over REST to release milestone billing (the same command is also published). The shell
    keeps it in the state as a PendingRelease (`hold_release`) and sends it outside the agent."""

    command: ReleaseMilestoneBilling
    event_id: str


@dataclass(frozen=True)
class DeadLetter:
    parked: Parked
    reason: str


@dataclass(frozen=True)
class ScorecardChanged:
    """The contract's figures moved: the shell recomputes and publishes its scorecards."""


Effect = Publish | CallErp | DeadLetter | ScorecardChanged


class Park(Exception):
    """The input names a contract or obligation this engine does not know (yet)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Reject(Exception):
    """The input can never be applied: dead-letter it now."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------- scheduling


def apply_snapshot(state: ContractState, snapshot: ContractSnapshot, now: datetime,
                   cfg: EngineConfig) -> tuple[ContractState, list[Effect]]:
    new = state.copy()
    new.snapshot = snapshot
    effects = _replan(new, now, cfg)
    effects += _advance(new, now, cfg)
    return new, effects


def apply_termination(state: ContractState, on_date: date, now: datetime,
                      cfg: EngineConfig) -> tuple[ContractState, list[Effect]]:
    """Termination cancels every open instance due on or after the termination date."""
    new = state.copy()
    new.terminated_on = on_date if new.terminated_on is None else min(new.terminated_on, on_date)
    if new.snapshot is None:
        return new, []
    effects = _replan(new, now, cfg)
    effects += _advance(new, now, cfg)
    return new, effects


def _replan(state: ContractState, now: datetime, cfg: EngineConfig) -> list[Effect]:
    snap = state.snapshot
    assert snap is not None
    planned, errors = expand(snap, now, cfg, state.terminated_on)
    effects: list[Effect] = []
    found: list[Instance] = []
    reason_removed = _removal_reason(state, snap)
    for iid, p in planned.items():
        old = state.instances.get(iid)
        if old is None:
            if _is_history(state, p, now, cfg):
                continue
            inst = _new_instance(p)
            if inst.due_at is not None and inst.due_at <= now:
                # Past due before we knew it: not history (nobody said it was done), but no alert storm
                # either: it is overdue from its due time, and one summary alert covers all found at once.
                inst = inst.with_(status=Status.OVERDUE, overdue_since=inst.due_at, found_overdue=True)
                found.append(inst)
            state.instances[iid] = inst
            effects.append(lifecycle(ObligationScheduled, state, inst, now, "scheduled"))
            if inst.found_overdue:
                effects.append(lifecycle(ObligationOverdue, state, inst, inst.due_at or now, "overdue"))
            continue
        if old.status == Status.COMPLETED:
            continue  # completed stays completed, whatever the amendment says
        if old.status == Status.CANCELLED or _moved(old, p):
            inst = _new_instance(p).with_(revision=old.revision + 1)
            state.instances[iid] = inst
            effects.append(lifecycle(ObligationScheduled, state, inst, now, "scheduled"))
        elif old.title != p.title or old.version != p.version or old.lead_days != p.lead_days:
            state.instances[iid] = old.with_(title=p.title, version=p.version, lead_days=p.lead_days)
    for iid, old in list(state.instances.items()):
        if iid not in planned and old.is_open and not _beyond_plan(old, now, cfg):
            inst = old.with_(status=Status.CANCELLED)
            state.instances[iid] = inst
            effects.append(lifecycle(ObligationCancelled, state, inst, now, "cancelled", reason=reason_removed))
    if found:
        effects.append(found_overdue_alert(state, found, now))
    for problem in errors:
        effects.append(make_alert(state, None, now, Tier.YELLOW, "obligation.definition-invalid",
                                  f"Obligation definition cannot be scheduled: {problem}",
                                  required_action="Correct the obligation's recurrence in the contract registry",
                                  key=f"invalid:{problem}"))
    _prune(state, now, cfg)
    state.replan_at = now + timedelta(days=cfg.replan_days)
    if effects:
        effects.append(ScorecardChanged())
    return effects


def _is_history(state: ContractState, p: Planned, now: datetime, cfg: EngineConfig) -> bool:
    """Not a task: closed and pruned long ago, or an SLA window older than the lookback (a late
    measurement still creates its window on demand, so nothing that arrives is lost)."""
    if p.due_at is None:
        return False
    if state.history_before is not None and p.due_at < state.history_before:
        return True
    return p.kind == ObligationKind.SLA and p.due_at < now - timedelta(days=cfg.lookback_days)


def _removal_reason(state: ContractState, snap: ContractSnapshot) -> str:
    term = [d for d in (state.terminated_on, snap.terminated_on) if d is not None]
    if term:
        return f"contract terminated on {min(term).isoformat()}"
    return f"no longer in the contract (version {snap.current.version})"


def _beyond_plan(inst: Instance, now: datetime, cfg: EngineConfig) -> bool:
    # Expansion only looks ahead `horizon_days`; nothing known lies beyond, but be safe.
    return inst.due_at is not None and inst.due_at > now + timedelta(days=cfg.horizon_days + 2)


def _moved(old: Instance, p: Planned) -> bool:
    return old.due_at != p.due_at or old.window_start != p.window_start


def _new_instance(p: Planned) -> Instance:
    return Instance(instance_id=p.instance_id, obligation_id=p.obligation_id, kind=p.kind, title=p.title,
                    due_at=p.due_at, version=p.version, lead_days=p.lead_days, window_start=p.window_start,
                    window_end=p.window_end)


def _prune(state: ContractState, now: datetime, cfg: EngineConfig) -> None:
    cutoff = now - timedelta(days=cfg.keep_days)
    state.history_before = cutoff if state.history_before is None else max(state.history_before, cutoff)
    for iid, inst in list(state.instances.items()):
        if not inst.is_open and inst.due_at is not None and inst.due_at < cutoff:
            del state.instances[iid]


# ---------------------------------------------------------------- time


def next_transition(inst: Instance, cfg: EngineConfig) -> tuple[datetime, Transition] | None:
    if inst.due_at is None or not inst.is_open:
        return None
    if inst.status == Status.SCHEDULED:
        lead = cfg.lead(inst.kind, inst.lead_days)
        if lead > timedelta(0):
            return inst.due_at - lead, Transition.DUE_SOON
        return inst.due_at, Transition.OVERDUE
    if inst.status == Status.DUE_SOON:
        return inst.due_at, Transition.OVERDUE
    if inst.status == Status.OVERDUE and not inst.found_overdue:  # found overdue: the summary alert said it
        return inst.due_at + cfg.escalate_after(inst.kind), Transition.ESCALATED
    return None


def wakeups(state: ContractState, cfg: EngineConfig) -> dict[str, datetime]:
    """When this contract next needs the clock: per instance, plus replanning and parked expiry."""
    out: dict[str, datetime] = {}
    for iid, inst in state.instances.items():
        nxt = next_transition(inst, cfg)
        if nxt is not None:
            out[iid] = nxt[0]
    if state.replan_at is not None and state.snapshot is not None:
        out[REPLAN_KEY] = state.replan_at
    if state.parked:
        out[PARK_KEY] = min(p.parked_at for p in state.parked) + timedelta(seconds=cfg.park_seconds)
    return out


def parked_expired(state: ContractState, now: datetime, cfg: EngineConfig) -> bool:
    """Whether a parked record has waited its full parking time by `now`."""
    expiry = timedelta(seconds=cfg.park_seconds)
    return any(p.parked_at + expiry <= now for p in state.parked)


def advance(state: ContractState, now: datetime, cfg: EngineConfig,
            expire_parked: bool = True) -> tuple[ContractState, list[Effect]]:
    """Fire everything due at `now`: transitions (catching up after downtime), replans, parked expiry.

    `expire_parked=False`: the shell has not read the contract-state partition up to its end yet, so the
    snapshot a parked record waits for may still be on its way; the parked records stay (docs/adr/0009)."""
    new = state.copy()
    effects: list[Effect] = []
    replanned = new.snapshot is not None and new.replan_at is not None and new.replan_at <= now
    if replanned:
        effects += _replan(new, now, cfg)
    effects += _advance(new, now, cfg)
    expiry = timedelta(seconds=cfg.park_seconds)
    expired = [p for p in new.parked if p.parked_at + expiry <= now] if expire_parked else []
    if expired:
        new.parked = tuple(p for p in new.parked if p.parked_at + expiry > now)
        effects += [DeadLetter(p, f"{p.reason}; parked since {p.parked_at.isoformat()} and still unknown")
                    for p in expired]
    if not effects and not replanned:
        return state, []  # nothing was due: the same state, nothing to save
    return new, effects


def _advance(state: ContractState, now: datetime, cfg: EngineConfig) -> list[Effect]:
    effects: list[Effect] = []
    changed = False
    for iid in sorted(state.instances, key=lambda i: (state.instances[i].due_at or now, i)):
        inst = state.instances[iid]
        fired: list[tuple[Transition, datetime, Instance]] = []
        while (nxt := next_transition(inst, cfg)) is not None and nxt[0] <= now:
            when, transition = nxt
            if transition == Transition.DUE_SOON:
                inst = inst.with_(status=Status.DUE_SOON)
            elif transition == Transition.OVERDUE:
                inst = inst.with_(status=Status.OVERDUE, overdue_since=when)
            else:
                inst = inst.with_(status=Status.ESCALATED)
            fired.append((transition, when, inst))
        if not fired:
            continue
        state.instances[iid] = inst
        changed = True
        for n, (transition, when, snap_inst) in enumerate(fired):
            effects.append(transition_event(state, snap_inst, transition, when))
            if n == len(fired) - 1:  # after downtime, alert only on where it stands now
                effects.append(transition_alert(state, snap_inst, transition, now))
    if changed:
        effects.append(ScorecardChanged())
    return effects


# ---------------------------------------------------------------- performance (ERP and contract side)


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


# ---------------------------------------------------------------- ERP releases (docs/adr/0012)


def hold_release(state: ContractState, command_id: str, command: ReleaseMilestoneBilling,
                 trigger: Parked | None) -> ContractState:
    """Keep a release until ERP has accepted it; the same command id is held once."""
    if any(r.command_id == command_id for r in state.releases):
        return state
    new = state.copy()
    new.releases = new.releases + (PendingRelease(command_id, command.model_dump_json(), trigger),)
    return new


def release_outcome(state: ContractState, command_id: str, *, ok: bool, permanent: bool, error: str | None,
                    at: datetime, give_up: timedelta, now: datetime,
                    counted: bool = True) -> tuple[ContractState, list[Effect]]:
    """What one delivery round of a held release did. `at` is the wall time of the round (outages are
    measured in real time, whatever the topic clock says); `now` the engine's clock, for the alert.

    Accepted: forgotten. Failed for now: counted, and the first failure starts the give-up clock. Failed
    permanently (a 4xx other than 429), or still failing `give_up` after the first failed round: the
    trigger is dead-lettered with the reason and a red alert is raised. `counted=False` (an open circuit:
    no call was made) costs no round and keeps the last real error, but the give-up time is checked. An
    outcome for a release no longer held (already accepted, given up) changes nothing."""
    held = next((r for r in state.releases if r.command_id == command_id), None)
    if held is None:
        return state, []
    new = state.copy()
    others = tuple(r for r in new.releases if r.command_id != command_id)
    if ok:
        new.releases = others
        return new, []
    since = held.failing_since or at
    rounds = held.attempts + (1 if counted else 0)
    error = error or held.last_error
    if not permanent and at - since < give_up:
        new.releases = tuple(r if r.command_id != command_id else
                             replace(r, attempts=rounds, failing_since=since, last_error=error)
                             for r in new.releases)
        return new, []
    new.releases = others
    command = ReleaseMilestoneBilling.model_validate_json(held.command)
    why = "ERP refused it" if permanent else (
        f"gave up after {rounds} failed round(s) over {_hours(at - since)}")
    reason = f"ERP release of milestone {command.obligation_id!r} failed for good ({why}): {error}"
    effects: list[Effect] = [erp_failure_alert(new, command, reason, now)]
    if held.trigger is not None:
        effects.append(DeadLetter(held.trigger, reason))
    return new, effects


def _hours(d: timedelta) -> str:
    seconds = d.total_seconds()
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"
