"""Alert state as pure values: deduplication threads and the escalation state machine."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from contract_schema.alert import Tier

from .rules import EscalationStep

TIER_RANK = {Tier.GREEN: 0, Tier.YELLOW: 1, Tier.RED: 2}


class Outcome(StrEnum):
    NEW = "new"  # first alert of its condition in the window: deliver
    THREADED = "threaded"  # an update that raised the tier: deliver as a reply in the thread
    SUPPRESSED = "suppressed"  # same condition within the window: count it, send nothing now


@dataclass(frozen=True)
class Thread:
    """One condition (type, contract, stage) within its dedup window."""

    dedup_key: str
    root_alert_id: str
    opened_at: datetime
    window: timedelta
    tier: Tier
    suppressed: int = 0
    updates: int = 0
    last_alert_id: str = ""

    @property
    def closes_at(self) -> datetime:
        return self.opened_at + self.window


def on_alert(thread: Thread | None, *, alert_id: str, dedup_key: str, tier: Tier, at: datetime,
             window: timedelta) -> tuple[Outcome, Thread]:
    """Decide one alert against the open thread of its condition (if any)."""
    if thread is None or at >= thread.closes_at:
        return Outcome.NEW, Thread(dedup_key, alert_id, at, window, tier, last_alert_id=alert_id)
    if TIER_RANK[tier] > TIER_RANK[thread.tier]:
        return Outcome.THREADED, replace(thread, tier=tier, updates=thread.updates + 1, last_alert_id=alert_id)
    return Outcome.SUPPRESSED, replace(thread, suppressed=thread.suppressed + 1, updates=thread.updates + 1,
                                       last_alert_id=alert_id)


@dataclass(frozen=True)
class Escalation:
    """A red (or escalating yellow) alert's timeline: steps fire in order until acknowledged."""

    alert_id: str
    started_at: datetime
    steps: tuple[EscalationStep, ...]
    next_step: int = 0
    acked_at: datetime | None = None

    @property
    def next_due(self) -> datetime | None:
        if self.acked_at is not None or self.next_step >= len(self.steps):
            return None
        return self.started_at + self.steps[self.next_step].after

    def due(self, now: datetime) -> tuple[tuple[int, EscalationStep], ...]:
        """Steps whose time has come, in order (several after downtime: all are caught up)."""
        if self.acked_at is not None:
            return ()
        return tuple((i, s) for i, s in enumerate(self.steps)
                     if i >= self.next_step and self.started_at + s.after <= now)

    def fired(self, step_index: int) -> Escalation:
        return replace(self, next_step=max(self.next_step, step_index + 1))

    def acknowledge(self, at: datetime) -> Escalation:
        return self if self.acked_at is not None else replace(self, acked_at=at)
