"""Panel 3, the vendor scorecard and risk snapshot: pure over one tenant's rows and the risk rules."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from contract_schema import round_money

from .panels import matches, state_of
from .risk import RiskRule, assess
from .rows import AlertRow, ContractRow, DeliveryRow, InvoiceRow, ObligationRow, ScorecardRow
from .views import Filters, MoneyFigure, RiskRuleView, ScorecardView, VendorRisk

RATE = Decimal("0.0001")


@dataclass
class _Tally:
    name: str
    sla_measurements: int = 0
    sla_met: int = 0
    credits: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    on_time: int = 0
    completed: int = 0
    overdue: int = 0
    invoices: int = 0
    rejected: int = 0
    open_red: int = 0


def _ratio(part: int, whole: int) -> Decimal | None:
    return None if whole == 0 else (Decimal(part) / Decimal(whole)).quantize(RATE)


def vendor_scorecards(contracts: Iterable[ContractRow], scorecards: Iterable[ScorecardRow],
                      obligations: Iterable[ObligationRow], invoices: Iterable[InvoiceRow],
                      alerts: Iterable[AlertRow], deliveries: Iterable[DeliveryRow], rules: list[RiskRule],
                      now: datetime, filters: Filters) -> ScorecardView:
    party = {c.contract_id: c.counterparty_id for c in contracts if matches(c, filters)}
    tallies = {c.counterparty_id: _Tally(c.counterparty_name) for c in contracts if c.contract_id in party}
    for s in scorecards:
        if (t := tallies.get(party.get(s.contract_id, ""))) is not None:
            t.sla_measurements += s.sla_measurements
            t.sla_met += s.sla_met
            if s.currency and s.credits_earned:
                t.credits[s.currency] += s.credits_earned
    for o in obligations:
        if (t := tallies.get(party.get(o.contract_id, ""))) is not None:
            state = state_of(o, now)
            t.completed += state in ("on_time", "late")
            t.on_time += state == "on_time"
            t.overdue += state == "overdue"
    for i in invoices:
        if (t := tallies.get(party.get(i.contract_id or "", ""))) is not None:
            t.invoices += 1
            t.rejected += i.status == "rejected"
    acknowledged = {d.alert_id for d in deliveries if d.acknowledged_at is not None}
    for a in alerts:
        if a.tier == "red" and a.alert_id not in acknowledged and (t := tallies.get(party.get(a.contract_id, ""))):
            t.open_red += 1
    out = []
    for key, t in sorted(tallies.items()):
        metrics: dict[str, Decimal | int | None] = {
            "sla_attainment": _ratio(t.sla_met, t.sla_measurements), "on_time_rate": _ratio(t.on_time, t.completed),
            "overdue": t.overdue, "rejected_invoice_rate": _ratio(t.rejected, t.invoices),
            "open_red_alerts": t.open_red}
        level, reasons = assess(metrics, rules)
        out.append(VendorRisk(
            counterparty_id=key, name=t.name, sla_measurements=t.sla_measurements, sla_met=t.sla_met,
            sla_attainment=_ratio(t.sla_met, t.sla_measurements),
            credits_earned=[MoneyFigure(currency=c, amount=round_money(a, c)) for c, a in sorted(t.credits.items())],
            on_time_rate=_ratio(t.on_time, t.completed), overdue=t.overdue, invoices=t.invoices,
            rejected_invoice_rate=_ratio(t.rejected, t.invoices), open_red_alerts=t.open_red, level=level,
            reasons=reasons))
    return ScorecardView(as_of=now, counterparties=out, rules=[
        RiskRuleView(level=r.level, reason=r.reason, rule=r.text) for r in rules])
