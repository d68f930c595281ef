"""One valid instance of every event in the catalog, for round-trip tests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import contract_schema as cs
from contract_schema.base import Event

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
OWNER = cs.Person(name="Ada Owner", email="ada@example.com", timezone="Europe/Berlin")
BACKUP = cs.Person(name="Bo Backup", email="bo@example.com")


def terms(version: int = 1, effective_from: date = date(2026, 1, 1)) -> cs.ContractTerms:
    return cs.ContractTerms(
        version=version, effective_from=effective_from, currency="EUR", total_value=Decimal("120000.00"),
        effective_date=date(2026, 1, 1), end_date=date(2027, 12, 31), auto_renew=True,
        renewal_term_months=12, notice_period_days=90, payment_terms_days=30,
        rate_card=(cs.RateCardLine(
            line_id="L1", item_code="CONSULT-SR", unit="HUR", unit_price=Decimal("150.00"), currency="EUR",
            valid_from=date(2026, 1, 1),
            tiers=(cs.VolumeTier(from_quantity=Decimal(0), to_quantity=Decimal(100), unit_price=Decimal("150.00")),
                   cs.VolumeTier(from_quantity=Decimal(100), unit_price=Decimal("140.00"))),
            escalations=(cs.Escalation(effective_date=date(2027, 1, 1), percent=Decimal("3.5")),),
            tolerance_percent=Decimal("1")),),
        obligations=(
            cs.ObligationDefinition(obligation_id="M1", kind=cs.ObligationKind.MILESTONE, title="Go-live",
                                    due_date=date(2026, 6, 30), amount=Decimal("20000.00"), owner=OWNER),
            cs.ObligationDefinition(obligation_id="SLA1", kind=cs.ObligationKind.SLA, title="Availability",
                                    recurrence="FREQ=MONTHLY;BYMONTHDAY=1",
                                    sla=cs.SlaTerms(metric="availability", target=Decimal("99.9"),
                                                    monthly_fee=Decimal("10000.00"),
                                                    credit_percent_per_step=Decimal("5"), step=Decimal("0.1"),
                                                    credit_cap_percent=Decimal("25"))),
        ),
    )


def snapshot() -> cs.ContractSnapshot:
    return cs.ContractSnapshot(
        contract_id="C-1", tenant_id="acme", title="Consulting framework",
        counterparty=cs.Party(party_id="P-1", name="Globex", erp_vendor_id="V-100"),
        direction=cs.Direction.BUY_SIDE, contract_type="services", owner=OWNER, backup_owner=BACKUP,
        timezone="Europe/Berlin", status=cs.ContractStatus.ACTIVE,
        versions=(terms(1), terms(2, date(2026, 7, 1))), updated_at=NOW)


def _obligation(**extra: object) -> dict[str, object]:
    return dict(contract_id="C-1", tenant_id="acme", obligation_id="M1", instance_id="M1#1",
                kind=cs.ObligationKind.MILESTONE, due_at=NOW, owner=OWNER, occurred_at=NOW) | extra


def all_samples() -> list[Event]:
    line = cs.InvoiceLine(line_no=1, item_code="CONSULT-SR", quantity=Decimal("10"), unit="HUR",
                          unit_price=Decimal("150.00"), amount=Decimal("1500.00"), service_date=date(2026, 3, 1))
    sla = dict(metric="availability", window_start=NOW, window_end=NOW)
    samples: list[Event] = [
        snapshot(),
        cs.ContractActivated(contract_id="C-1", tenant_id="acme", version=1, occurred_at=NOW),
        cs.ContractAmended(contract_id="C-1", tenant_id="acme", version=2, occurred_at=NOW,
                           effective_from=date(2026, 7, 1), reason="rate change",
                           changes=(cs.FieldChange(field="total_value", old="100", new="120"),)),
        cs.ContractRenewed(contract_id="C-1", tenant_id="acme", version=3, occurred_at=NOW,
                           new_end_date=date(2028, 12, 31), renewal_term_months=12),
        cs.ContractTerminated(contract_id="C-1", tenant_id="acme", version=3, occurred_at=NOW,
                              terminated_on=date(2026, 12, 31), reason="convenience"),
        cs.ContractExpired(contract_id="C-1", tenant_id="acme", version=3, occurred_at=NOW,
                           expired_on=date(2027, 12, 31)),
        cs.ObligationScheduled(**_obligation(title="Go-live")),
        cs.ObligationDueSoon(**_obligation()),
        cs.ObligationOverdue(**_obligation()),
        cs.ObligationEscalated(**_obligation(overdue_since=NOW)),
        cs.ObligationCompleted(**_obligation(completed_at=NOW, on_time=True, origin=cs.Origin.ERP,
                                             source_system="sap", amount=Decimal("20000.00"), currency="EUR")),
        cs.ObligationWaived(**_obligation(reason="agreed")),
        cs.ObligationCancelled(**_obligation(reason="amended away")),
        cs.SlaMeasured(**_obligation(**sla, measured=Decimal("99.95"), target=Decimal("99.9"), met=True)),
        cs.SlaBreached(**_obligation(**sla, measured=Decimal("99.5"), target=Decimal("99.9"),
                                     service_credit=Decimal("2000.00"), currency="EUR")),
        cs.MilestoneCompleted(contract_id="C-1", obligation_id="M1", source_system="sap", occurred_at=NOW,
                              completed_at=NOW, evidence_ref="PRJ-9"),
        cs.DeliverableAccepted(contract_id="C-1", obligation_id="D1", source_system="jira", occurred_at=NOW,
                               accepted_at=NOW),
        cs.SlaMeasurement(contract_id="C-1", obligation_id="SLA1", source_system="prometheus", occurred_at=NOW,
                          metric="availability", window_start=NOW, window_end=NOW, value=Decimal("99.5")),
        cs.ReleaseMilestoneBilling(contract_id="C-1", tenant_id="acme", obligation_id="M1", occurred_at=NOW,
                                   amount=Decimal("20000.00"), currency="EUR", completed_at=NOW),
        cs.InvoiceReceived(invoice_id="INV-1", tenant_id="acme", vendor_id="V-100", invoice_number="2026-001",
                           contract_ref="C-1", issue_date=date(2026, 3, 31), currency="EUR",
                           payment_terms_days=30, lines=(line,), received_at=NOW),
        cs.InvoiceValidated(invoice_id="INV-1", tenant_id="acme", vendor_id="V-100", invoice_number="2026-001",
                            contract_id="C-1", status=cs.VerdictStatus.APPROVED, currency="EUR",
                            lines=(cs.LineVerdict(line_no=1, status=cs.VerdictStatus.APPROVED,
                                                  item_code="CONSULT-SR", billed_unit_price=Decimal("150.00"),
                                                  billed_amount=Decimal("1500.00"),
                                                  expected_unit_price=Decimal("150.00"),
                                                  expected_amount=Decimal("1500.00")),),
                            total_billed=Decimal("1500.00"), total_expected=Decimal("1500.00"), validated_at=NOW),
        cs.RenewalOpportunity(contract_id="C-1", tenant_id="acme", stage=cs.RenewalStage.DAYS_90,
                              close_date=date(2027, 10, 2), end_date=date(2027, 12, 31),
                              amount=Decimal("60000.00"), currency="EUR", owner=OWNER, auto_renewal_risk=True,
                              updated_at=NOW),
        cs.RenewalDecision(contract_id="C-1", tenant_id="acme", decision=cs.RenewalDecisionKind.RENEGOTIATE,
                           decided_at=NOW),
        cs.Scorecard(scorecard_id="P-1", scope=cs.ScorecardScope.COUNTERPARTY, counterparty_id="P-1",
                     window_start=date(2025, 11, 22), window_end=date(2026, 11, 22), obligations_due=4,
                     obligations_completed=3, completed_on_time=2, updated_at=NOW),
        cs.Alert(alert_id="A-1", tenant_id="acme", contract_id="C-1", alert_type="invoice.rejected",
                 tier=cs.Tier.RED, title="Invoice rejected", what="Overbilled by EUR 500.00",
                 dedup_key="invoice.rejected:C-1:INV-1", source_service="invoice-validator", raised_at=NOW),
        cs.NotificationRecorded(notification_id="N-1", alert_id="A-1", kind=cs.NotificationKind.DELIVERED,
                                channel="email", recipient="ada@example.com", at=NOW),
        cs.ClockAdvanced(now=NOW),
    ]
    return samples
