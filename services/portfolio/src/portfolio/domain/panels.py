"""Pure panel figures over the read model's rows of one tenant. No I/O: the service loads the rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal

from contract_schema import round_money

from .rows import ContractRow, DecisionRow, EventEntry, ObligationRow, RenewalRow
from .views import (
    BUCKETS,
    CompletionCounts,
    CompletionView,
    DueRow,
    Filters,
    PipelineBucket,
    PipelineMoney,
    PipelineRow,
    PipelineView,
    TimelineItem,
    TimelineView,
)

# Contracts that can still renew or be given notice; drafts, expired and terminated ones cannot.
LIVE_STATUSES = frozenset({"active", "renewed", "suspended"})
_CATEGORY = {None: "at_risk", "renew": "secured", "renegotiate": "renegotiating", "terminate": "walking_away"}
RATE = Decimal("0.0001")
_FIGURES = ("total", "at_risk", "secured", "renegotiating", "walking_away")


def matches(c: ContractRow, f: Filters) -> bool:
    return ((f.owner is None or c.owner.email.lower() == f.owner.lower())
            and (f.counterparty is None or c.counterparty_id == f.counterparty)
            and (f.contract_type is None or c.contract_type == f.contract_type)
            and (f.tag is None or f.tag in c.tags))


def bucket_of(days: int) -> str | None:
    if days < 0 or days > 120:
        return None
    return BUCKETS[0] if days <= 30 else BUCKETS[(days - 1) // 30]


def decision_of(renewal: RenewalRow | None, decision: DecisionRow | None) -> str | None:
    """The decision recorded in the CRM; the opportunity's own field when no decision event was seen."""
    if decision is not None:
        return decision.decision
    return renewal.decision if renewal is not None else None


def renewal_pipeline(contracts: Iterable[ContractRow], renewals: Iterable[RenewalRow],
                     decisions: Iterable[DecisionRow], today: date, filters: Filters) -> PipelineView:
    by_renewal = {r.contract_id: r for r in renewals}
    by_decision = {d.contract_id: d for d in decisions}
    rows: list[PipelineRow] = []
    for c in contracts:
        if c.status not in LIVE_STATUSES or c.notice_deadline is None or not matches(c, filters):
            continue
        days = (c.notice_deadline - today).days
        bucket = bucket_of(days)
        if bucket is None:
            continue
        renewal = by_renewal.get(c.contract_id)
        rows.append(PipelineRow(
            contract_id=c.contract_id, title=c.title, counterparty=c.counterparty_name,
            contract_type=c.contract_type, notice_deadline=c.notice_deadline, days_to_deadline=days, bucket=bucket,
            annual_value=c.annual_value, currency=c.currency, auto_renew=c.auto_renew,
            untracked_notice=c.auto_renew and c.notice_period_days == 0,
            crm_stage=renewal.stage if renewal else None, crm_status=renewal.status if renewal else None,
            decision=decision_of(renewal, by_decision.get(c.contract_id)), owner=c.owner.email,
            backup_owner=c.backup_owner.email if c.backup_owner else None))
    rows.sort(key=lambda r: (r.notice_deadline, r.contract_id))
    buckets = [PipelineBucket(bucket=b, contracts=sum(1 for r in rows if r.bucket == b),
                              money=_money(r for r in rows if r.bucket == b)) for b in BUCKETS]
    return PipelineView(as_of=today, buckets=buckets, totals=_money(rows),
                        untracked_notice=sum(1 for r in rows if r.untracked_notice), rows=rows)


def _money(rows: Iterable[PipelineRow]) -> list[PipelineMoney]:
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for r in rows:
        sums[r.currency]["total"] += r.annual_value
        sums[r.currency][_CATEGORY.get(r.decision, "at_risk")] += r.annual_value
    return [PipelineMoney(currency=cur, **{k: round_money(figures[k], cur) for k in _FIGURES})
            for cur, figures in sorted(sums.items())]


# ---- obligation completion ------------------------------------------------------------------------------

def state_of(o: ObligationRow, now: datetime) -> str | None:
    """on_time / late / overdue / open; None for a waived or cancelled one (it is no longer owed)."""
    if o.completed_at is not None:
        return "on_time" if o.on_time else "late"
    if o.closed is not None:
        return None
    if o.overdue or (o.due_at is not None and o.due_at < now):
        return "overdue"
    return "open"


def _ratio(part: int, whole: int) -> Decimal | None:
    return None if whole == 0 else (Decimal(part) / Decimal(whole)).quantize(RATE)


def _counts(key: str, name: str, states: Sequence[str]) -> CompletionCounts:
    n = {s: states.count(s) for s in ("on_time", "late", "overdue", "open")}
    completed = n["on_time"] + n["late"]
    return CompletionCounts(key=key, name=name, **n, completion_rate=_ratio(completed, completed + n["overdue"]),
                            on_time_rate=_ratio(n["on_time"], completed))


def obligation_completion(contracts: Iterable[ContractRow], obligations: Iterable[ObligationRow], now: datetime,
                          filters: Filters) -> CompletionView:
    by_id = {c.contract_id: c for c in contracts}
    filtering = filters != Filters()
    states: list[str] = []
    per_party: dict[tuple[str, str], list[str]] = defaultdict(list)
    per_type: dict[str, list[str]] = defaultdict(list)
    due: list[DueRow] = []
    for o in obligations:
        contract = by_id.get(o.contract_id)
        if filtering and (contract is None or not matches(contract, filters)):
            continue
        state = state_of(o, now)
        if state is None:
            continue
        party = (contract.counterparty_id, contract.counterparty_name) if contract else ("unknown", "unknown")
        states.append(state)
        per_party[party].append(state)
        per_type[contract.contract_type if contract else "unknown"].append(state)
        if state == "open" and o.due_at is not None and o.due_at <= now + timedelta(days=30):
            due.append(DueRow(contract_id=o.contract_id, counterparty=party[1], instance_id=o.instance_id,
                              title=o.title or o.obligation_id, kind=o.kind, due_at=o.due_at, owner=o.owner_email))
    due.sort(key=lambda d: (d.due_at, d.contract_id, d.instance_id))
    week = now + timedelta(days=7)
    return CompletionView(
        as_of=now, total=_counts("all", "all", states),
        by_counterparty=[_counts(k, name, s) for (k, name), s in sorted(per_party.items())],
        by_contract_type=[_counts(k, k, s) for k, s in sorted(per_type.items())],
        due_next_7_days=sum(1 for d in due if d.due_at <= week), due_next_30_days=len(due), due_soon=due)


def timeline(contract: ContractRow, entries: Iterable[EventEntry]) -> TimelineView:
    items = [TimelineItem(occurred_at=e.occurred_at, topic=e.topic, type=e.type, summary=e.summary, event_id=e.id,
                          source=e.source) for e in entries]
    items.sort(key=lambda i: (i.occurred_at, i.topic, i.event_id))
    return TimelineView(contract_id=contract.contract_id, title=contract.title, items=items)
