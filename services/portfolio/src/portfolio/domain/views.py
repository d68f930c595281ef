"""What the panels answer: the JSON API's response models (OpenAPI documents them) and the CSV rows.

Money is never summed across currencies: every total is a list of per-currency figures."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, Field

BUCKETS = ("0-30", "31-60", "61-90", "91-120")


class Filters(BaseModel):
    """The dashboard's filters; None means all. `owner` is an e-mail ("my contracts")."""

    owner: str | None = None
    counterparty: str | None = Field(default=None, description="counterparty party_id")
    contract_type: str | None = None
    tag: str | None = None


class PipelineMoney(BaseModel):
    currency: str
    total: Decimal = Decimal(0)
    at_risk: Decimal = Field(default=Decimal(0), description="no decision yet")
    secured: Decimal = Field(default=Decimal(0), description="renew decided")
    renegotiating: Decimal = Decimal(0)
    walking_away: Decimal = Field(default=Decimal(0), description="terminate decided")


class PipelineBucket(BaseModel):
    bucket: str = Field(description="days until the notice deadline: 0-30, 31-60, 61-90 or 91-120")
    contracts: int = 0
    money: list[PipelineMoney] = []


class PipelineRow(BaseModel):
    contract_id: str
    title: str
    counterparty: str
    contract_type: str
    notice_deadline: date
    days_to_deadline: int
    bucket: str
    annual_value: Decimal
    currency: str
    auto_renew: bool
    untracked_notice: bool = Field(description="auto-renews without a notice period on record")
    crm_stage: str | None = None
    crm_status: str | None = None
    decision: str | None = None
    owner: str
    backup_owner: str | None = None


class PipelineView(BaseModel):
    """Panel 1: contracts whose notice deadline falls in the next 120 days."""

    as_of: date
    buckets: list[PipelineBucket]
    totals: list[PipelineMoney]
    untracked_notice: int = Field(description="contracts in the pipeline that auto-renew without a notice period")
    rows: list[PipelineRow]


class CompletionCounts(BaseModel):
    key: str
    name: str
    on_time: int = 0
    late: int = 0
    overdue: int = 0
    open: int = 0
    completion_rate: Decimal | None = Field(default=None, description="completed / (completed + overdue)")
    on_time_rate: Decimal | None = Field(default=None, description="on time / completed")


class DueRow(BaseModel):
    contract_id: str
    counterparty: str
    instance_id: str
    title: str
    kind: str
    due_at: datetime
    owner: str | None = None


class CompletionView(BaseModel):
    """Panel 2: obligations per counterparty and per contract type, and what falls due soon."""

    as_of: datetime
    total: CompletionCounts
    by_counterparty: list[CompletionCounts]
    by_contract_type: list[CompletionCounts]
    due_next_7_days: int
    due_next_30_days: int
    due_soon: list[DueRow] = Field(description="open obligations due in the next 30 days, soonest first")


class TimelineItem(BaseModel):
    occurred_at: datetime
    topic: str
    type: str
    summary: str
    event_id: str
    source: str


class TimelineView(BaseModel):
    """Panel 6: every event about one contract, from every topic, in business-time order."""

    contract_id: str
    title: str
    items: list[TimelineItem]
