"""The vendor risk level: rules kept in a configuration file (TOML), evaluated in pure code.

A counterparty's level is the highest level of any rule that holds for it (high > medium > low), and
"stable" when none holds; every rule that holds is shown as a reason. A rule whose metric has no value
yet (nothing measured, nothing completed) does not hold."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "risk_rules.toml"
LEVELS = ("high", "medium", "low")
Metric = Literal["sla_attainment", "on_time_rate", "overdue", "rejected_invoice_rate", "open_red_alerts"]


class RiskRule(BaseModel):
    level: Literal["high", "medium", "low"]
    metric: Metric
    below: Decimal | None = None
    at_least: Decimal | None = None
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_bound(self) -> RiskRule:
        if (self.below is None) == (self.at_least is None):
            raise ValueError(f"rule {self.reason!r}: give exactly one of below / at_least")
        return self

    @property
    def text(self) -> str:
        return f"{self.metric} < {self.below}" if self.below is not None else f"{self.metric} >= {self.at_least}"

    def holds(self, value: Decimal | int | None) -> bool:
        if value is None:
            return False
        if self.below is not None:
            return Decimal(value) < self.below
        assert self.at_least is not None
        return Decimal(value) >= self.at_least


class RiskRules(BaseModel):
    rules: list[RiskRule]


def load_rules(path: Path = DEFAULT_RULES) -> list[RiskRule]:
    """The rules of a TOML file (`[[rules]]` tables); a bad file fails at start-up, naming the rule."""
    return RiskRules.model_validate(tomllib.loads(path.read_text())).rules


def assess(metrics: dict[str, Decimal | int | None], rules: list[RiskRule]) -> tuple[str, list[str]]:
    held = [r for r in rules if r.holds(metrics.get(r.metric))]
    for level in LEVELS:
        if any(r.level == level for r in held):
            return level, [r.reason for r in sorted(held, key=lambda r: LEVELS.index(r.level))]
    return "stable", []
