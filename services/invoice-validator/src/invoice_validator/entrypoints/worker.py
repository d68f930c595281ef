"""The Faust worker: agents on the invoice, contract-state and obligation topics; tables for
what must survive a restart; verdicts, alerts and DLQ records out.

Guarantee: at-least-once processing with effects idempotent on stable ids (docs/adr/0005): no
offset is committed before every record its processing produced is acknowledged by the broker
(`DeliveryBarrier`); one invoice's effects on the tables are one `verdicts` record (cumulative
billing and duplicate keys are derived from it); an invoice whose verdict is stored gets that
verdict re-published, same ce_id, instead of nothing, so a verdict lost in a killed producer's
buffer is sent again on redelivery; a RocksDB store left by a killed run is rebuilt from the
changelogs. Faust's exactly_once is deliberately not used (docs/adr/0001).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust
from faust.types import EventT
from prometheus_client import Counter

from contract_schema import (
    ContractSnapshot,
    DecodeError,
    InvoiceReceived,
    InvoiceValidated,
    ObligationCompleted,
    ObligationKind,
    SlaBreached,
    VerdictStatus,
    decode,
    encode,
)
from contract_schema.topics import (
    ALERTS,
    CONTRACT_STATE,
    INVOICE_RECEIVED,
    INVOICE_VALIDATED,
    OBLIGATION_EVENTS,
    TopicSpec,
)
from mesh_common.clock import Clock
from mesh_common.dlq import dead_letter_record
from mesh_common.due_index import DueIndex
from mesh_common.faust_delivery import CrashMarker, DeliveryBarrier, StallWatch, seek_safely_after_rebalance
from mesh_common.faust_kafka import faust_broker, faust_credentials, partition_for
from mesh_common.ops import DEAD_LETTERED, PROCESSED, REJECTED
from mesh_common.settings import KafkaSettings
from mesh_common.tracing import consume_span

from ..adapters.contracts import ContractCache, is_older, table_value
from ..adapters.faust_app import TABLES, changelog_topics, derived_id
from ..adapters.state_fence import faust_fence
from ..adapters.webhook import ApWebhook
from ..domain import rules
from ..domain.alerts import overbilling_alert
from ..domain.ledger import Ledger
from ..domain.model import BillingState, ObligationView, SlaCredit
from ..domain.numbers import duplicate_key
from ..domain.validate import validate_invoice, verdict_without_contract
from ..settings import SERVICE, SOURCE, ValidatorSettings
from .parking import Parking

__all__ = ["TABLES", "Validator", "changelog_topics", "derived_id"]

log = logging.getLogger(__name__)

VERDICTS = Counter("invoice_validator_verdicts_total", "Verdicts sent", ["status"])
RESENT = Counter("invoice_validator_verdicts_resent_total", "Stored verdicts sent again on redelivery")


class Validator(Parking):
    """Builds the Faust app and holds the state the agents share inside one worker process."""

    def __init__(self, settings: ValidatorSettings, kafka: KafkaSettings, clock: Clock) -> None:
        self.settings, self.kafka, self.clock = settings, kafka, clock
        data_dir = settings.data_dir or tempfile.mkdtemp(prefix=f"{settings.app_id}-")
        store = settings.store
        if store.startswith("rocksdb") and importlib.util.find_spec("rocksdict") is None:
            # Without the binding Faust cannot open RocksDB; the changelogs hold the state either way.
            log.warning("rocksdict is not installed: using the in-memory table store")
            store = "memory://"
        app = faust.App(
            settings.app_id,
            broker=faust_broker(kafka),
            broker_credentials=faust_credentials(kafka),
            store=store,
            datadir=Path(data_dir),
            processing_guarantee="at_least_once",
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.replication_factor,
            topic_allow_declare=True,
            consumer_auto_offset_reset="earliest",
            web_enabled=False,
            # Tables keep JSON; every topic of the mesh is declared raw below and decoded by contract_schema.
            key_serializer="json",
            value_serializer="json",
            stream_wait_empty=False,
            broker_session_timeout=settings.session_timeout_seconds,
            broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
            # Verdicts and table records are ~10 KB: the 16 KB default batch held one record each, so the
            # producer (one in-flight request per broker) capped throughput. Batch them and compress.
            producer_max_batch_size=1_048_576,
            producer_linger=settings.producer_linger_seconds,
            producer_compression_type="lz4",
        )
        self.app = app
        n = settings.topic_partitions
        self.delivery = DeliveryBarrier()
        self.delivery.install(app.producer)
        self.crash_marker = CrashMarker(Path(data_dir), Path(app.conf.tabledir))

        def table(name: str) -> Any:
            return app.Table(name, default=None, partitions=n)

        self.contracts = table("contracts")  # contract id -> {"vendor", "snapshot"}
        self.obligations = table("obligations")  # contract id -> ObligationView json
        # invoice id -> {"ce_id", "status", "verdict", "source" (invoice ce_id), "contract_id", "billed" (what
        # it added to the contract's billing), "seen_key" (its duplicate key, if it was the first)}
        self.verdicts = table("verdicts")
        self.ledger = Ledger()  # cumulative billing and duplicate keys, derived from `verdicts`
        self.parked = table("parked")  # park key -> [{"ce_id", "invoice", "parked_at", "partition"}]
        # vendor id -> {contract id: snapshot JSON}, on the vendor's partition (where vendor-keyed invoices are).
        self.vendors = table("vendors")
        self.cache = ContractCache(self.contracts, self.vendors)
        self.park_due = DueIndex()
        self.ready = False
        self.webhook = ApWebhook(settings.ap_webhook_url, settings.ap_webhook_secret) \
            if settings.ap_webhook_url else None

        def raw_topic(name: str, partitions: int | None = None, internal: bool = False) -> Any:
            return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw", partitions=partitions, internal=internal)

        self.invoices_topic = raw_topic(settings.topic_prefix + INVOICE_RECEIVED.name)
        self.state_topic = raw_topic(settings.topic_prefix + CONTRACT_STATE.name)
        self.obligation_topic = raw_topic(settings.topic_prefix + OBLIGATION_EVENTS.name)
        self.verdict_topic = raw_topic(settings.topic_prefix + INVOICE_VALIDATED.name)
        self.alert_topic = raw_topic(settings.topic_prefix + ALERTS.name)
        # Expiry of parked invoices goes through this topic so the table write happens inside a
        # stream (Faust requires it) on the same partition count as the tables.
        self.expiry_topic = raw_topic(f"{settings.app_id}-park-expiry", partitions=n, internal=True)
        # Contracts announced to their vendor's partition, and invoices matched by vendor routed to their
        # contract's partition: how vendor-keyed invoices meet contract-keyed state across replicas.
        self.vendor_topic = raw_topic(f"{settings.app_id}-vendor-directory", partitions=n, internal=True)
        self.routed_topic = raw_topic(f"{settings.app_id}-invoices-by-contract", partitions=n, internal=True)
        self._dlq_topics: dict[str, Any] = {}
        # An invoice is decided only once the state partition it meets has been processed up to where it
        # ended when the invoice was sent (docs/adr/0011): the two agents have no order between them.
        self.fence = faust_fence(app, settings.topic_prefix + CONTRACT_STATE.name)

        self.contracts.on_recover(self._on_contracts_recovered)
        self.parked.on_recover(self._on_parked_recovered)
        self.verdicts.on_recover(self._on_verdicts_recovered)
        app.agent(self.invoices_topic, name="invoices")(self._invoice_agent)
        app.agent(self.state_topic, name="contract-state")(self._contract_agent)
        app.agent(self.obligation_topic, name="obligations")(self._obligation_agent)
        app.agent(self.expiry_topic, name="park-expiry")(self._expiry_agent)
        app.agent(self.vendor_topic, name="vendor-directory")(self._vendor_agent)
        app.agent(self.routed_topic, name="invoices-by-contract")(self._routed_agent)
        app.timer(settings.sweep_interval_seconds, name="park-sweep")(self._sweep)
        # A partition nobody has committed yet (a worker killed before its first commit) is read from
        # its start after a rebalance; Faust would otherwise skip what it fetched while recovering.
        inputs = {t.get_topic_name() for t in (self.invoices_topic, self.state_topic, self.obligation_topic,
                                               self.expiry_topic, self.vendor_topic, self.routed_topic)}
        seek_safely_after_rebalance(app.consumer, inputs)
        self.watch = StallWatch(app, self.delivery, inputs)
        app.timer(30.0, name="stall-watch")(self._stall_watch)

        async def _ready(sender: Any, **kwargs: Any) -> None:
            self.ready = True

        async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            self.fence.reset()

        app.on_rebalance_complete.connect(_ready)  # type: ignore[arg-type]
        app.on_partitions_revoked.connect(_revoked)  # type: ignore[arg-type]

    # --- shell helpers ----------------------------------------------------------------------

    async def _stall_watch(self) -> None:
        if (report := self.watch.check()) is not None:
            log.warning(report)

    async def _on_contracts_recovered(self) -> None:
        self.cache.invalidate()

    async def _on_verdicts_recovered(self) -> None:
        self.ledger = Ledger.rebuild(self.verdicts.items())

    async def _events(self, stream: Any, spec: TopicSpec) -> AsyncIterator[tuple[EventT[Any], Any]]:
        """Decode every record; the undecodable, and events of a type the topic does not carry (the
        catalog's rule for every service), go to the DLQ with the reason and the stream goes on."""
        async for event in stream.events():
            self.watch.handled += 1
            headers = list((event.headers or {}).items())
            try:
                envelope = decode(event.value, headers)
                if (misplaced := spec.misplaced(envelope.event)) is not None:
                    raise DecodeError(misplaced, field_path="ce_type")
            except DecodeError as exc:
                await self._dead_letter(event, exc)
                if spec is CONTRACT_STATE:
                    self.fence.processed(event.message.partition, event.message.offset)
                continue
            yield event, envelope

    async def _dead_letter(self, event: EventT[Any], error: BaseException | str) -> None:
        message = event.message
        dlq_name, record = dead_letter_record(
            topic=message.topic, partition=message.partition, offset=message.offset, key=event.key,
            value=event.value, headers=list((event.headers or {}).items()), error=error, service=SERVICE,
            now=self.clock.now())
        topic = self._dlq_topics.get(dlq_name)
        if topic is None:
            topic = self._dlq_topics[dlq_name] = self.app.topic(
                dlq_name, key_serializer="raw", value_serializer="raw")
        # Wait for the broker's ack: the source offset must not be committed before the dead letter is safe.
        fut = await topic.send(key=record.key, value=record.value, headers=record.headers, force=True)
        await fut
        DEAD_LETTERED.labels(SERVICE, message.topic).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset,
                    getattr(error, "reason", error))

    async def _guarded(self, event: EventT[Any], envelope: Any, handler: Any) -> None:
        topic = event.message.topic
        try:
            with consume_span(SERVICE, topic, list((event.headers or {}).items())):
                await handler(envelope)
            PROCESSED.labels(SERVICE, topic).inc()
        except Exception as exc:  # bad input is data, not a crash
            log.exception("handler failed on %s[%s]@%s", topic, event.message.partition, event.message.offset)
            await self._dead_letter(event, exc)

    # --- agents -----------------------------------------------------------------------------

    async def _invoice_agent(self, stream: Any) -> None:
        async for event, envelope in self._events(stream, INVOICE_RECEIVED):
            if not await self._caught_up(event):
                continue
            async def handle(env: Any) -> None:
                await self.route_invoice(env.event, env.id)
            await self._guarded(event, envelope, handle)

    async def _contract_agent(self, stream: Any) -> None:
        async for event, envelope in self._events(stream, CONTRACT_STATE):
            async def handle(env: Any, raw: bytes = event.value) -> None:
                await self.handle_contract(env.event, raw)
            await self._guarded(event, envelope, handle)
            self.fence.processed(event.message.partition, event.message.offset)

    async def _obligation_agent(self, stream: Any) -> None:
        async for event, envelope in self._events(stream, OBLIGATION_EVENTS):
            async def handle(env: Any) -> None:
                self.handle_obligation_event(env.event)
            await self._guarded(event, envelope, handle)

    async def _vendor_agent(self, stream: Any) -> None:
        async for event in stream.events():
            self.watch.handled += 1
            try:
                await self.handle_vendor_directory(json.loads(event.value))
            except Exception:  # an internal record we wrote ourselves; log, never crash the agent
                log.exception("vendor directory update failed for %r", event.key)

    async def _routed_agent(self, stream: Any) -> None:
        async for event in stream.events():
            self.watch.handled += 1
            if not await self._caught_up(event):
                continue
            try:
                order = json.loads(event.value)
                invoice = InvoiceReceived.model_validate_json(order["invoice"])
                await self.handle_invoice(invoice, order["ce_id"], parked_at=order.get("parked_at"),
                                          expired=order.get("expired", False))
            except Exception:  # an internal record we wrote ourselves; log, never crash the agent
                log.exception("routed invoice failed for %r", event.key)

    async def _caught_up(self, event: EventT[Any]) -> bool:
        """Wait for the contract state this invoice was sent after; False if its partition moved away."""
        message = event.message
        return await self.fence.wait(message.topic, message.partition, message.offset)

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

    def handle_obligation_event(self, event: Any) -> None:
        if isinstance(event, ObligationCompleted) and event.kind is ObligationKind.MILESTONE:
            view = ObligationView.from_json(self.obligations.get(event.contract_id))
            self.obligations[event.contract_id] = view.with_completed(event.obligation_id).to_json()
        elif isinstance(event, SlaBreached) and event.service_credit > 0:
            view = ObligationView.from_json(self.obligations.get(event.contract_id))
            credit = SlaCredit(event.instance_id, event.obligation_id, event.window_start.date(),
                               event.window_end.date(), event.service_credit, event.currency)
            self.obligations[event.contract_id] = view.with_credit(credit).to_json()

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

