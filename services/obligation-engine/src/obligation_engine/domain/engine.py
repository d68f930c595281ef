"""The decider: (state, input, now) -> (new state, effects). The shell performs the effects.

One name for the whole decider, split along its seams:
- `effects`: what the shell is asked to do (`Publish`, `CallErp`, `DeadLetter`, `ScorecardChanged`),
  and `Park` / `Reject`;
- `scheduling`: snapshots, terminations, and what the clock fires (`advance`, `wakeups`);
- `performance`: completions and SLA measurements, parking;
- `releases`: ERP milestone billing releases held until ERP accepts them (docs/adr/0012).

Every effect carries a stable event id derived from the contract, the instance, its revision
and what happened, so a replay after a crash produces the same ids and downstream consumers
(and this engine) drop the duplicate. Effects are performed *before* the state is saved.
"""

from __future__ import annotations

from .effects import CallErp, DeadLetter, Effect, Park, Publish, Reject, ScorecardChanged
from .performance import apply_completion, apply_measurement, park
from .releases import hold_release, release_outcome
from .scheduling import (
    PARK_KEY,
    REPLAN_KEY,
    advance,
    apply_snapshot,
    apply_termination,
    next_transition,
    parked_expired,
    wakeups,
)

__all__ = [
    "PARK_KEY", "REPLAN_KEY", "CallErp", "DeadLetter", "Effect", "Park", "Publish", "Reject", "ScorecardChanged",
    "advance", "apply_completion", "apply_measurement", "apply_snapshot", "apply_termination", "hold_release",
    "next_transition", "park", "parked_expired", "release_outcome", "wakeups",
]
