"""The read model's rows: what the portfolio keeps of each public event, per tenant.

Every row is merged from events by a rule that does not depend on arrival order (newest wins by the
event's own business time, or a flag that once set stays set), so a rebuild that reads the topics in
another interleaving ends with the same rows (docs/adr/0013)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from contract_schema.base import Model, Person


class ContractRow(Model):
    """The latest snapshot of a contract, reduced to what the panels show or filter on."""

    tenant_id: str
    contract_id: str
    title: str
    counterparty_id: str
    counterparty_name: str
    contract_type: str
    owner: Person
    backup_owner: Person | None = None
    tags: tuple[str, ...] = ()
    status: str
    version: int
    currency: str
    annual_value: Decimal
    auto_renew: bool
    notice_period_days: int
    end_date: date | None = None
    notice_deadline: date | None = None
    updated_at: datetime


class RenewalRow(Model):
    """The CRM's view of the renewal (crm.renewal.opportunity.v1), latest by updated_at."""

    tenant_id: str
    contract_id: str
    stage: str
    status: str
    decision: str | None = None
    updated_at: datetime


class DecisionRow(Model):
    """The latest renewal decision recorded in the CRM (crm.renewal.decision.v1), by decided_at."""

    tenant_id: str
    contract_id: str
    decision: str
    decided_by: str | None = None
    decided_at: datetime


class ObligationRow(Model):
    """One occurrence of an obligation. `overdue` stays set once reported; a completion, waiver or
    cancellation closes it whatever arrives after."""

    tenant_id: str
    contract_id: str
    instance_id: str
    obligation_id: str
    kind: str
    title: str = ""
    due_at: datetime | None = None
    owner_email: str | None = None
    facts_at: datetime  # occurred_at of the event the descriptive fields came from
    overdue: bool = False
    completed_at: datetime | None = None
    on_time: bool | None = None
    closed: str | None = None  # "waived" or "cancelled"

    @property
    def key(self) -> str:
        return f"{self.contract_id}/{self.instance_id}"


class EventEntry(Model):
    """One event as received, for the idempotency check (source + id) and the contract timeline."""

    source: str
    id: str
    topic: str
    type: str
    tenant_id: str | None = None
    contract_id: str | None = None
    occurred_at: datetime
    summary: str
    payload: dict[str, Any]


class InvoiceRow(Model):
    """The validator's verdict on one invoice (ap.invoice.validated.v1), latest by validated_at."""

    tenant_id: str
    invoice_id: str
    vendor_id: str
    invoice_number: str
    contract_id: str | None = None
    status: str
    currency: str
    total_billed: Decimal
    total_expected: Decimal
    prevented: Decimal
    reason_codes: tuple[str, ...] = ()
    validated_at: datetime


class AlertRow(Model):
    """An alert as raised (clm.alert.v1), latest by raised_at."""

    tenant_id: str
    alert_id: str
    contract_id: str
    alert_type: str
    tier: str
    title: str
    owner_email: str | None = None
    raised_at: datetime


class DeliveryRow(Model):
    """What the notifier recorded about one alert (clm.notification.v1). Notifications carry no tenant: the
    row is found through its alert, which does. First acknowledgement and first delivery stay; escalations
    are the set of escalation records seen."""

    alert_id: str
    delivered_at: datetime | None = None
    acknowledged_at: datetime | None = None
    escalations: tuple[str, ...] = ()
    last_at: datetime


class ScorecardRow(Model):
    """A contract's rolling 12-month scorecard (clm.scorecard.v1, contract scope), latest by updated_at.
    Scorecards carry no tenant: the row is found through its contract (the registry's ids are UUIDs)."""

    scorecard_id: str
    counterparty_id: str
    contract_id: str
    sla_measurements: int = 0
    sla_met: int = 0
    credits_earned: Decimal = Decimal(0)
    currency: str | None = None
    updated_at: datetime
