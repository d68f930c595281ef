"""The topic catalog: every topic of the mesh, its key, partitioning, cleanup and events.

Names follow <domain>.<entity>.<kind>.v<major>; a breaking event change means a new major
version and a new topic. Dead letters of topic T go to T + ".dlq".
"""

from __future__ import annotations

from dataclasses import dataclass

from . import alert, contract, invoice, obligation, renewal
from .base import Event

DAY_MS = 24 * 60 * 60 * 1000
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str  # what the record key is, in words
    partitions: int
    cleanup_policy: str  # "delete" or "compact"
    retention_ms: int | None  # None: broker default (compacted topics keep the latest per key)
    events: tuple[type[Event], ...]
    description: str

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(e.ce_type for e in self.events)

    def misplaced(self, event: object) -> str | None:
        """The mesh's one rule for a record of an event type this topic does not carry: the reason it is
        dead-lettered (never skipped: it is somebody's mistake, and somebody's lost data), else None."""
        if isinstance(event, self.events):
            return None
        kind = getattr(event, "ce_type", type(event).__name__)
        return f"event type {kind} does not belong on {self.name} (it carries {', '.join(self.event_types)})"

    @property
    def dlq_name(self) -> str:
        return self.name + DLQ_SUFFIX

    @property
    def major_version(self) -> int:
        return int(self.name.rsplit(".v", 1)[1])

    def config(self) -> dict[str, str]:
        """Topic configs as Kafka expects them."""
        cfg = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        return cfg


def _spec(name: str, key: str, cleanup: str, retention_days: int | None,
          events: tuple[type[Event], ...], description: str, partitions: int = 6) -> TopicSpec:
    retention = None if retention_days is None else retention_days * DAY_MS
    return TopicSpec(name, key, partitions, cleanup, retention, events, description)


CONTRACT_STATE = _spec(
    "clm.contract.state.v1", "contract id", "compact", None, (contract.ContractSnapshot,),
    "Full latest snapshot of every contract, with all its versions.")
CONTRACT_EVENTS = _spec(
    "clm.contract.events.v1", "contract id", "delete", 30,
    (contract.ContractActivated, contract.ContractAmended, contract.ContractRenewed,
     contract.ContractTerminated, contract.ContractExpired),
    "What happened to a contract, in commit order per contract.")
OBLIGATION_EVENTS = _spec(
    "clm.obligation.events.v1", "contract id", "delete", 30,
    (obligation.ObligationScheduled, obligation.ObligationDueSoon, obligation.ObligationOverdue,
     obligation.ObligationEscalated, obligation.ObligationCompleted, obligation.ObligationWaived,
     obligation.ObligationCancelled, obligation.SlaMeasured, obligation.SlaBreached),
    "Obligation lifecycle and SLA results.")
ERP_PERFORMANCE = _spec(
    "erp.performance.v1", "contract id", "delete", 14,
    (obligation.MilestoneCompleted, obligation.DeliverableAccepted, obligation.SlaMeasurement),
    "Inbound from ERP, project and monitoring systems.")
ERP_MILESTONE_COMMANDS = _spec(
    "erp.milestone.commands.v1", "contract id", "delete", 14, (obligation.ReleaseMilestoneBilling,),
    "Outbound to ERP: milestone completed on the contract side, release billing.")
INVOICE_RECEIVED = _spec(
    "ap.invoice.received.v1", "contract id, else vendor id", "delete", 30, (invoice.InvoiceReceived,),
    "Inbound invoices with their lines.")
INVOICE_VALIDATED = _spec(
    "ap.invoice.validated.v1", "contract id, else vendor id", "delete", 30, (invoice.InvoiceValidated,),
    "One verdict per invoice, per line expected vs billed.")
RENEWAL_OPPORTUNITY = _spec(
    "crm.renewal.opportunity.v1", "contract id", "compact", None, (renewal.RenewalOpportunity,),
    "Renewal opportunity state per contract.")
RENEWAL_DECISION = _spec(
    "crm.renewal.decision.v1", "contract id", "delete", 30, (renewal.RenewalDecision,),
    "Renew / renegotiate / terminate decisions from the CRM.")
SCORECARD = _spec(
    "clm.scorecard.v1", "counterparty id (or counterparty id/contract id)", "compact", None,
    (obligation.Scorecard,), "Rolling 12-month performance record per counterparty and contract.")
ALERTS = _spec(
    "clm.alert.v1", "contract id", "delete", 30, (alert.Alert,), "Tiered alerts to people.")
NOTIFICATIONS = _spec(
    "clm.notification.v1", "alert id", "delete", 90, (alert.NotificationRecorded,),
    "What was delivered where and when; acknowledgements and escalations.")
CLOCK = _spec(
    "mesh.clock.v1", "clock id", "delete", 7, (alert.ClockAdvanced,),
    "Shared clock ticks, so tests and demos move time without sleeping.", partitions=1)

CATALOG: tuple[TopicSpec, ...] = (
    CONTRACT_STATE, CONTRACT_EVENTS, OBLIGATION_EVENTS, ERP_PERFORMANCE, ERP_MILESTONE_COMMANDS,
    INVOICE_RECEIVED, INVOICE_VALIDATED, RENEWAL_OPPORTUNITY, RENEWAL_DECISION, SCORECARD, ALERTS,
    NOTIFICATIONS, CLOCK,
)

DLQ_RETENTION_DAYS = 30


def dlq_spec(topic: TopicSpec) -> TopicSpec:
    return _spec(topic.dlq_name, topic.key, "delete", DLQ_RETENTION_DAYS, (),
                 f"Dead letters of {topic.name}: original bytes and headers plus the reason.",
                 partitions=1)


def all_topics() -> tuple[TopicSpec, ...]:
    """Every topic to provision: the catalog and one DLQ per catalog topic."""
    return CATALOG + tuple(dlq_spec(t) for t in CATALOG)


def by_name(name: str) -> TopicSpec:
    for spec in all_topics():
        if spec.name == name:
            return spec
    raise KeyError(f"no topic {name!r} in the catalog")


def topic_for(event_type: type[Event]) -> TopicSpec:
    for spec in CATALOG:
        if event_type in spec.events:
            return spec
    raise KeyError(f"{event_type.__name__} travels on no catalog topic")
