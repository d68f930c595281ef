"""The validator's service layer: what happens on each input, on the tables the agents of one worker share.

HANDLERS (at the end) says what happens on each event type of the input topics: an invoice is routed
to its contract's partition and decided there (or parked while its contract is unknown or a draft),
a contract snapshot is stored and re-checks the invoices parked for it, a completed milestone and an
SLA credit are kept for the rules; the topic's other obligation events need nothing. The internal
topics (vendor directory, invoices routed by contract, park expiry) have one handler each, called by
their agents (bootstrap.py).

Guarantee: at-least-once processing with effects idempotent on stable ids (docs/adr/0005): no
offset is committed before every record its processing produced is acknowledged by the broker
(`DeliveryBarrier`); one invoice's effects on the tables are one `verdicts` record (cumulative
billing and duplicate keys are derived from it); an invoice whose verdict is stored gets that
verdict re-published, same ce_id, instead of nothing, so a verdict lost in a killed producer's
buffer is sent again on redelivery; a RocksDB store left by a killed run is rebuilt from the
changelogs. Faust's exactly_once is deliberately not used (docs/adr/0001).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from prometheus_client import Counter

from contract_schema import (
    ContractSnapshot,
    Envelope,
    InvoiceReceived,
    InvoiceValidated,
    ObligationCompleted,
    ObligationKind,
    SlaBreached,
    VerdictStatus,
    encode,
)
from contract_schema.topics import INVOICE_VALIDATED
from mesh_common.clock import Clock
from mesh_common.due_index import DueIndex
from mesh_common.faust_delivery import DeliveryBarrier
from mesh_common.faust_kafka import partition_for
from mesh_common.ops import REJECTED

from .adapters.contracts import ContractCache, is_older, table_value
from .adapters.faust_app import derived_id
from .adapters.webhook import ApWebhook
from .domain import rules
from .domain.alerts import overbilling_alert
from .domain.ledger import Ledger
from .domain.model import BillingState, ObligationView, SlaCredit
from .domain.numbers import duplicate_key
from .domain.validate import validate_invoice, verdict_without_contract
from .parking import Parking
from .settings import SERVICE, SOURCE, ValidatorSettings

log = logging.getLogger(__name__)

VERDICTS = Counter("invoice_validator_verdicts_total", "Verdicts sent", ["status"])
RESENT = Counter("invoice_validator_verdicts_resent_total", "Stored verdicts sent again on redelivery")


class ValidatorService(Parking):
    """The state the agents share inside one worker process (its tables and what is derived from them)
    and what happens on each record."""

    def __init__(self, *, settings: ValidatorSettings, clock: Clock, delivery: DeliveryBarrier, contracts: Any,
                 obligations: Any, verdicts: Any, parked: Any, vendors: Any, verdict_topic: Any, alert_topic: Any,
                 expiry_topic: Any, vendor_topic: Any, routed_topic: Any, webhook: ApWebhook | None) -> None:
        self.settings, self.clock, self.delivery = settings, clock, delivery
        self.contracts = contracts  # contract id -> {"vendor", "snapshot"}
        self.obligations = obligations  # contract id -> ObligationView json
        # invoice id -> {"ce_id", "status", "verdict", "source" (invoice ce_id), "contract_id", "billed" (what
        # it added to the contract's billing), "seen_key" (its duplicate key, if it was the first)}
        self.verdicts = verdicts
        self.ledger = Ledger()  # cumulative billing and duplicate keys, derived from `verdicts`
        self.parked = parked  # park key -> [{"ce_id", "invoice", "parked_at", "partition"}]
        # vendor id -> {contract id: snapshot JSON}, on the vendor's partition (where vendor-keyed invoices are).
        self.vendors = vendors
        self.cache = ContractCache(self.contracts, self.vendors)
        self.park_due = DueIndex()
        self.webhook = webhook
        self.verdict_topic, self.alert_topic = verdict_topic, alert_topic
        # Expiry of parked invoices goes through this topic so the table write happens inside a
        # stream (Faust requires it) on the same partition count as the tables.
        self.expiry_topic = expiry_topic
        # Contracts announced to their vendor's partition, and invoices matched by vendor routed to their
        # contract's partition: how vendor-keyed invoices meet contract-keyed state across replicas.
        self.vendor_topic, self.routed_topic = vendor_topic, routed_topic

    async def handle(self, envelope: Envelope, raw: bytes) -> None:
        """Run the event's handler from HANDLERS; an event of a type not there needs nothing (the agent
        has dead-lettered every type its topic does not carry)."""
        handler = HANDLERS.get(type(envelope.event))
        if handler is not None:
            await handler(self, envelope, raw)

    # --- table recovery ---------------------------------------------------------------------

    async def _on_contracts_recovered(self) -> None:
        self.cache.invalidate()

    async def _on_verdicts_recovered(self) -> None:
        self.ledger = Ledger.rebuild(self.verdicts.items())

    # --- input topics -----------------------------------------------------------------------

    async def on_invoice(self, envelope: Envelope, raw: bytes) -> None:
        await self.route_invoice(cast(InvoiceReceived, envelope.event), envelope.id)

    async def on_snapshot(self, envelope: Envelope, raw: bytes) -> None:
        await self.handle_contract(cast(ContractSnapshot, envelope.event), raw)

    async def on_obligation_completed(self, envelope: Envelope, raw: bytes) -> None:
        event = cast(ObligationCompleted, envelope.event)
        if event.kind is ObligationKind.MILESTONE:
            view = ObligationView.from_json(self.obligations.get(event.contract_id))
            self.obligations[event.contract_id] = view.with_completed(event.obligation_id).to_json()

    async def on_sla_breached(self, envelope: Envelope, raw: bytes) -> None:
        event = cast(SlaBreached, envelope.event)
        if event.service_credit > 0:
            view = ObligationView.from_json(self.obligations.get(event.contract_id))
            credit = SlaCredit(event.instance_id, event.obligation_id, event.window_start.date(),
                               event.window_end.date(), event.service_credit, event.currency)
            self.obligations[event.contract_id] = view.with_credit(credit).to_json()

    def _partition(self, key: str) -> int:
        return partition_for(key.encode(), self.settings.topic_partitions, self.settings.source_partitioner)

    async def handle_contract(self, snapshot: ContractSnapshot, raw_json: bytes | None = None) -> None:
        previous = self.contracts.get(snapshot.contract_id)
        if is_older(snapshot, previous):  # redelivered or replayed after a kill: the table has a newer one
            log.info("ignoring an older snapshot of %s (version %s)", snapshot.contract_id, snapshot.current.version)
            return
        value = table_value(snapshot, raw_json)
        self.contracts[snapshot.contract_id] = value
        self.cache.put(snapshot, value["snapshot"])
        # Tell the vendor's partition (where invoices without a contract reference are) about the contract.
        vendor = snapshot.counterparty.erp_vendor_id
        old_vendor = previous.get("vendor") if previous else None
        if old_vendor and old_vendor != vendor:
            self._announce(old_vendor, snapshot.contract_id, None)
        if vendor:
            self._announce(vendor, snapshot.contract_id, value["snapshot"])
        # Invoices that referenced this contract before it was known (or before it was activated).
        await self._resolve_parked(f"ref:{snapshot.contract_id}", lambda invoice, entry: self.handle_invoice(
            invoice, entry["ce_id"], parked_at=entry["parked_at"]))

    def _announce(self, vendor: str, contract_id: str, snapshot_json: str | None) -> None:
        body = json.dumps({"vendor": vendor, "contract_id": contract_id, "snapshot": snapshot_json}).encode()
        self.vendor_topic.send_soon(key=vendor.encode(), value=body, partition=self._partition(vendor))

    # --- internal topics --------------------------------------------------------------------

    async def handle_vendor_directory(self, update: dict[str, Any]) -> None:
        vendor, contract_id = update["vendor"], update["contract_id"]
        entries = dict(self.vendors.get(vendor) or {})
        if update["snapshot"] is None:
            entries.pop(contract_id, None)
        else:
            entries[contract_id] = update["snapshot"]
        self.vendors[vendor] = entries
        await self._resolve_parked(f"vendor:{vendor}", lambda invoice, entry: self.route_invoice(
            invoice, entry["ce_id"], parked_at=entry["parked_at"]))

    async def handle_routed(self, order: dict[str, Any]) -> None:
        """An invoice matched by vendor, sent on to its contract's partition by `route_invoice`."""
        invoice = InvoiceReceived.model_validate_json(order["invoice"])
        await self.handle_invoice(invoice, order["ce_id"], parked_at=order.get("parked_at"),
                                  expired=order.get("expired", False))

    # --- invoices ---------------------------------------------------------------------------

    async def route_invoice(self, invoice: InvoiceReceived, ce_id: str, *, parked_at: str | None = None,
                            expired: bool = False) -> bool:
        """An invoice with a contract reference is validated here (it is keyed, so partitioned, by that
        contract). One without is matched by vendor on the vendor's partition, then sent to the partition
        of the contract it matched, where that contract's cumulative state lives. True if it was parked."""
        if invoice.contract_ref or self.verdicts.get(invoice.invoice_id) is not None:
            return await self.handle_invoice(invoice, ce_id, parked_at=parked_at, expired=expired)
        match = rules.match_contract(invoice, None, self.cache.for_vendor(invoice.vendor_id))
        if match.kind != rules.MatchKind.FOUND:
            return await self.handle_invoice(invoice, ce_id, parked_at=parked_at, expired=expired, match=match)
        assert match.contract is not None
        contract_id = match.contract.contract_id
        routed = invoice.model_copy(update={"contract_ref": contract_id})
        body = json.dumps({"ce_id": ce_id, "invoice": routed.model_dump_json(), "parked_at": parked_at,
                           "expired": expired}).encode()
        self.routed_topic.send_soon(key=contract_id.encode(), value=body, partition=self._partition(contract_id))
        return False

    async def handle_invoice(self, invoice: InvoiceReceived, ce_id: str, *, parked_at: str | None = None,
                             expired: bool = False, match: rules.Match | None = None) -> bool:
        """Decide one invoice, or park it while its contract is unknown or not activated yet (True)."""
        stored = self.verdicts.get(invoice.invoice_id)
        if stored is not None:
            self.republish(invoice.invoice_id, stored)  # redelivered or re-posted: the same verdict again
            return False
        if match is None:
            by_ref = self.cache.get(invoice.contract_ref) if invoice.contract_ref else None
            vendor_contracts = [] if invoice.contract_ref else self.cache.for_vendor(invoice.vendor_id)
            match = rules.match_contract(invoice, by_ref, vendor_contracts)
        now = self.clock.now()
        contract = match.contract
        billed: BillingState | None = None
        seen_key: str | None = None
        waiting = match.kind == rules.MatchKind.UNKNOWN or (
            contract is not None and rules.awaits_activation(contract, (line.service_date for line in invoice.lines)))
        if waiting and not expired:
            self._park(invoice, ce_id, parked_at or now.isoformat())
            return True
        if match.kind == rules.MatchKind.UNKNOWN:
            verdict = verdict_without_contract(invoice, rules.contract_unknown_finding(invoice), now)
        elif match.kind == rules.MatchKind.AMBIGUOUS:
            verdict = verdict_without_contract(
                invoice, rules.contract_ambiguous_finding(invoice, match.candidates), now)
        else:
            assert contract is not None
            key = duplicate_key(invoice.tenant_id, invoice.vendor_id, invoice.invoice_number)
            first = self.ledger.first_invoice(key)
            duplicate_of = first if first is not None and first != invoice.invoice_id else None
            view = ObligationView.from_json(self.obligations.get(contract.contract_id))
            done = {s.obligation_id for s in contract.obligation_states if s.status == "completed"}
            if done - view.completed_milestones:
                view = ObligationView(view.completed_milestones | done, view.sla_credits)
            billing = self.ledger.billing(contract.contract_id)
            outcome = validate_invoice(invoice, contract, obligations=view, billing=billing,
                                       duplicate_of=duplicate_of, now=now)
            verdict = outcome.verdict
            seen_key = key if first is None else None
            billed = outcome.billing.minus(billing)
        self.emit(verdict, ce_id, contract, billed=billed, seen_key=seen_key)
        return False

    # --- verdicts ---------------------------------------------------------------------------

    def emit(self, verdict: InvoiceValidated, invoice_ce_id: str, contract: ContractSnapshot | None, *,
             billed: BillingState | None = None, seen_key: str | None = None) -> None:
        """Send a new verdict (and alert) and store it with its effects; synchronous, so nothing interleaves.

        The stored entry is the one record that holds what this invoice changed (its share of the
        contract's billing, its duplicate key), so a crash keeps all of it or none of it.
        """
        verdict_id = derived_id("verdict", invoice_ce_id)
        record = self._publish(verdict, verdict_id, invoice_ce_id, contract)
        entry = {"ce_id": verdict_id, "status": verdict.status.value, "verdict": record.value.decode(),
                 "source": invoice_ce_id, "contract_id": verdict.contract_id if billed is not None else None,
                 "billed": billed.to_json() if billed is not None and billed != BillingState() else None,
                 "seen_key": seen_key}
        self.verdicts[verdict.invoice_id] = entry
        self.ledger.record(verdict.invoice_id, entry)
        VERDICTS.labels(verdict.status.value).inc()
        for code in verdict.reason_codes:
            REJECTED.labels(SERVICE, INVOICE_VALIDATED.name, code).inc()

    def republish(self, invoice_id: str, stored: dict[str, Any]) -> None:
        """Send a stored verdict again with its own ce_id, and write its entry again.

        The entry may be in the table while the verdict or the entry's changelog record died in a killed
        producer's buffer; the re-sent copies carry the same ids, so consumers drop what they have.
        """
        verdict = InvoiceValidated.model_validate_json(stored["verdict"])
        contract = self.cache.get(verdict.contract_id) if verdict.contract_id else None
        self._publish(verdict, stored["ce_id"], stored.get("source"), contract)
        self.verdicts[invoice_id] = stored
        RESENT.inc()

    def _publish(self, verdict: InvoiceValidated, verdict_id: str, invoice_ce_id: str | None,
                 contract: ContractSnapshot | None) -> Any:
        record = encode(verdict, source=SOURCE, event_id=verdict_id, time=verdict.validated_at)
        self.verdict_topic.send_soon(key=record.key, value=record.value, headers=record.headers)
        over = verdict.status is VerdictStatus.REJECTED and verdict.total_billed > self.settings.alert_threshold
        if over and invoice_ce_id is not None:
            alert_id = derived_id("alert", invoice_ce_id)
            alert = overbilling_alert(verdict, alert_id, invoice_ce_id, SERVICE, contract)
            alert_record = encode(alert, source=SOURCE, event_id=alert_id, time=verdict.validated_at)
            self.alert_topic.send_soon(key=alert_record.key, value=alert_record.value, headers=alert_record.headers)
        if self.webhook is not None:
            self.webhook.deliver_later(verdict_id, record.value)
        return record

    def verdict_for(self, invoice_id: str) -> InvoiceValidated | None:
        """For the HTTP API (another thread): a dict lookup in the in-memory table, no stream needed."""
        raw = self.verdicts.get(invoice_id)
        if raw is None:
            return None
        return InvoiceValidated.model_validate_json(raw["verdict"])


Handler = Callable[[ValidatorService, Envelope, bytes], Awaitable[None]]

# What happens on each event type of the input topics, in one place (`raw`: the record's value). The
# table is looked up by the exact type, so each handler's cast holds.
HANDLERS: Mapping[type, Handler] = {
    InvoiceReceived: ValidatorService.on_invoice,  # routed to its contract's partition, decided or parked there
    ContractSnapshot: ValidatorService.on_snapshot,  # stored, announced to its vendor; its parked invoices re-checked
    ObligationCompleted: ValidatorService.on_obligation_completed,  # a completed milestone, for the billing rules
    SlaBreached: ValidatorService.on_sla_breached,  # a service credit, owed on the window's invoices
}
