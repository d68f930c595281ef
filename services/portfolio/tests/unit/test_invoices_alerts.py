"""Panels 4, 5 and 7 as pure functions, and the merges behind them."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

from portfolio import samples as s
from portfolio.domain.invoices_alerts import alert_board, invoice_compliance, summary
from portfolio.domain.panels import obligation_completion, renewal_pipeline
from portfolio.domain.projections import merge, project_alert, project_notification, project_verdict
from portfolio.domain.risk import load_rules
from portfolio.domain.rows import AlertRow, DeliveryRow, InvoiceRow
from portfolio.domain.scorecards import vendor_scorecards
from portfolio.domain.views import Filters

from contract_schema import NotificationKind, Tier, VerdictStatus

from .test_panels import contract


def invoice(event: object) -> InvoiceRow:
    row = project_verdict(s.envelope(event), "t").rows[0]  # type: ignore[arg-type]
    assert isinstance(row, InvoiceRow)
    return row


def test_invoices_by_month_and_vendor_with_prevented_overpayment_and_the_review_queue() -> None:
    december = s.T0 - timedelta(days=10)
    rows = [invoice(s.verdict("I-1", billed="1000", expected="1000")),
            invoice(s.verdict("I-2", status=VerdictStatus.REJECTED, billed="1500", expected="1000", prevented="500",
                              reasons=("price.above_contract", "tier.wrong"))),
            invoice(s.verdict("I-3", status=VerdictStatus.NEEDS_REVIEW, billed="80", expected="0",
                              reasons=("price.above_contract",), vendor="V-2", at=december)),
            invoice(s.verdict("I-4", status=VerdictStatus.REJECTED, billed="90", expected="60", prevented="30",
                              currency="USD", at=december))]
    view = invoice_compliance([], rows, s.T0 + timedelta(days=2), Filters())
    assert [(m.key, m.currency, m.approved, m.rejected, m.needs_review) for m in view.by_month] == [
        ("2026-12", "EUR", 0, 0, 1), ("2026-12", "USD", 0, 1, 0), ("2027-01", "EUR", 1, 1, 0)]
    jan = view.by_month[2]
    assert (jan.billed, jan.expected, jan.prevented, jan.rejected_rate) == (
        Decimal("2500.00"), Decimal("2000.00"), Decimal("500.00"), Decimal("0.5000"))
    assert [(m.currency, m.amount) for m in view.prevented_this_month] == [("EUR", Decimal("500.00"))]
    assert [(m.currency, m.amount) for m in view.prevented_total] == [("EUR", Decimal("500.00")),
                                                                      ("USD", Decimal("30.00"))]
    assert [(r.code, r.invoices) for r in view.top_reasons] == [("price.above_contract", 2), ("tier.wrong", 1)]
    assert [(q.invoice_id, q.age_days) for q in view.review_queue] == [("I-3", 12)]
    assert [v.key for v in view.by_vendor] == ["V-1", "V-1", "V-2"]


def test_a_later_verdict_on_the_same_invoice_replaces_the_earlier_one() -> None:
    first = invoice(s.verdict(status=VerdictStatus.NEEDS_REVIEW))
    second = invoice(s.verdict(status=VerdictStatus.APPROVED, at=s.T0 + timedelta(hours=3)))
    assert merge(first, second) == merge(second, first) == second


def test_invoice_filters_go_through_the_contract() -> None:
    rows = [invoice(s.verdict("I-1", contract_id="C-1")), invoice(s.verdict("I-2", contract_id="C-2")),
            invoice(s.verdict("I-3", contract_id=None))]
    view = invoice_compliance([contract(contract_id="C-1", party="globex"), contract(contract_id="C-2")], rows,
                              s.T0, Filters(counterparty="globex"))
    assert sum(m.approved for m in view.by_month) == 1


def deliveries(*events: object) -> DeliveryRow:
    row: DeliveryRow | None = None
    for e in events:
        new = project_notification(s.envelope(e), "t").rows[0]  # type: ignore[arg-type]
        merged = merge(row, new)
        assert isinstance(merged, DeliveryRow)
        row = merged
    assert row is not None
    return row


def test_deliveries_merge_to_the_same_row_in_every_order() -> None:
    events = [s.notification(kind=NotificationKind.DELIVERED, at=s.T0 + timedelta(minutes=1)),
              s.notification(kind=NotificationKind.ESCALATED, at=s.T0 + timedelta(hours=4)),
              s.notification(kind=NotificationKind.ACKNOWLEDGED, at=s.T0 + timedelta(hours=5)),
              s.notification(kind=NotificationKind.ACKNOWLEDGED, at=s.T0 + timedelta(hours=6))]
    rows = {deliveries(*order).model_dump_json() for order in itertools.permutations(events)}
    assert len(rows) == 1
    row = deliveries(*events)
    assert row.acknowledged_at == s.T0 + timedelta(hours=5) and len(row.escalations) == 1


def alert(event: object) -> AlertRow:
    row = project_alert(s.envelope(event), "t").rows[0]  # type: ignore[arg-type]
    assert isinstance(row, AlertRow)
    return row


def test_open_alerts_by_owner_time_to_acknowledge_and_escalations() -> None:
    alerts = [alert(s.alert("A-1")), alert(s.alert("A-2", tier=Tier.YELLOW)), alert(s.alert("A-3", owner=None)),
              alert(s.alert("A-4", tier=Tier.GREEN)), alert(s.alert("A-5"))]
    rows = [deliveries(s.notification("A-1", NotificationKind.ESCALATED, at=s.T0 + timedelta(hours=2))),
            deliveries(s.notification("A-5", NotificationKind.ACKNOWLEDGED, at=s.T0 + timedelta(minutes=30)))]
    view = alert_board([], alerts, rows, s.T0 + timedelta(days=1), Filters())
    assert (view.red_open, view.yellow_open, view.acknowledged, view.escalated) == (2, 1, 1, 1)
    assert view.ack_seconds_median == 1800.0
    assert [(o.owner, o.red_open, o.yellow_open) for o in view.by_owner] == [
        ("olivia@example.com", 1, 1), ("unassigned", 1, 0)]
    assert [(o.alert_id, o.escalations) for o in view.open] == [("A-1", 1), ("A-3", 0), ("A-2", 0)]


def test_the_summary_names_each_figures_panel_and_keeps_currencies_apart() -> None:
    contracts = [contract(contract_id="C-1", days_to_deadline=10, value="100"),
                 contract(contract_id="C-2", days_to_deadline=10, value="50", currency="USD")]
    pipe = renewal_pipeline(contracts, [], [], s.TODAY, Filters())
    done = obligation_completion(contracts, [], s.T0, Filters())
    bills = invoice_compliance(contracts, [invoice(s.verdict(status=VerdictStatus.REJECTED, prevented="7"))], s.T0,
                               Filters())
    board = alert_board(contracts, [alert(s.alert())], [], s.T0, Filters())
    vendors = vendor_scorecards(contracts, [], [], [], [alert(s.alert()), alert(s.alert("A-2"))], [], load_rules(),
                                s.T0, Filters())
    figures = {f.name: (f.value, f.detail) for f in summary(pipe, done, bills, board, vendors, s.T0).figures}
    assert figures["renewal value at risk (EUR)"] == ("100.00", "/v1/portfolio/pipeline")
    assert figures["renewal value at risk (USD)"] == ("50.00", "/v1/portfolio/pipeline")
    assert figures["overpayment prevented this month (EUR)"] == ("7.00", "/v1/portfolio/invoices")
    assert figures["open red alerts"] == ("1", "/v1/portfolio/alerts")
    assert figures["counterparties at high risk"] == ("1", "/v1/portfolio/vendors")
