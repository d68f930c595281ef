"""The portfolio's service layer: consumed events -> pure projections -> one read-model transaction per
batch; and the panels, computed from one tenant's rows.

HANDLERS (at the end) says what each event type of the input topics contributes. A type outside it is
a ValueError, so the consumer dead-letters the record (somebody's mistake, never skipped silently)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from contract_schema import (
    Alert,
    ContractActivated,
    ContractAmended,
    ContractExpired,
    ContractRenewed,
    ContractSnapshot,
    ContractTerminated,
    Envelope,
    InvoiceValidated,
    NotificationRecorded,
    Scorecard,
)
from contract_schema.obligation import (
    ObligationCancelled,
    ObligationCompleted,
    ObligationDueSoon,
    ObligationEscalated,
    ObligationOverdue,
    ObligationScheduled,
    ObligationWaived,
    SlaBreached,
    SlaMeasured,
)
from contract_schema.renewal import RenewalDecision, RenewalOpportunity
from mesh_common.clock import Clock

from .adapters.ports import ReadModelReader, ReadModelWriter
from .domain import invoices_alerts, panels, scorecards
from .domain.projections import (
    Projection,
    Row,
    merge,
    project_alert,
    project_contract_event,
    project_decision,
    project_notification,
    project_obligation,
    project_opportunity,
    project_scorecard,
    project_snapshot,
    project_verdict,
    row_key,
)
from .domain.risk import RiskRule
from .domain.rows import (
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
from .domain.views import (
    AlertView,
    CompletionView,
    Filters,
    InvoiceView,
    PipelineView,
    ScorecardView,
    SummaryView,
    TimelineView,
)

log = logging.getLogger(__name__)


class NotFound(LookupError):
    """No such contract for this tenant (another tenant's is not found either)."""


@dataclass(frozen=True)
class Dashboard:
    pipeline: PipelineView
    completion: CompletionView
    invoices: InvoiceView
    alerts: AlertView
    vendors: ScorecardView
    summary: SummaryView


class OnceReader:
    """The reader, each table read at most once per tenant (for a request that shows several panels)."""

    def __init__(self, reader: ReadModelReader) -> None:
        self._reader = reader
        self._cache: dict[tuple[str, str], Any] = {}

    def _once(self, name: str, tenant: str) -> Any:
        if (name, tenant) not in self._cache:
            self._cache[(name, tenant)] = getattr(self._reader, name)(tenant)
        return self._cache[(name, tenant)]

    def contracts(self, tenant: str) -> list[ContractRow]:
        return cast(list[ContractRow], self._once("contracts", tenant))

    def renewals(self, tenant: str) -> list[RenewalRow]:
        return cast(list[RenewalRow], self._once("renewals", tenant))

    def decisions(self, tenant: str) -> list[DecisionRow]:
        return cast(list[DecisionRow], self._once("decisions", tenant))

    def obligations(self, tenant: str) -> list[ObligationRow]:
        return cast(list[ObligationRow], self._once("obligations", tenant))

    def invoices(self, tenant: str) -> list[InvoiceRow]:
        return cast(list[InvoiceRow], self._once("invoices", tenant))

    def alerts(self, tenant: str) -> list[AlertRow]:
        return cast(list[AlertRow], self._once("alerts", tenant))

    def deliveries(self, tenant: str) -> list[DeliveryRow]:
        return cast(list[DeliveryRow], self._once("deliveries", tenant))

    def scorecards(self, tenant: str) -> list[ScorecardRow]:
        return cast(list[ScorecardRow], self._once("scorecards", tenant))

    def contract(self, tenant: str, contract_id: str) -> ContractRow | None:
        return self._reader.contract(tenant, contract_id)

    def events_of(self, tenant: str, contract_id: str) -> list[EventEntry]:
        return self._reader.events_of(tenant, contract_id)

    def version(self) -> int:
        return self._reader.version()


class PortfolioService:
    def __init__(self, writer: Callable[[], ReadModelWriter], reader: ReadModelReader, clock: Clock,
                 rules: list[RiskRule]) -> None:
        self.writer, self.reader, self.clock, self.rules = writer, reader, clock, rules

    # ---- the write side -----------------------------------------------------------------------------

    def project(self, envelope: Envelope, topic: str) -> Projection:
        """Pure: what the event contributes. Raises ValueError for a type the portfolio does not read."""
        projector = HANDLERS.get(type(envelope.event))
        if projector is None:
            raise ValueError(f"the portfolio reads no {envelope.type} events")
        return projector(envelope, topic)

    def apply(self, batch: Sequence[Projection]) -> int:
        """One transaction for the whole batch; an event already kept (same source and id) changes nothing.
        The rows a batch touches are read once and written once per table. Returns how many events were new."""
        if not batch:
            return 0
        with self.writer() as w:
            new = w.record([p.entry for p in batch])
            fresh = []
            for p in batch:  # a record twice in one batch counts once
                if (ident := (p.entry.source, p.entry.id)) in new:
                    new.discard(ident)
                    fresh.append(p)
            touched: dict[str, list[tuple[str, str, Row]]] = defaultdict(list)
            for p in fresh:
                for row in p.rows:
                    table, tenant, key = row_key(row)
                    touched[table].append((tenant, key, row))
            for table, rows in touched.items():
                merged = w.get(table, {(tenant, key) for tenant, key, _ in rows})
                for tenant, key, row in rows:  # in batch order; the merge does not depend on it anyway
                    merged[(tenant, key)] = merge(merged.get((tenant, key)), row)
                w.put(table, merged)
            if fresh:
                w.changed()
            w.commit()
        return len(fresh)

    # ---- the panels ---------------------------------------------------------------------------------

    def today(self) -> date:
        return self.clock.now().date()

    def pipeline(self, tenant: str, filters: Filters, as_of: date | None = None,
                 r: ReadModelReader | None = None) -> PipelineView:
        r = r or self.reader
        return panels.renewal_pipeline(r.contracts(tenant), r.renewals(tenant), r.decisions(tenant),
                                       as_of or self.today(), filters)

    def completion(self, tenant: str, filters: Filters, now: datetime | None = None,
                   r: ReadModelReader | None = None) -> CompletionView:
        r = r or self.reader
        return panels.obligation_completion(r.contracts(tenant), r.obligations(tenant), now or self.clock.now(),
                                            filters)

    def invoices(self, tenant: str, filters: Filters, now: datetime | None = None,
                 r: ReadModelReader | None = None) -> InvoiceView:
        r = r or self.reader
        return invoices_alerts.invoice_compliance(r.contracts(tenant), r.invoices(tenant), now or self.clock.now(),
                                                  filters)

    def alerts(self, tenant: str, filters: Filters, now: datetime | None = None,
               r: ReadModelReader | None = None) -> AlertView:
        r = r or self.reader
        return invoices_alerts.alert_board(r.contracts(tenant), r.alerts(tenant), r.deliveries(tenant),
                                           now or self.clock.now(), filters)

    def vendors(self, tenant: str, filters: Filters, now: datetime | None = None,
                r: ReadModelReader | None = None) -> ScorecardView:
        r = r or self.reader
        return scorecards.vendor_scorecards(r.contracts(tenant), r.scorecards(tenant), r.obligations(tenant),
                                            r.invoices(tenant), r.alerts(tenant), r.deliveries(tenant), self.rules,
                                            now or self.clock.now(), filters)

    def dashboard(self, tenant: str, filters: Filters, now: datetime | None = None) -> Dashboard:
        """Every panel from one read of each table (the page and the summary need them all)."""
        at, r = now or self.clock.now(), OnceReader(self.reader)
        pipe, done = self.pipeline(tenant, filters, at.date(), r), self.completion(tenant, filters, at, r)
        bills, board = self.invoices(tenant, filters, at, r), self.alerts(tenant, filters, at, r)
        vendors = self.vendors(tenant, filters, at, r)
        return Dashboard(pipe, done, bills, board, vendors,
                         invoices_alerts.summary(pipe, done, bills, board, vendors, at))

    def summary(self, tenant: str, filters: Filters, now: datetime | None = None) -> SummaryView:
        return self.dashboard(tenant, filters, now).summary

    def timeline(self, tenant: str, contract_id: str) -> TimelineView:
        contract = self.reader.contract(tenant, contract_id)
        if contract is None:
            raise NotFound(contract_id)
        return panels.timeline(contract, self.reader.events_of(tenant, contract_id))

    def version(self) -> int:
        return self.reader.version()


Projector = Callable[[Envelope, str], Projection]

HANDLERS: Mapping[type, Projector] = {
    ContractSnapshot: project_snapshot,  # the contract row: value, deadline, owner, filters
    ContractActivated: project_contract_event,  # timeline only: the snapshot beside it carries the change
    ContractAmended: project_contract_event,
    ContractRenewed: project_contract_event,
    ContractTerminated: project_contract_event,
    ContractExpired: project_contract_event,
    RenewalOpportunity: project_opportunity,  # CRM stage and status
    RenewalDecision: project_decision,  # renew / renegotiate / terminate
    ObligationScheduled: project_obligation,
    ObligationDueSoon: project_obligation,
    ObligationOverdue: project_obligation,  # overdue stays set
    ObligationEscalated: project_obligation,
    ObligationCompleted: project_obligation,  # closes it: on time or late
    ObligationWaived: project_obligation,  # closes it: no longer owed
    ObligationCancelled: project_obligation,
    SlaMeasured: project_obligation,  # timeline only (SLA windows are measurements, not tasks)
    SlaBreached: project_obligation,
    InvoiceValidated: project_verdict,  # verdict, billed vs expected, overpayment prevented
    Alert: project_alert,
    NotificationRecorded: project_notification,  # deliveries, acknowledgements, escalations of an alert
    Scorecard: project_scorecard,  # a contract's SLA record and credits
}
