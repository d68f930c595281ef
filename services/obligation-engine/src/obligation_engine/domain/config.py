"""Tunable rules: lead times, escalation thresholds, horizon. Plain data, set from env by the shell."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from contract_schema import ObligationKind

DEFAULT_LEAD_DAYS: dict[str, int] = {
    ObligationKind.DELIVERABLE: 7,
    ObligationKind.MILESTONE: 14,
    ObligationKind.PAYMENT: 5,
    ObligationKind.NOTICE: 30,
    ObligationKind.COMPLIANCE: 14,
    ObligationKind.SLA: 0,  # an SLA window has nothing to prepare: no due-soon
}
DEFAULT_ESCALATE_DAYS: dict[str, int] = {
    ObligationKind.DELIVERABLE: 7,
    ObligationKind.MILESTONE: 7,
    ObligationKind.PAYMENT: 3,
    ObligationKind.NOTICE: 1,
    ObligationKind.COMPLIANCE: 7,
    ObligationKind.SLA: 7,
}


@dataclass(frozen=True)
class EngineConfig:
    lead_days: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LEAD_DAYS))
    escalate_days: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_ESCALATE_DAYS))
    horizon_days: int = 400  # recurrences are expanded this far ahead, then rolled forward
    lookback_days: int = 31  # SLA windows that closed longer ago are history (a late measurement creates its window)
    sla_grace_days: int = 3  # a measurement may arrive this long after its window closed
    park_seconds: int = 86_400  # how long an event for an unknown contract/obligation waits
    replan_days: int = 7  # how often the rolling horizon is extended
    keep_days: int = 400  # closed instances older than this are dropped (scorecards look back 365)
    max_occurrences: int = 2_000  # per definition and horizon: guards against FREQ=SECONDLY

    def lead(self, kind: str, override_days: int | None) -> timedelta:
        days = override_days if override_days is not None else self.lead_days.get(kind, 7)
        return timedelta(days=days)

    def escalate_after(self, kind: str) -> timedelta:
        return timedelta(days=self.escalate_days.get(kind, 7))
