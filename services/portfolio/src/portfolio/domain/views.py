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


class VerdictCounts(BaseModel):
    """Invoices of one group in one currency: counts by verdict and the money."""

    key: str = Field(description="the month (YYYY-MM) or the vendor id")
    currency: str
    approved: int = 0
    rejected: int = 0
    needs_review: int = 0
    billed: Decimal = Decimal(0)
    expected: Decimal = Decimal(0)
    prevented: Decimal = Field(default=Decimal(0), description="overpayment prevented")
    rejected_rate: Decimal | None = Field(default=None, description="rejected / invoices")


class ReasonCount(BaseModel):
    code: str
    invoices: int


class ReviewItem(BaseModel):
    invoice_id: str
    invoice_number: str
    vendor_id: str
    contract_id: str | None = None
    billed: Decimal
    currency: str
    waiting_since: datetime
    age_days: int


class MoneyFigure(BaseModel):
    currency: str
    amount: Decimal


class InvoiceView(BaseModel):
    """Panel 4: invoices by verdict per month and per vendor, overpayment prevented, reasons, the review queue."""

    as_of: datetime
    by_month: list[VerdictCounts]
    by_vendor: list[VerdictCounts]
    prevented_this_month: list[MoneyFigure]
    prevented_total: list[MoneyFigure]
    top_reasons: list[ReasonCount] = Field(description="reason codes by the number of invoices carrying them")
    review_queue: list[ReviewItem] = Field(description="invoices waiting for review, oldest first")


class OwnerAlerts(BaseModel):
    owner: str
    red_open: int = 0
    yellow_open: int = 0


class OpenAlert(BaseModel):
    alert_id: str
    contract_id: str
    tier: str
    title: str
    owner: str | None = None
    raised_at: datetime
    escalations: int


class AlertView(BaseModel):
    """Panel 5: open red and yellow alerts by owner, time to acknowledge, escalations."""

    as_of: datetime
    red_open: int
    yellow_open: int
    by_owner: list[OwnerAlerts]
    acknowledged: int
    ack_seconds_median: float | None = Field(default=None, description="raised -> first acknowledgement")
    ack_seconds_max: float | None = None
    escalated: int = Field(description="alerts escalated at least once")
    open: list[OpenAlert] = Field(description="open red and yellow alerts, red first, oldest first")


class SummaryFigure(BaseModel):
    name: str
    value: str
    detail: str = Field(description="the panel the figure comes from")


class SummaryView(BaseModel):
    """Panel 7: the few figures that matter, each linking to its panel."""

    as_of: datetime
    figures: list[SummaryFigure]


class VendorRisk(BaseModel):
    counterparty_id: str
    name: str
    sla_measurements: int = 0
    sla_met: int = 0
    sla_attainment: Decimal | None = Field(default=None, description="SLA windows met / measured")
    credits_earned: list[MoneyFigure] = Field(default=[], description="service credits, per currency")
    on_time_rate: Decimal | None = None
    overdue: int = 0
    invoices: int = 0
    rejected_invoice_rate: Decimal | None = None
    open_red_alerts: int = 0
    level: str = Field(description="high, medium, low or stable, from the risk rules")
    reasons: list[str] = Field(description="every rule that holds, highest level first")


class RiskRuleView(BaseModel):
    level: str
    rule: str
    reason: str


class ScorecardView(BaseModel):
    """Panel 3: per counterparty, SLA attainment and credits, on-time rate, rejected invoices, red alerts, risk."""

    as_of: datetime
    counterparties: list[VendorRisk]
    rules: list[RiskRuleView] = Field(description="the rules the levels come from, as configured")
