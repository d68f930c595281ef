"""The service layer: applies contract, scorecard and decision events and the clock to the renewal
states (domain), persists every change with its outbox rows, and keeps the due-date index.
HANDLERS (at the end) says what happens on each event type.

Single-threaded by design: the consume loop calls `handle` for each record and `after_batch`
after each batch, which fires what the clock made due and commits the batch's effects to
PostgreSQL in one transaction before the offsets are committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from confluent_kafka import Message
from prometheus_client import Counter, Gauge

from contract_schema.base import Person
from contract_schema.codec import Envelope, encode
from contract_schema.contract import (
    ContractActivated,
    ContractAmended,
    ContractExpired,
    ContractRenewed,
    ContractSnapshot,
    ContractTerminated,
)
from contract_schema.obligation import Scorecard, ScorecardScope
from contract_schema.renewal import OpportunityStatus, RenewalDecision, SlaRecord
from contract_schema.topics import ALERTS, CONTRACT_EVENTS, CONTRACT_STATE, RENEWAL_DECISION, RENEWAL_OPPORTUNITY
from mesh_common.clock import Clock
from mesh_common.due_index import DueIndex
from mesh_common.tracing import current_traceparent
from renewal_sync.adapters.ports import CRM, KAFKA, OutboxRow, RenewalStore
from renewal_sync.domain.renewal import (
    Outcome,
    RenewalState,
    close,
    fire_due,
    next_due,
    on_decision,
    on_renewed,
    on_snapshot,
    on_terminated,
    opportunity,
)
from renewal_sync.domain.timeline import ContractView
from renewal_sync.settings import SOURCE, RenewalSettings

log = logging.getLogger(__name__)

STAGES_FIRED = Counter("renewal_stages_fired_total", "Renewal stages announced", ["stage"])
CONTRACTS = Gauge("renewal_contracts", "Contracts with a renewal state")
SCHEDULED = Gauge("renewal_scheduled", "Contracts waiting in the due-date index")
SCORECARD_TTL_SECONDS = 60.0


class RenewalWorker:
    def __init__(self, cfg: RenewalSettings, store: RenewalStore, clock: Clock, *, crm_enabled: bool,
                 clock_ready: Callable[[], bool] = lambda: True) -> None:
        self.cfg, self.store, self.clock = cfg, store, clock
        self.tl = cfg.timeline()
        self.crm_enabled = crm_enabled
        self.clock_ready = clock_ready
        self.states: dict[str, RenewalState] = {}
        self.partition_of: dict[str, int] = {}  # contract -> partition of the contract-keyed topics
        self.index: DueIndex[str] = DueIndex()
        # counterparty -> (SLA record, monotonic expiry); the scorecard topic is keyed by counterparty, so
        # its partitions may belong to another replica: records come from PostgreSQL, cached briefly.
        self.scorecards: dict[str, tuple[SlaRecord | None, float]] = {}
        self._dirty: dict[str, RenewalState] = {}
        self._dirty_scorecards: dict[str, SlaRecord] = {}
        self._outbox: list[OutboxRow] = []
        self._people: dict[Person, Person] = {}
        self.on_flush: Callable[[], None] = lambda: None
        self.loaded = threading.Event()
        self.opportunity_topic = cfg.topic(RENEWAL_OPPORTUNITY.name)
        self.contract_topics = {cfg.topic(t.name) for t in (CONTRACT_STATE, CONTRACT_EVENTS, RENEWAL_DECISION)}
        self.alert_topic = cfg.topic(ALERTS.name)

    # --- start-up --------------------------------------------------------------------------

    def load(self, partitions: Sequence[int] | None = None) -> int:
        """Rebuild the in-memory states and the due-date index from PostgreSQL (all, or some partitions)."""
        now = self.clock.now()
        count = 0
        for loaded, partition in self.store.load_states(partitions):
            state = replace(loaded, contract=self._interned(loaded.contract))
            self.states[state.contract_id] = state
            self.partition_of[state.contract_id] = partition
            self._schedule(state, now)
            count += 1
        CONTRACTS.set(len(self.states))
        SCHEDULED.set(len(self.index))
        self.loaded.set()
        return count

    def assigned(self, partitions: Sequence[int]) -> None:
        """Partitions moved to this replica: take over their contracts (and what is due on them)."""
        count = self.load(partitions)
        log.info("assigned partitions %s: %d renewal timelines, %d scheduled", sorted(partitions), count,
                 len(self.index))

    def revoked(self, partitions: Sequence[int]) -> None:
        """Partitions moved away: forget their contracts so this replica never fires them."""
        self.flush()
        gone = set(partitions)
        for cid in [c for c, p in self.partition_of.items() if p in gone]:
            self.states.pop(cid, None)
            self.partition_of.pop(cid, None)
            self.index.cancel(cid)
        CONTRACTS.set(len(self.states))

    def sla_record(self, counterparty_id: str) -> SlaRecord | None:
        cached = self.scorecards.get(counterparty_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        record = self.store.scorecard(counterparty_id)
        self.scorecards[counterparty_id] = (record, time.monotonic() + SCORECARD_TTL_SECONDS)
        return record

    def _prefetch_scorecards(self, counterparty_ids: set[str]) -> None:
        """One query for the SLA records a burst of due stages needs, instead of one per opportunity."""
        clock = time.monotonic()
        stale = [c for c in counterparty_ids if (c not in self.scorecards or self.scorecards[c][1] <= clock)]
        if not stale:
            return
        found = self.store.scorecards(stale)
        for cid in stale:
            self.scorecards[cid] = (found.get(cid), clock + SCORECARD_TTL_SECONDS)

    # --- inputs ----------------------------------------------------------------------------

    def handle(self, envelope: Envelope, msg: Message | None = None) -> None:
        partition = msg.partition() if msg is not None and msg.topic() in self.contract_topics else None
        self.apply_event(envelope.event, partition)

    def apply_event(self, event: object, partition: int | None = None) -> None:
        # An event its topic carries but this service has no use for is skipped; one its topic does not
        # carry never gets here (the consumer dead-letters it with the reason).
        handler = HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event, partition, self.clock.now())

    def on_snapshot(self, event: ContractSnapshot, partition: int | None, now: datetime) -> None:
        view = self._interned(ContractView.from_snapshot(event))
        if partition is not None:
            self.partition_of[view.contract_id] = partition
        self._apply(on_snapshot(self.states.get(view.contract_id), view, self.tl, now), now)

    def on_decision(self, event: RenewalDecision, _partition: int | None, now: datetime) -> None:
        if (state := self._known(event.contract_id)) is not None:
            self._apply(on_decision(state, event.decision), now)

    def on_terminated(self, event: ContractTerminated, _partition: int | None, now: datetime) -> None:
        if (state := self._known(event.contract_id)) is not None:
            self._apply(on_terminated(state, event.terminated_on), now)

    def on_renewed(self, event: ContractRenewed, _partition: int | None, now: datetime) -> None:
        if (state := self._known(event.contract_id)) is not None:
            won, next_term = on_renewed(state, event.version, event.new_end_date, self.tl, now)
            self._apply(won, now)
            self._apply(next_term, now)

    def on_expired(self, event: ContractExpired, _partition: int | None, now: datetime) -> None:
        if (state := self._known(event.contract_id)) is not None:
            self._apply(close(state, OpportunityStatus.LOST, "expired"), now)

    def on_scorecard(self, event: Scorecard, _partition: int | None, _now: datetime) -> None:
        if event.scope is ScorecardScope.COUNTERPARTY:
            record = SlaRecord(window_start=event.window_start, window_end=event.window_end,
                               sla_measurements=event.sla_measurements, sla_met=event.sla_met,
                               credits_earned=event.credits_earned, currency=event.currency)
            self.scorecards[event.counterparty_id] = (record, time.monotonic() + SCORECARD_TTL_SECONDS)
            self._dirty_scorecards[event.counterparty_id] = record

    def ignore(self, _event: object, _partition: int | None, _now: datetime) -> None:
        """The snapshot on the state topic carries the new terms of an activation or amendment."""

    def _interned(self, view: ContractView) -> ContractView:
        """Share equal Person objects between contracts: owners repeat across thousands of contracts."""
        owner = self._people.setdefault(view.owner, view.owner)
        backup = view.backup_owner and self._people.setdefault(view.backup_owner, view.backup_owner)
        if owner is view.owner and backup is view.backup_owner:
            return view
        return replace(view, owner=owner, backup_owner=backup)

    def _known(self, contract_id: str) -> RenewalState | None:
        state = self.states.get(contract_id)
        if state is None:
            log.info("event for contract %s before its snapshot: ignored (the snapshot carries the status)",
                     contract_id)
        return state

    def tick(self) -> int:
        """Fire every contract whose next stage is due. O(k log n) for k due, n scheduled."""
        if not self.clock_ready():
            return 0
        now = self.clock.now()
        due = [key for key, _ in self.index.pop_due(now)]
        self._prefetch_scorecards({self.states[cid].contract.counterparty_id for cid in due})
        for contract_id in due:
            self._apply(fire_due(self.states[contract_id], self.tl, now), now)
        return len(due)

    def after_batch(self) -> None:
        self.tick()
        self.flush()

    # --- effects ---------------------------------------------------------------------------

    def _apply(self, outcome: Outcome, now: datetime) -> None:
        state = outcome.state
        cid = state.contract_id
        if self.states.get(cid) != state:
            self.states[cid] = state
            self._dirty[cid] = state
        if outcome.changed:
            opp = opportunity(state, self.sla_record(state.contract.counterparty_id), now)
            event_id = f"opp:{cid}:{state.revision}"
            record = encode(opp, source=SOURCE, event_id=event_id, time=now, traceparent=current_traceparent())
            self._outbox.append(OutboxRow(KAFKA, cid, event_id, self.opportunity_topic, record.key, record.value,
                                          record.headers))
            if self.crm_enabled:
                self._outbox.append(OutboxRow(CRM, cid, event_id, self.opportunity_topic, record.key,
                                              record.value, record.headers))
            if outcome.reason.startswith("stage"):
                STAGES_FIRED.labels(str(state.stage)).inc()
        for alert in outcome.alerts:
            record = encode(alert, source=SOURCE, event_id=alert.alert_id, time=now,
                            traceparent=current_traceparent())
            self._outbox.append(OutboxRow(KAFKA, cid, alert.alert_id, self.alert_topic, record.key, record.value,
                                          record.headers))
        self._schedule(state, now)

    def _schedule(self, state: RenewalState, now: datetime) -> None:
        due = next_due(state, self.tl, now)
        if due is None:
            self.index.cancel(state.contract_id)
        else:
            self.index.schedule(state.contract_id, due)

    def flush(self) -> None:
        if not (self._dirty or self._dirty_scorecards or self._outbox):
            return
        self.store.save([(st, self.partition_of.get(cid, -1)) for cid, st in self._dirty.items()],
                        self._dirty_scorecards, self._outbox)
        had_outbox = bool(self._outbox)
        self._dirty, self._dirty_scorecards, self._outbox = {}, {}, []
        CONTRACTS.set(len(self.states))
        SCHEDULED.set(len(self.index))
        if had_outbox:
            self.on_flush()


# What happens on each event type renewal-sync consumes, in one place; other types are not its business.
HANDLERS: Mapping[type, Callable[[RenewalWorker, Any, int | None, datetime], None]] = {
    ContractSnapshot: RenewalWorker.on_snapshot,
    ContractActivated: RenewalWorker.ignore,
    ContractAmended: RenewalWorker.ignore,
    ContractTerminated: RenewalWorker.on_terminated,
    ContractRenewed: RenewalWorker.on_renewed,
    ContractExpired: RenewalWorker.on_expired,
    Scorecard: RenewalWorker.on_scorecard,
    RenewalDecision: RenewalWorker.on_decision,
}
