"""What the checks write: counts and violations; and the small helpers they share."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..history import Seen

EFFECT_TOPICS = {
    "invoice-validator": "ap.invoice.validated.v1", "contract-registry": "clm.contract.state.v1",
    "obligation-engine": "clm.obligation.events.v1", "renewal-sync": "crm.renewal.opportunity.v1",
    "notifier": "clm.notification.v1",
}


@dataclass
class Violation:
    check: str
    kind: str  # lost | duplicated | divergent | broken
    detail: str


@dataclass
class Report:
    inputs: Counter[str] = field(default_factory=Counter)
    latency: dict[str, Any] = field(default_factory=dict)
    effects: Counter[str] = field(default_factory=Counter)
    redelivered: Counter[str] = field(default_factory=Counter)
    dlq: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    recovery: list[dict[str, Any]] = field(default_factory=list)
    connections: dict[str, list[int]] = field(default_factory=dict)  # process -> broker-side ports it talks to

    def add(self, check: str, kind: str, detail: str) -> None:
        self.violations.append(Violation(check, kind, detail))

    def count(self, kind: str, check: str | None = None) -> int:
        return sum(1 for v in self.violations if v.kind == kind and (check is None or v.check == check))


def distinct(records: list[Seen]) -> tuple[set[str], int]:
    """(distinct ce_ids, records beyond the first of each ce_id)."""
    ids = [r.ce_id or f"{r.topic}:{r.partition}:{r.offset}" for r in records]
    return set(ids), len(ids) - len(set(ids))


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3)


def raw(s: Seen) -> bytes:
    return s.raw + (s.key or "").encode()
