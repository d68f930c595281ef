"""Pure projections: an event (with its CloudEvents attributes) -> the rows it contributes, and the
merge of such a row into what the read model already holds. No I/O; the service applies them.

Merges are order-independent (newest by business time wins; overdue, completed and closed are
sticky), so redelivery changes nothing and a rebuild that reads the topics in another
interleaving gives the same rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from contract_schema import (
    Alert,
    ContractAmended,
    ContractEvent,
    ContractRenewed,
    ContractSnapshot,
    ContractTerminated,
    ContractTerms,
    Envelope,
    InvoiceValidated,
    NotificationKind,
    NotificationRecorded,
    round_money,
)
from contract_schema.obligation import (
    ObligationCancelled,
    ObligationCompleted,
    ObligationEvent,
    ObligationOverdue,
    ObligationWaived,
    Scorecard,
    ScorecardScope,
    SlaBreached,
    SlaMeasured,
)
from contract_schema.renewal import RenewalDecision, RenewalOpportunity

from .rows import (
    AlertRow,
    ContractRow,
    DecisionRow,
    DeliveryRow,
    EventEntry,
    InvoiceRow,
    ObligationRow,
    RenewalRow,
    ScorecardRow,
)

Row = ContractRow | RenewalRow | DecisionRow | ObligationRow | InvoiceRow | AlertRow | DeliveryRow | ScorecardRow
NO_TENANT = "-"  # the tenant column of rows whose events carry none (deliveries: found through their alert)


@dataclass(frozen=True)
class Projection:
    entry: EventEntry  # every event is kept for the timeline and the idempotency check
    rows: tuple[Row, ...] = ()


def entry(envelope: Envelope, topic: str, occurred_at: datetime, summary: str) -> EventEntry:
    event = envelope.event
    return EventEntry(source=envelope.source, id=envelope.id, topic=topic, type=type(event).__name__,
                      tenant_id=getattr(event, "tenant_id", None), contract_id=getattr(event, "contract_id", None),
                      occurred_at=occurred_at, summary=summary, payload=event.model_dump(mode="json"))


def annual_value(terms: ContractTerms) -> Decimal:
    """Contract value annualised over the term (inclusive days), as renewal-sync states it to the CRM;
    an evergreen contract's value as given."""
    if terms.end_date is None or terms.end_date < terms.effective_date:
        return terms.total_value
    days = (terms.end_date - terms.effective_date).days + 1
    return round_money(terms.total_value * Decimal(365) / Decimal(days), terms.currency)


def project_snapshot(envelope: Envelope, topic: str) -> Projection:
    s = envelope.event
    assert isinstance(s, ContractSnapshot)
    terms = s.current
    deadline = None if terms.end_date is None else terms.end_date - timedelta(days=terms.notice_period_days)
    row = ContractRow(
        tenant_id=s.tenant_id, contract_id=s.contract_id, title=s.title, counterparty_id=s.counterparty.party_id,
        counterparty_name=s.counterparty.name, contract_type=s.contract_type, owner=s.owner,
        backup_owner=s.backup_owner, tags=s.tags, status=s.status.value, version=terms.version,
        currency=terms.currency, annual_value=annual_value(terms),
        auto_renew=terms.auto_renew, notice_period_days=terms.notice_period_days, end_date=terms.end_date,
        notice_deadline=deadline, updated_at=s.updated_at)
    summary = f"snapshot v{terms.version}, {s.status.value}"
    return Projection(entry(envelope, topic, s.updated_at, summary), (row,))


def project_contract_event(envelope: Envelope, topic: str) -> Projection:
    e = envelope.event
    assert isinstance(e, ContractEvent)
    summary = f"{type(e).__name__.removeprefix('Contract').lower()} (v{e.version})"
    if isinstance(e, ContractAmended):
        fields = ", ".join(c.field for c in e.changes) or "nothing listed"
        summary += f" from {e.effective_from}: {fields}" + (f" ({e.reason})" if e.reason else "")
    elif isinstance(e, ContractRenewed) and e.new_end_date:
        summary += f" to {e.new_end_date}"
    elif isinstance(e, ContractTerminated):
        summary += f" on {e.terminated_on}" + (f" ({e.reason})" if e.reason else "")
    return Projection(entry(envelope, topic, e.occurred_at, summary))


