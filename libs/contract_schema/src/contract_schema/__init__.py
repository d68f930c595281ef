"""contract_schema: the one definition of every contract-mesh event and topic."""

from .alert import Alert, ClockAdvanced, NotificationKind, NotificationRecorded, Tier
from .base import EVENT_TYPES, Event, Link, Model, Origin, Person
from .codec import DecodeError, Envelope, Record, decode, encode
from .contract import (
    ContractActivated,
    ContractAmended,
    ContractEvent,
    ContractExpired,
    ContractRenewed,
    ContractSnapshot,
    ContractStatus,
    ContractTerminated,
    ContractTerms,
    Direction,
    Escalation,
    FieldChange,
    ObligationDefinition,
    ObligationKind,
    ObligationState,
    Party,
    RateCardLine,
    SlaComparison,
    SlaTerms,
    TierBasis,
    TierMode,
    VolumeTier,
)
from .invoice import InvoiceLine, InvoiceReceived, InvoiceValidated, LineVerdict, PricedBand, VerdictStatus
from .money import MINOR_UNITS, minor_unit, round_money
from .obligation import (
    DeliverableAccepted,
    MilestoneCompleted,
    ObligationCancelled,
    ObligationCompleted,
    ObligationDueSoon,
    ObligationEscalated,
    ObligationEvent,
    ObligationOverdue,
    ObligationScheduled,
    ObligationWaived,
    PerformanceEvent,
    ReleaseMilestoneBilling,
    Scorecard,
    ScorecardScope,
    SlaBreached,
    SlaMeasured,
    SlaMeasurement,
)
from .renewal import (
    OpportunityStatus,
    RenewalDecision,
    RenewalDecisionKind,
    RenewalOpportunity,
    RenewalStage,
    SlaRecord,
)
from .topics import CATALOG, TopicSpec

__version__ = "1.0.0"

__all__ = [
    "CATALOG", "EVENT_TYPES", "MINOR_UNITS", "Alert", "ClockAdvanced", "ContractActivated",
    "ContractAmended", "ContractEvent", "ContractExpired", "ContractRenewed", "ContractSnapshot",
    "ContractStatus", "ContractTerminated", "ContractTerms", "DecodeError", "DeliverableAccepted",
    "Direction", "Envelope", "Escalation", "Event", "FieldChange", "InvoiceLine", "InvoiceReceived",
    "InvoiceValidated", "LineVerdict", "Link", "MilestoneCompleted", "Model", "NotificationKind",
    "NotificationRecorded", "ObligationCancelled", "ObligationCompleted", "ObligationDefinition",
    "ObligationDueSoon", "ObligationEscalated", "ObligationEvent", "ObligationKind", "ObligationOverdue",
    "ObligationScheduled", "ObligationState", "ObligationWaived", "OpportunityStatus", "Origin", "Party",
    "PerformanceEvent", "Person", "PricedBand", "RateCardLine", "Record", "ReleaseMilestoneBilling", "RenewalDecision",
    "RenewalDecisionKind", "RenewalOpportunity", "RenewalStage", "Scorecard", "ScorecardScope",
    "SlaBreached", "SlaComparison", "SlaMeasured", "SlaMeasurement", "SlaRecord", "SlaTerms", "Tier",
    "TierBasis", "TierMode", "TopicSpec", "VerdictStatus", "VolumeTier", "decode", "encode", "minor_unit",
    "round_money",
]
