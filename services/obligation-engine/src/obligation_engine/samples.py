"""Sample contracts for tests, the benchmark and demos (one-off, recurring, milestone and SLA obligations)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from contract_schema import (
    ContractSnapshot,
    ContractStatus,
    ContractTerms,
    Direction,
    ObligationDefinition,
    ObligationKind,
    Party,
    Person,
    SlaComparison,
    SlaTerms,
)

OWNER = Person(name="Olivia Owner", email="olivia@example.com")
BACKUP = Person(name="Ben Backup", email="ben@example.com")


def sla_terms(**overrides: object) -> SlaTerms:
    values: dict[str, object] = dict(metric="availability", target=Decimal("99.9"), comparison=SlaComparison.AT_LEAST,
                                     window="monthly", monthly_fee=Decimal("10000.00"),
                                     credit_percent_per_step=Decimal("5"), step=Decimal("0.1"),
                                     credit_cap_percent=Decimal("30"))
    values.update(overrides)
    return SlaTerms.model_validate(values)


def obligations(start: date) -> tuple[ObligationDefinition, ...]:
    """A one-off report, a monthly recurring report, a billable milestone and a monthly SLA."""
    return (
        ObligationDefinition(obligation_id="insurance-cert", kind=ObligationKind.COMPLIANCE,
                             title="Insurance certificate", due_date=date.fromordinal(start.toordinal() + 20)),
        ObligationDefinition(obligation_id="monthly-report", kind=ObligationKind.DELIVERABLE,
                             title="Monthly service report", due_date=date.fromordinal(start.toordinal() + 9),
                             recurrence="FREQ=MONTHLY;COUNT=24", lead_time_days=3),
        ObligationDefinition(obligation_id="go-live", kind=ObligationKind.MILESTONE, title="Go-live",
                             due_date=date.fromordinal(start.toordinal() + 45), amount=Decimal("25000.00")),
        ObligationDefinition(obligation_id="availability", kind=ObligationKind.SLA, title="Availability 99.9%",
                             sla=sla_terms()),
    )


def contract(contract_id: str, start: date, *, now: datetime, versions: tuple[ContractTerms, ...] | None = None,
             counterparty_id: str = "acme", status: ContractStatus = ContractStatus.ACTIVE,
             terminated_on: date | None = None, timezone: str = "UTC") -> ContractSnapshot:
    terms = versions or (terms_v(1, start, obligations(start)),)
    return ContractSnapshot(
        contract_id=contract_id, tenant_id="t1", title=f"Managed services {contract_id}",
        counterparty=Party(party_id=counterparty_id, name="ACME Corp", erp_vendor_id="V-100"),
        direction=Direction.BUY_SIDE, contract_type="services", owner=OWNER, backup_owner=BACKUP,
        timezone=timezone, status=status, terminated_on=terminated_on, versions=terms, updated_at=now)


def terms_v(version: int, effective_from: date, obls: tuple[ObligationDefinition, ...], *,
            effective_date: date | None = None, end_date: date | None = None) -> ContractTerms:
    return ContractTerms(version=version, effective_from=effective_from, currency="EUR",
                         total_value=Decimal("500000.00"), effective_date=effective_date or effective_from,
                         end_date=end_date, obligations=obls)