def project_opportunity(envelope: Envelope, topic: str) -> Projection:
    o = envelope.event
    assert isinstance(o, RenewalOpportunity)
    row = RenewalRow(tenant_id=o.tenant_id, contract_id=o.contract_id, stage=o.stage.value, status=o.status.value,
                     decision=o.decision, updated_at=o.updated_at)
    return Projection(entry(envelope, topic, o.updated_at, f"renewal stage {o.stage.value}, {o.status.value}"),
                      (row,))


def project_decision(envelope: Envelope, topic: str) -> Projection:
    d = envelope.event
    assert isinstance(d, RenewalDecision)
    row = DecisionRow(tenant_id=d.tenant_id, contract_id=d.contract_id, decision=d.decision.value,
                      decided_by=d.decided_by, decided_at=d.decided_at)
    by = f" by {d.decided_by}" if d.decided_by else ""
    return Projection(entry(envelope, topic, d.decided_at, f"renewal decision: {d.decision.value}{by}"), (row,))


def project_obligation(envelope: Envelope, topic: str) -> Projection:
    o = envelope.event
    assert isinstance(o, ObligationEvent)
    kind = type(o).__name__.removeprefix("Obligation").lower()
    summary = f"{o.title or o.obligation_id}: {kind}"
    if isinstance(o, SlaMeasured | SlaBreached):
        # SLA windows are measurements, not tasks: they belong to the scorecard panel, not to completion.
        return Projection(entry(envelope, topic, o.occurred_at, f"{o.metric} {o.measured} (target {o.target})"))
    completed = o.completed_at if isinstance(o, ObligationCompleted) else None
    closed = "waived" if isinstance(o, ObligationWaived) else "cancelled" if isinstance(o, ObligationCancelled) \
        else None
    row = ObligationRow(
        tenant_id=o.tenant_id, contract_id=o.contract_id, instance_id=o.instance_id, obligation_id=o.obligation_id,
        kind=o.kind.value, title=o.title, due_at=o.due_at, owner_email=o.owner.email if o.owner else None,
        facts_at=o.occurred_at, overdue=isinstance(o, ObligationOverdue), completed_at=completed,
        on_time=o.on_time if isinstance(o, ObligationCompleted) else None, closed=closed)
    return Projection(entry(envelope, topic, o.occurred_at, summary), (row,))


def project_verdict(envelope: Envelope, topic: str) -> Projection:
    v = envelope.event
    assert isinstance(v, InvoiceValidated)
    row = InvoiceRow(tenant_id=v.tenant_id, invoice_id=v.invoice_id, vendor_id=v.vendor_id,
                     invoice_number=v.invoice_number, contract_id=v.contract_id, status=v.status.value,
                     currency=v.currency, total_billed=v.total_billed, total_expected=v.total_expected,
                     prevented=v.prevented_overpayment, reason_codes=v.reason_codes, validated_at=v.validated_at)
    reasons = f" ({', '.join(v.reason_codes)})" if v.reason_codes else ""
    summary = f"invoice {v.invoice_number}: {v.status.value}, billed {v.total_billed} {v.currency}{reasons}"
    return Projection(entry(envelope, topic, v.validated_at, summary), (row,))


def project_alert(envelope: Envelope, topic: str) -> Projection:
    a = envelope.event
    assert isinstance(a, Alert)
    row = AlertRow(tenant_id=a.tenant_id, alert_id=a.alert_id, contract_id=a.contract_id, alert_type=a.alert_type,
                   tier=a.tier.value, title=a.title, owner_email=a.owner.email if a.owner else None,
                   raised_at=a.raised_at)
    return Projection(entry(envelope, topic, a.raised_at, f"{a.tier.value} alert: {a.title}"), (row,))


def project_notification(envelope: Envelope, topic: str) -> Projection:
    n = envelope.event
    assert isinstance(n, NotificationRecorded)
    row = DeliveryRow(alert_id=n.alert_id, last_at=n.at,
                      delivered_at=n.at if n.kind is NotificationKind.DELIVERED else None,
                      acknowledged_at=n.at if n.kind is NotificationKind.ACKNOWLEDGED else None,
                      escalations=(n.notification_id,) if n.kind is NotificationKind.ESCALATED else ())
    where = f" via {n.channel}" if n.channel else ""
    return Projection(entry(envelope, topic, n.at, f"alert {n.alert_id} {n.kind.value}{where}"), (row,))


