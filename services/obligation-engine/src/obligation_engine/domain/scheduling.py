"""Scheduling and time: a snapshot or a termination replans the contract's instances (`schedule.expand`
says what the definitions mean), and the clock moves them on (due soon, overdue, escalated), replans
them periodically and expires parked records. (state, input, now) -> (new state, effects)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from contract_schema import (
    ContractSnapshot,
    ObligationCancelled,
    ObligationKind,
    ObligationOverdue,
    ObligationScheduled,
    Tier,
)

from .config import EngineConfig
from .effects import DeadLetter, Effect, ScorecardChanged
from .messages import found_overdue_alert, lifecycle, make_alert, transition_alert, transition_event
from .model import ContractState, Instance, Status, Transition
from .schedule import Planned, expand

REPLAN_KEY = "__replan__"
PARK_KEY = "__park__"


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
