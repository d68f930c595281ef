"""Scorecards: a contract's last 12 months, and the sum over a counterparty's contracts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from contract_schema import ObligationKind, Scorecard, ScorecardScope

from .model import ContractState, Status

WINDOW = timedelta(days=365)


@dataclass(frozen=True)
class Figures:
    obligations_due: int = 0
    obligations_completed: int = 0
    completed_on_time: int = 0
    overdue: int = 0
    sla_measurements: int = 0
    sla_met: int = 0
    credits_earned: Decimal = Decimal(0)


def figures(state: ContractState, now: datetime) -> Figures:
    since = now - WINDOW
    due = completed = on_time = overdue = measured = met = 0
    credits = Decimal(0)
    for inst in state.instances.values():
        if inst.kind == ObligationKind.SLA:
            if inst.sla_met is not None and inst.completed_at is not None and inst.completed_at >= since:
                measured += 1
                met += 1 if inst.sla_met else 0
                credits += inst.credit or Decimal(0)
            continue
        if inst.status == Status.CANCELLED:
            continue
        fell_due = inst.due_at is not None and since <= inst.due_at <= now
        done_in_window = inst.status == Status.COMPLETED and inst.completed_at is not None \
            and since <= inst.completed_at <= now
        if fell_due or done_in_window:
            due += 1
        if done_in_window:
            completed += 1
            on_time += 1 if inst.on_time else 0
        if inst.status in (Status.OVERDUE, Status.ESCALATED):
            overdue += 1
    return Figures(due, completed, on_time, overdue, measured, met, credits)


def contract_scorecard(state: ContractState, now: datetime) -> Scorecard | None:
    snap = state.snapshot
    if snap is None:
        return None
    f = figures(state, now)
    cp = snap.counterparty.party_id
    return Scorecard(scorecard_id=f"{cp}/{state.contract_id}", scope=ScorecardScope.CONTRACT, counterparty_id=cp,
                     contract_id=state.contract_id, window_start=(now - WINDOW).date(), window_end=now.date(),
                     obligations_due=f.obligations_due, obligations_completed=f.obligations_completed,
                     completed_on_time=f.completed_on_time, overdue=f.overdue, sla_measurements=f.sla_measurements,
                     sla_met=f.sla_met, credits_earned=f.credits_earned, currency=snap.current.currency,
                     updated_at=now)


def counterparty_scorecard(counterparty_id: str, parts: list[Scorecard], now: datetime) -> Scorecard:
    """Sum of the contract scorecards; credits only add up within one currency."""
    currencies = {p.currency for p in parts if p.currency is not None}
    currency = currencies.pop() if len(currencies) == 1 else None
    return Scorecard(
        scorecard_id=counterparty_id, scope=ScorecardScope.COUNTERPARTY, counterparty_id=counterparty_id,
        window_start=(now - WINDOW).date(), window_end=now.date(),
        obligations_due=sum(p.obligations_due for p in parts),
        obligations_completed=sum(p.obligations_completed for p in parts),
        completed_on_time=sum(p.completed_on_time for p in parts), overdue=sum(p.overdue for p in parts),
        sla_measurements=sum(p.sla_measurements for p in parts), sla_met=sum(p.sla_met for p in parts),
        credits_earned=sum((p.credits_earned for p in parts), Decimal(0)) if currency else Decimal(0),
        currency=currency, updated_at=now)
