"""The Faust worker: agents on the invoice, contract-state and obligation topics; tables for
what must survive a restart; verdicts, alerts and DLQ records out.

Guarantee: at-least-once processing (Faust commits offsets after the agent moved on) with
effects idempotent on stable ids: one verdict per invoice id (the `verdicts` table is checked
before anything is sent) and the verdict's ce_id derived from the invoice event's ce_id, so
a redelivery never yields a second verdict and a consumer seeing a re-sent one can drop it.
Faust's exactly_once is deliberately not used (see ARCHITECTURE "Known pitfalls").
"""

from __future__ import annotations

import importlib.util
import json
import logging
import ssl
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import faust
from faust.types import EventT
from prometheus_client import Counter

from contract_schema import (
    Alert,
    ContractSnapshot,
    DecodeError,
    InvoiceReceived,
    InvoiceValidated,
    ObligationCompleted,
    ObligationKind,
    SlaBreached,
    Tier,
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
from mesh_common.ops import DEAD_LETTERED, PROCESSED, REJECTED
from mesh_common.settings import KafkaSettings
from mesh_common.tracing import consume_span

from ..adapters.contracts import ContractCache, table_value
from ..adapters.partitioning import partition_for
from ..adapters.webhook import ApWebhook
from ..domain import rules
from ..domain.model import BillingState, ObligationView, SlaCredit
from ..domain.validate import validate_invoice, verdict_without_contract
from ..settings import SERVICE, SOURCE, ValidatorSettings

log = logging.getLogger(__name__)

PARKED = Counter("invoice_validator_parked_total", "Invoices parked until their contract is known")
VERDICTS = Counter("invoice_validator_verdicts_total", "Verdicts sent", ["status"])

# Namespace for ids derived from other ids (verdict and alert ce_ids, HTTP invoice ids).
ID_NAMESPACE = uuid.UUID("5b0e3c1a-7f1e-4c57-9a55-3d1f0b6f2a10")


def derived_id(kind: str, source_id: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{kind}:{source_id}"))


def faust_broker(kafka: KafkaSettings) -> list[str]:
    return [f"kafka://{host.strip()}" for host in kafka.bootstrap_servers.split(",") if host.strip()]


def faust_credentials(kafka: KafkaSettings) -> Any:
    """The same KAFKA_* security settings the confluent-kafka services use, for aiokafka."""
    protocol = kafka.security_protocol
    context = ssl.create_default_context(cafile=kafka.ssl_ca_location) if protocol.endswith("SSL") else None
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=kafka.sasl_username, password=kafka.sasl_password,
                                     mechanism=kafka.sasl_mechanism or "PLAIN", ssl_context=context)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return None


# Faust tables; each one's changelog is <app id>-<table>-changelog.
TABLES = ("contracts", "obligations", "billing", "seen", "verdicts", "parked", "vendors")


def changelog_topics(settings: ValidatorSettings) -> list[TopicSpec]:
    """The tables' changelogs (compacted, never time-retained), created before Faust starts: when Faust
    creates them itself on a new cluster its metadata can still say 0 partitions when the first
    record arrives, and every record then fails with PartitionsMismatch until a restart."""
    return [TopicSpec(f"{settings.app_id}-{table}-changelog", "table key", settings.topic_partitions, "compact",
                      None, (), f"invoice-validator table changelog: {table}") for table in TABLES]


class Validator:
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
            # Verdicts and table records are ~10 KB: the 16 KB default batch held one record each, so the
            # producer (one in-flight request per broker) capped throughput. Batch them and compress.
            producer_max_batch_size=1_048_576,
            producer_linger=0.005,
            producer_compression_type="lz4",
        )
        self.app = app
        n = settings.topic_partitions

        def table(name: str) -> Any:
            return app.Table(name, default=None, partitions=n)

        self.contracts = table("contracts")  # contract id -> {"vendor", "snapshot"}
        self.obligations = table("obligations")  # contract id -> ObligationView json
        self.billing = table("billing")  # contract id -> BillingState json (cumulative billed per line)
        self.seen = table("seen")  # tenant|vendor|invoice number -> first invoice id
        self.verdicts = table("verdicts")  # invoice id -> {"ce_id", "status", "verdict"}
        self.parked = table("parked")  # park key -> [{"ce_id", "invoice", "parked_at", "partition"}]
        # vendor id -> {contract id: snapshot JSON}, on the vendor's partition (where vendor-keyed invoices are).
        self.vendors = table("vendors")
        self.cache = ContractCache(self.contracts, self.vendors)
        # (park key, invoice ce_id, partition the entry lives in) -> when its wait is over.
        self.park_due: DueIndex[tuple[str, str, int]] = DueIndex()
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

        self.contracts.on_recover(self._on_contracts_recovered)
        self.parked.on_recover(self._on_parked_recovered)
        app.agent(self.invoices_topic, name="invoices")(self._invoice_agent)
        app.agent(self.state_topic, name="contract-state")(self._contract_agent)
        app.agent(self.obligation_topic, name="obligations")(self._obligation_agent)
        app.agent(self.expiry_topic, name="park-expiry")(self._expiry_agent)
        app.agent(self.vendor_topic, name="vendor-directory")(self._vendor_agent)
        app.agent(self.routed_topic, name="invoices-by-contract")(self._routed_agent)
        app.timer(settings.sweep_interval_seconds, name="park-sweep")(self._sweep)

        async def _ready(sender: Any, **kwargs: Any) -> None:
            self.ready = True

        app.on_rebalance_complete.connect(_ready)  # type: ignore[arg-type]

    # --- shell helpers ----------------------------------------------------------------------

    async def _on_contracts_recovered(self) -> None:
        self.cache.invalidate()

    async def _on_parked_recovered(self) -> None:
        self.park_due = DueIndex()
        timeout = timedelta(seconds=self.settings.park_timeout_seconds)
        for key, entries in list(self.parked.items()):
            for entry in entries or ():
                self.park_due.schedule((key, entry["ce_id"], entry.get("partition", 0)),
                                       datetime.fromisoformat(entry["parked_at"]) + timeout)

    async def _events(self, stream: Any) -> AsyncIterator[tuple[EventT[Any], Any]]:
        """Decode every record; the undecodable go to the DLQ and the stream goes on."""
        async for event in stream.events():
            headers = list((event.headers or {}).items())
            try:
                envelope = decode(event.value, headers)
            except DecodeError as exc:
                await self._dead_letter(event, exc)
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
        async for event, envelope in self._events(stream):
            async def handle(env: Any) -> None:
                if not isinstance(env.event, InvoiceReceived):
                    raise DecodeError(f"unexpected {env.type} on {INVOICE_RECEIVED.name}")
                await self.route_invoice(env.event, env.id)
            await self._guarded(event, envelope, handle)

    async def _contract_agent(self, stream: Any) -> None:
        async for event, envelope in self._events(stream):
            async def handle(env: Any, raw: bytes = event.value) -> None:
                if not isinstance(env.event, ContractSnapshot):
                    raise DecodeError(f"unexpected {env.type} on {CONTRACT_STATE.name}")
                await self.handle_contract(env.event, raw)
            await self._guarded(event, envelope, handle)

    async def _obligation_agent(self, stream: Any) -> None:
        async for event, envelope in self._events(stream):
            async def handle(env: Any) -> None:
                self.handle_obligation_event(env.event)
            await self._guarded(event, envelope, handle)

    async def _expiry_agent(self, stream: Any) -> None:
        async for event in stream.events():
            try:
                order = json.loads(event.value)
                await self.expire_parked(order["key"], order["ce_id"])
            except Exception:  # an internal record we wrote ourselves; log, never crash the agent
                log.exception("park expiry failed for %r", event.value)

    async def _vendor_agent(self, stream: Any) -> None:
        async for event in stream.events():
            try:
                await self.handle_vendor_directory(json.loads(event.value))
            except Exception:  # an internal record we wrote ourselves; log, never crash the agent
                log.exception("vendor directory update failed for %r", event.key)

    async def _routed_agent(self, stream: Any) -> None:
        async for event in stream.events():
            try:
                order = json.loads(event.value)
                invoice = InvoiceReceived.model_validate_json(order["invoice"])
                await self.handle_invoice(invoice, order["ce_id"], parked_at=order.get("parked_at"),
                                          expired=order.get("expired", False))
            except Exception:  # an internal record we wrote ourselves; log, never crash the agent
                log.exception("routed invoice failed for %r", event.key)

    def _partition(self, key: str) -> int:
        return partition_for(key.encode(), self.settings.topic_partitions, self.settings.source_partitioner)

    async def _sweep(self) -> None:
        """Send an expiry order for every parked invoice whose wait is over (O(k log n) for k due)."""
        for (key, ce_id, partition), _ in list(self.park_due.pop_due(self.clock.now())):
            # To the partition the entry lives in: the expiry topic is co-partitioned with the source
            # topics, so the replica that owns the parked entry is the one that expires it.
            await self.expiry_topic.send(key=key.encode(), value=json.dumps({"key": key, "ce_id": ce_id}).encode(),
                                         partition=partition)

    # --- handlers ---------------------------------------------------------------------------

    async def handle_contract(self, snapshot: ContractSnapshot, raw_json: bytes | None = None) -> None:
        previous = self.contracts.get(snapshot.contract_id)
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
        # Invoices that referenced this contract before it was known.
        key = f"ref:{snapshot.contract_id}"
        entries = self.parked.get(key)
        if entries:
            del self.parked[key]
            for entry in entries:
                self.park_due.cancel((key, entry["ce_id"], entry.get("partition", 0)))
                invoice = InvoiceReceived.model_validate_json(entry["invoice"])
                await self.handle_invoice(invoice, entry["ce_id"], parked_at=entry["parked_at"])

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
        key = f"vendor:{vendor}"
        parked = self.parked.get(key)
        if parked:
            del self.parked[key]
            for entry in parked:
                self.park_due.cancel((key, entry["ce_id"], entry.get("partition", 0)))
                invoice = InvoiceReceived.model_validate_json(entry["invoice"])
                await self.route_invoice(invoice, entry["ce_id"], parked_at=entry["parked_at"])

    def handle_obligation_event(self, event: Any) -> None:
        if isinstance(event, ObligationCompleted) and event.kind is ObligationKind.MILESTONE:
            view = ObligationView.from_json(self.obligations.get(event.contract_id))
            self.obligations[event.contract_id] = view.with_completed(event.obligation_id).to_json()
        elif isinstance(event, SlaBreached) and event.service_credit > 0:
            view = ObligationView.from_json(self.obligations.get(event.contract_id))
            credit = SlaCredit(event.instance_id, event.obligation_id, event.window_start.date(),
                               event.window_end.date(), event.service_credit, event.currency)
            self.obligations[event.contract_id] = view.with_credit(credit).to_json()

    def _park_key(self, invoice: InvoiceReceived) -> str:
        return f"ref:{invoice.contract_ref}" if invoice.contract_ref else f"vendor:{invoice.vendor_id}"

    async def route_invoice(self, invoice: InvoiceReceived, ce_id: str, *, parked_at: str | None = None,
                            expired: bool = False) -> None:
        """An invoice with a contract reference is validated here (it is keyed, so partitioned, by that
        contract). One without is matched by vendor on the vendor's partition, then sent to the partition
        of the contract it matched, where that contract's cumulative state lives."""
        if invoice.contract_ref or self.verdicts.get(invoice.invoice_id) is not None:
            await self.handle_invoice(invoice, ce_id, parked_at=parked_at, expired=expired)
            return
        match = rules.match_contract(invoice, None, self.cache.for_vendor(invoice.vendor_id))
        if match.kind != rules.MatchKind.FOUND:
            await self.handle_invoice(invoice, ce_id, parked_at=parked_at, expired=expired, match=match)
            return
        assert match.contract is not None
        contract_id = match.contract.contract_id
        routed = invoice.model_copy(update={"contract_ref": contract_id})
        body = json.dumps({"ce_id": ce_id, "invoice": routed.model_dump_json(), "parked_at": parked_at}).encode()
        self.routed_topic.send_soon(key=contract_id.encode(), value=body, partition=self._partition(contract_id))

    async def handle_invoice(self, invoice: InvoiceReceived, ce_id: str, *, parked_at: str | None = None,
                             expired: bool = False, match: rules.Match | None = None) -> None:
        if self.verdicts.get(invoice.invoice_id) is not None:
            return  # redelivered, or a re-post of an invoice already decided: one verdict per invoice
        if match is None:
            by_ref = self.cache.get(invoice.contract_ref) if invoice.contract_ref else None
            vendor_contracts = [] if invoice.contract_ref else self.cache.for_vendor(invoice.vendor_id)
            match = rules.match_contract(invoice, by_ref, vendor_contracts)
        now = self.clock.now()
        contract = match.contract
        if match.kind == rules.MatchKind.UNKNOWN:
            if not expired:
                self._park(invoice, ce_id, parked_at or now.isoformat())
                return
            verdict = verdict_without_contract(invoice, rules.contract_unknown_finding(invoice), now)
        elif match.kind == rules.MatchKind.AMBIGUOUS:
            verdict = verdict_without_contract(
                invoice, rules.contract_ambiguous_finding(invoice, match.candidates), now)
        else:
            assert contract is not None
            seen_key = f"{invoice.tenant_id}|{invoice.vendor_id}|{invoice.invoice_number}"
            first = self.seen.get(seen_key)
            duplicate_of = first if first is not None and first != invoice.invoice_id else None
            raw_view = self.obligations.get(contract.contract_id)
            view = ObligationView.from_json(raw_view)
            done = {s.obligation_id for s in contract.obligation_states if s.status == "completed"}
            if done - view.completed_milestones:
                view = ObligationView(view.completed_milestones | done, view.sla_credits)
            billing = BillingState.from_json(self.billing.get(contract.contract_id))
            outcome = validate_invoice(invoice, contract, obligations=view, billing=billing,
                                       duplicate_of=duplicate_of, now=now)
            verdict = outcome.verdict
            if first is None:
                self.seen[seen_key] = invoice.invoice_id
            if outcome.billing != billing:
                self.billing[contract.contract_id] = outcome.billing.to_json()
        self.emit(verdict, ce_id, contract)

    def _park(self, invoice: InvoiceReceived, ce_id: str, parked_at: str) -> None:
        key = self._park_key(invoice)
        entries = list(self.parked.get(key) or ())
        if any(e["ce_id"] == ce_id for e in entries):
            return  # redelivered while parked
        event = faust.current_event()
        # The table write lands in the changelog partition of the record being processed.
        partition = event.message.partition if event is not None else 0
        entries.append({"ce_id": ce_id, "invoice": invoice.model_dump_json(), "parked_at": parked_at,
                        "partition": partition})
        self.parked[key] = entries
        due = datetime.fromisoformat(parked_at) + timedelta(seconds=self.settings.park_timeout_seconds)
        self.park_due.schedule((key, ce_id, partition), due)
        PARKED.inc()
        log.info("parked invoice %s until its contract is known (%s)", invoice.invoice_id, key)

    async def expire_parked(self, key: str, ce_id: str) -> None:
        entries = list(self.parked.get(key) or ())
        entry = next((e for e in entries if e["ce_id"] == ce_id), None)
        if entry is None:
            return  # resolved meanwhile
        rest = [e for e in entries if e["ce_id"] != ce_id]
        if rest:
            self.parked[key] = rest
        else:
            del self.parked[key]
        invoice = InvoiceReceived.model_validate_json(entry["invoice"])
        await self.route_invoice(invoice, ce_id, parked_at=entry["parked_at"], expired=True)

    def emit(self, verdict: InvoiceValidated, invoice_ce_id: str, contract: ContractSnapshot | None) -> None:
        """Enqueue the verdict (and alert), then record it; synchronous, so nothing interleaves.

        The verdict goes into the producer buffer before the `verdicts` changelog record, so a crash
        can at worst re-send the verdict (same derived ce_id) on redelivery, never lose it.
        """
        verdict_id = derived_id("verdict", invoice_ce_id)
        record = encode(verdict, source=SOURCE, event_id=verdict_id, time=verdict.validated_at)
        self.verdict_topic.send_soon(key=record.key, value=record.value, headers=record.headers)
        if verdict.status is VerdictStatus.REJECTED and verdict.total_billed > self.settings.alert_threshold:
            alert = self.overbilling_alert(verdict, invoice_ce_id, contract)
            alert_record = encode(alert, source=SOURCE, event_id=derived_id("alert", invoice_ce_id),
                                  time=verdict.validated_at)
            self.alert_topic.send_soon(key=alert_record.key, value=alert_record.value, headers=alert_record.headers)
        self.verdicts[verdict.invoice_id] = {"ce_id": verdict_id, "status": verdict.status.value,
                                             "verdict": record.value.decode()}
        VERDICTS.labels(verdict.status.value).inc()
        for code in verdict.reason_codes:
            REJECTED.labels(SERVICE, INVOICE_VALIDATED.name, code).inc()
        if self.webhook is not None:
            self.webhook.deliver_later(verdict_id, record.value)

    def overbilling_alert(self, verdict: InvoiceValidated, invoice_ce_id: str,
                          contract: ContractSnapshot | None) -> Alert:
        contract_id = verdict.contract_id or verdict.vendor_id
        return Alert(
            alert_id=derived_id("alert", invoice_ce_id), tenant_id=verdict.tenant_id, contract_id=contract_id,
            alert_type="invoice.rejected", tier=Tier.RED,
            title=f"Invoice {verdict.invoice_number} from {verdict.vendor_id} rejected",
            what=f"Invoice {verdict.invoice_number} bills {verdict.total_billed} {verdict.currency}; "
                 f"{verdict.prevented_overpayment} {verdict.currency} of it is not supported by the contract.",
            why="; ".join(verdict.messages)[:2000],
            required_action="Hold the payment and ask the vendor for a corrected invoice.",
            owner=contract.owner if contract is not None else None,
            backup_owner=contract.backup_owner if contract is not None else None,
            amount_at_stake=verdict.prevented_overpayment or verdict.total_billed, currency=verdict.currency,
            dedup_key=f"invoice.rejected:{contract_id}:{verdict.invoice_id}", source_service=SERVICE,
            source_event_id=invoice_ce_id, raised_at=verdict.validated_at,
        )

    def verdict_for(self, invoice_id: str) -> InvoiceValidated | None:
        """For the HTTP API (another thread): a dict lookup in the in-memory table, no stream needed."""
        raw = self.verdicts.get(invoice_id)
        if raw is None:
            return None
        return InvoiceValidated.model_validate_json(raw["verdict"])