def project_scorecard(envelope: Envelope, topic: str) -> Projection:
    """A contract's scorecard becomes a row; a counterparty's (summed over every tenant's contracts with that
    counterparty, and without a tenant) is kept for the record only: the panel sums the tenant's own."""
    c = envelope.event
    assert isinstance(c, Scorecard)
    summary = f"scorecard {c.window_start}..{c.window_end}: SLA {c.sla_met}/{c.sla_measurements} met"
    if c.scope is not ScorecardScope.CONTRACT or c.contract_id is None:
        return Projection(entry(envelope, topic, c.updated_at, summary))
    row = ScorecardRow(scorecard_id=c.scorecard_id, counterparty_id=c.counterparty_id, contract_id=c.contract_id,
                       sla_measurements=c.sla_measurements, sla_met=c.sla_met, credits_earned=c.credits_earned,
                       currency=c.currency, updated_at=c.updated_at)
    return Projection(entry(envelope, topic, c.updated_at, summary), (row,))


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return min(x for x in (a, b) if x is not None) if (a or b) else None


def merge_delivery(current: DeliveryRow, new: DeliveryRow) -> DeliveryRow:
    return DeliveryRow(alert_id=current.alert_id, last_at=max(current.last_at, new.last_at),
                       delivered_at=_earliest(current.delivered_at, new.delivered_at),
                       acknowledged_at=_earliest(current.acknowledged_at, new.acknowledged_at),
                       escalations=tuple(sorted(set(current.escalations) | set(new.escalations))))


# ---- merges -------------------------------------------------------------------------------------------

_CLOSED_RANK = {None: 0, "cancelled": 1, "waived": 2}


def _newest(current: Row, new: Row, at: str) -> Row:
    """The row with the later business time; on a tie the larger dump, so the choice never depends on order."""
    a, b = getattr(current, at), getattr(new, at)
    if a != b:
        return new if b > a else current
    return new if new.model_dump_json() > current.model_dump_json() else current


def merge_obligation(current: ObligationRow, new: ObligationRow) -> ObligationRow:
    base = _newest(current, new, "facts_at")
    assert isinstance(base, ObligationRow)
    completions = [r for r in (current, new) if r.completed_at is not None]
    first = min(completions, key=lambda r: (r.completed_at, r.on_time is True)) if completions else None
    closed = max((current.closed, new.closed), key=lambda c: _CLOSED_RANK[c])
    return base.model_copy(update={
        "due_at": base.due_at or current.due_at or new.due_at,
        "overdue": current.overdue or new.overdue,
        "completed_at": first.completed_at if first else None,
        "on_time": first.on_time if first else None,
        "closed": closed,
    })


def merge(current: Row | None, new: Row) -> Row:
    """What the read model holds after `new` arrives where it held `current` (same table and key)."""
    if current is None:
        return new
    if isinstance(new, ObligationRow):
        assert isinstance(current, ObligationRow)
        return merge_obligation(current, new)
    if isinstance(new, DeliveryRow):
        assert isinstance(current, DeliveryRow)
        return merge_delivery(current, new)
    at = {ContractRow: "updated_at", RenewalRow: "updated_at", DecisionRow: "decided_at", InvoiceRow: "validated_at",
          AlertRow: "raised_at", ScorecardRow: "updated_at"}[type(new)]
    return _newest(current, new, at)


def row_key(row: Row) -> tuple[str, str, str]:
    """(table, tenant, key) where the row lives."""
    if isinstance(row, ObligationRow):
        return "obligations", row.tenant_id, row.key
    if isinstance(row, InvoiceRow):
        return "invoices", row.tenant_id, row.invoice_id
    if isinstance(row, AlertRow):
        return "alerts", row.tenant_id, row.alert_id
    if isinstance(row, DeliveryRow):
        return "deliveries", NO_TENANT, row.alert_id
    if isinstance(row, ScorecardRow):
        return "scorecards", NO_TENANT, row.scorecard_id
    table = {ContractRow: "contracts", RenewalRow: "renewals", DecisionRow: "decisions"}[type(row)]
    return table, row.tenant_id, row.contract_id
