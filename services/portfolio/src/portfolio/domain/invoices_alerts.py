"""Panels 4 (invoice compliance), 5 (alerts) and 7 (executive summary): pure functions over one tenant's rows."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal

from contract_schema import round_money

from .panels import matches
from .rows import AlertRow, ContractRow, DeliveryRow, InvoiceRow
from .views import (
    AlertView,
    CompletionView,
    Filters,
    InvoiceView,
    MoneyFigure,
    OpenAlert,
    OwnerAlerts,
    PipelineView,
    ReasonCount,
    ReviewItem,
    ScorecardView,
    SummaryFigure,
    SummaryView,
    VerdictCounts,
)

RATE = Decimal("0.0001")
TOP_REASONS = 10


def _in_scope(contracts: Iterable[ContractRow], filters: Filters) -> Callable[[str | None], bool]:
    """Whether a row about `contract_id` passes the filters (no filter: every row, with a contract or not)."""
    if filters == Filters():
        return lambda _cid: True
    ok = {c.contract_id for c in contracts if matches(c, filters)}
    return lambda cid: cid in ok


def _group(key: str, currency: str, rows: list[InvoiceRow]) -> VerdictCounts:
    status = Counter(r.status for r in rows)
    return VerdictCounts(
        key=key, currency=currency, approved=status["approved"], rejected=status["rejected"],
        needs_review=status["needs-review"],
        billed=round_money(sum((r.total_billed for r in rows), Decimal(0)), currency),
        expected=round_money(sum((r.total_expected for r in rows), Decimal(0)), currency),
        prevented=round_money(sum((r.prevented for r in rows), Decimal(0)), currency),
        rejected_rate=(Decimal(status["rejected"]) / Decimal(len(rows))).quantize(RATE))


def _money(rows: Iterable[InvoiceRow]) -> list[MoneyFigure]:
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        sums[r.currency] += r.prevented
    return [MoneyFigure(currency=c, amount=round_money(a, c)) for c, a in sorted(sums.items()) if a]


def invoice_compliance(contracts: Iterable[ContractRow], invoices: Iterable[InvoiceRow], now: datetime,
                       filters: Filters) -> InvoiceView:
    keep = _in_scope(contracts, filters)
    rows = [r for r in invoices if keep(r.contract_id)]
    months: dict[tuple[str, str], list[InvoiceRow]] = defaultdict(list)
    vendors: dict[tuple[str, str], list[InvoiceRow]] = defaultdict(list)
    for r in rows:
        months[(r.validated_at.strftime("%Y-%m"), r.currency)].append(r)
        vendors[(r.vendor_id, r.currency)].append(r)
    reasons = Counter(code for r in rows for code in set(r.reason_codes))
    month = now.strftime("%Y-%m")
    queue = sorted((r for r in rows if r.status == "needs-review"), key=lambda r: (r.validated_at, r.invoice_id))
    return InvoiceView(
        as_of=now, by_month=[_group(k, c, g) for (k, c), g in sorted(months.items())],
        by_vendor=[_group(k, c, g) for (k, c), g in sorted(vendors.items())],
        prevented_this_month=_money(r for r in rows if r.validated_at.strftime("%Y-%m") == month),
        prevented_total=_money(rows),
        top_reasons=[ReasonCount(code=c, invoices=n) for c, n in
                     sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]],
        review_queue=[ReviewItem(invoice_id=r.invoice_id, invoice_number=r.invoice_number, vendor_id=r.vendor_id,
                                 contract_id=r.contract_id, billed=r.total_billed, currency=r.currency,
                                 waiting_since=r.validated_at, age_days=max(0, (now - r.validated_at).days))
                      for r in queue])


def alert_board(contracts: Iterable[ContractRow], alerts: Iterable[AlertRow], deliveries: Iterable[DeliveryRow],
                now: datetime, filters: Filters) -> AlertView:
    keep = _in_scope(contracts, filters)
    by_alert = {d.alert_id: d for d in deliveries}
    rows = [a for a in alerts if keep(a.contract_id)]
    owners: dict[str, Counter[str]] = defaultdict(Counter)
    waits: list[float] = []
    open_alerts: list[OpenAlert] = []
    escalated = 0
    for a in rows:
        d = by_alert.get(a.alert_id)
        escalations = len(d.escalations) if d else 0
        escalated += escalations > 0
        if d is not None and d.acknowledged_at is not None:
            waits.append(max(0.0, (d.acknowledged_at - a.raised_at).total_seconds()))
            continue
        if a.tier in ("red", "yellow"):
            owners[a.owner_email or "unassigned"][a.tier] += 1
            open_alerts.append(OpenAlert(alert_id=a.alert_id, contract_id=a.contract_id, tier=a.tier, title=a.title,
                                         owner=a.owner_email, raised_at=a.raised_at, escalations=escalations))
    open_alerts.sort(key=lambda o: (o.tier != "red", o.raised_at, o.alert_id))
    return AlertView(
        as_of=now, red_open=sum(o.tier == "red" for o in open_alerts),
        yellow_open=sum(o.tier == "yellow" for o in open_alerts),
        by_owner=[OwnerAlerts(owner=o, red_open=c["red"], yellow_open=c["yellow"]) for o, c in sorted(owners.items())],
        acknowledged=len(waits), ack_seconds_median=statistics.median(waits) if waits else None,
        ack_seconds_max=max(waits) if waits else None, escalated=escalated, open=open_alerts)


def summary(pipeline: PipelineView, completion: CompletionView, invoices: InvoiceView, alerts: AlertView,
            vendors: ScorecardView, now: datetime) -> SummaryView:
    """The executive page: money per currency, never summed across currencies."""
    figures = [SummaryFigure(name=f"renewal value at risk ({m.currency})", value=str(m.at_risk),
                             detail="/v1/portfolio/pipeline") for m in pipeline.totals]
    figures += [SummaryFigure(name="contracts with a notice deadline in 30 days",
                              value=str(pipeline.buckets[0].contracts), detail="/v1/portfolio/pipeline"),
                SummaryFigure(name="obligations overdue", value=str(completion.total.overdue),
                              detail="/v1/portfolio/obligations"),
                SummaryFigure(name="on-time obligation rate", value=str(completion.total.on_time_rate or "n/a"),
                              detail="/v1/portfolio/obligations")]
    figures += [SummaryFigure(name=f"overpayment prevented this month ({m.currency})", value=str(m.amount),
                              detail="/v1/portfolio/invoices") for m in invoices.prevented_this_month]
    figures += [SummaryFigure(name="invoices waiting for review", value=str(len(invoices.review_queue)),
                              detail="/v1/portfolio/invoices"),
                SummaryFigure(name="open red alerts", value=str(alerts.red_open), detail="/v1/portfolio/alerts"),
                SummaryFigure(name="counterparties at high risk",
                              value=str(sum(v.level == "high" for v in vendors.counterparties)),
                              detail="/v1/portfolio/vendors")]
    return SummaryView(as_of=now, figures=figures)
