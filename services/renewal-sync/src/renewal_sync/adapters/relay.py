"""The outbox relay: publishes pending Kafka records and delivers pending CRM upserts.

Runs in its own thread with its own database connection and an asyncio loop (the CRM
calls are httpx + mesh_common.delivery). One replica relays at a time (a PostgreSQL
advisory lock), which keeps updates of a contract in order. A row is marked sent only after the broker or the
CRM acknowledged it, so a crash re-sends at most the rows in flight (Kafka consumers dedup
on ce_id; the CRM upsert is idempotent on the contract id).

A CRM outage delays an update, it does not drop it: a failed round is rescheduled in
PostgreSQL (backoff with jitter, never sooner than a Retry-After, at once when the CRM
answers again), a yellow "CRM sync delayed" alert goes out once the contract's sync has
been failing `crm_alert_after_minutes`, and only after `crm_give_up_after_hours` (or a
permanent 4xx) the update goes to the DLQ with a red "CRM sync failing" alert;
`renewal-sync redrive` sends it again (docs/adr/0003-crm-retry-and-give-up.md).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable

from confluent_kafka import Producer
from prometheus_client import Counter, Gauge, Histogram

from contract_schema.alert import Alert
from contract_schema.codec import encode
from contract_schema.renewal import RenewalOpportunity
from contract_schema.topics import ALERTS
from mesh_common.clock import Clock
from mesh_common.delivery import CircuitOpen, DeliveryError, breaker_wait, round_delay
from mesh_common.kafka import produce_dead_letter
from mesh_common.settings import KafkaSettings
from renewal_sync.adapters.crm import CrmClient
from renewal_sync.adapters.store import CRM, KAFKA, LeadLost, OutboxRow, PendingRow, Store
from renewal_sync.domain.renewal import SERVICE, crm_delayed_alert, crm_failing_alert
from renewal_sync.settings import SOURCE, RenewalSettings

log = logging.getLogger(__name__)

CRM_UPSERTS = Counter("renewal_crm_upserts_total", "CRM upsert outcomes", ["crm", "result"])
CRM_SECONDS = Histogram("renewal_crm_upsert_seconds", "CRM upsert time incl. retries", ["crm"])
CRM_CALLS = Counter("renewal_crm_calls_total", "CRM upsert calls (batches; in-call retries not counted)", ["crm"])
RELAYED = Counter("renewal_outbox_relayed_total", "Outbox records published to Kafka", ["topic"])
CRM_FAILING = Gauge("renewal_crm_failing_contracts", "Contracts whose CRM update is waiting after a failure")


ROLE = "outbox-relay"


class OutboxRelay:
    def __init__(self, cfg: RenewalSettings, kafka: KafkaSettings, store: Store, crm: CrmClient | None,
                 clock: Clock, on_crm_call: Callable[[PendingRow, RenewalOpportunity], None] | None = None) -> None:
        self.cfg, self.store, self.crm, self.clock = cfg, store, crm, clock
        self.producer = Producer(kafka.producer())
        self.on_crm_call = on_crm_call
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sem: asyncio.Semaphore | None = None
        self._sent: list[int] = []
        self._not_before = 0.0  # monotonic time before which no CRM call is made (Retry-After)
        self._degraded = True  # a CRM row may be waiting behind a backoff (unknown after a restart)
        self.thread: threading.Thread | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> OutboxRelay:
        self.thread = threading.Thread(target=self.run, name="outbox-relay", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._sem = asyncio.Semaphore(self.cfg.crm_concurrency)
        try:
            while not self._stop.is_set():
                try:
                    if not self.store.leads(ROLE):
                        if not self.store.try_lead(ROLE):  # another replica relays; stand by and try again
                            await asyncio.to_thread(self._stop.wait, 1.0)
                            continue
                        log.info("this replica now relays the outbox")
                    # A database restart inside a round is ridden out by the store (reconnect, backoff); the
                    # rows stay pending in PostgreSQL, so nothing is lost, at worst re-sent (idempotent).
                    busy = await self.relay_crm()  # the external call first: it is the one people wait for
                    busy = self.relay_kafka() or busy
                except LeadLost as exc:
                    log.warning("outbox relay stands by: %s", exc)
                    self._degraded = True
                    continue
                if not busy:
                    await asyncio.to_thread(self._wake.wait, 0.2)
                    self._wake.clear()
        finally:
            self.producer.flush(10)
            if self.crm is not None:
                await self.crm.aclose()

    def relay_kafka(self) -> bool:
        # Slices of 500: a CRM update that falls due meanwhile waits for one slice's acknowledgements, not 2,000.
        rows = self.store.pending(KAFKA, 500)
        if not rows:
            return False
        failed: list[int] = []
        for row in rows:
            def report(err: object, _msg: object, row_id: int = row.id) -> None:
                if err is not None:
                    failed.append(row_id)
            self.producer.produce(row.topic, key=row.key, value=row.value, headers=list(row.headers),
                                  on_delivery=report)
            self.producer.poll(0)
        # A broker restart only delays the acknowledgements: wait for them (rows marked sent before they are
        # acknowledged could be lost; re-producing rows still in flight would only duplicate them).
        while self.producer.flush(10) > 0:
            log.warning("outbox relay: records still in flight after 10 s; waiting for the broker")
            if self._stop.is_set():
                return True
        done = [r.id for r in rows if r.id not in failed]
        self.store.mark_done(done)
        for r in rows:
            RELAYED.labels(r.topic).inc()
        return True

    async def relay_crm(self) -> bool:
        if self.crm is None:
            rows = self.store.pending(CRM, 2000)
            self.store.mark_done([r.id for r in rows], "skipped")  # no CRM configured
            return bool(rows)
        if time.monotonic() < self._not_before:  # the CRM said when to come back (429 Retry-After)
            return False
        size = max(1, self.crm.max_batch)
        # A round takes what every concurrent call can carry (16 x 200 with Salesforce): a burst of due
        # stages goes out in one round instead of queueing behind the Kafka relay between rounds.
        rows = self.store.pending(CRM, max(500, size * self.cfg.crm_concurrency))
        if not rows:
            return False
        self._sent = []
        await asyncio.gather(*(self._deliver(rows[i:i + size]) for i in range(0, len(rows), size)))
        self.store.mark_done(self._sent)  # one transaction for the round, not one per call
        if self._sent and self._degraded:
            # The CRM answers again: what waits behind a backoff goes now, not when its timer runs out.
            resumed = self.store.resume_crm()
            self._degraded = False
            if resumed:
                log.info("CRM answers again: %d waiting update(s) resumed", resumed)
        if self._degraded or self._sent:
            CRM_FAILING.set(self.store.crm_failing())
        return True

    async def _deliver(self, rows: list[PendingRow]) -> None:
        """One CRM call for `rows` (one row per contract; Salesforce takes up to 200 in a collection upsert,
        HubSpot 100 in a batch upsert). A record the CRM refused inside a successful call fails alone."""
        assert self.crm is not None and self._sem is not None
        opps = [RenewalOpportunity.model_validate_json(row.value) for row in rows]
        async with self._sem:
            started = time.perf_counter()
            try:
                if self.on_crm_call is not None:
                    for row, opp in zip(rows, opps, strict=True):
                        self.on_crm_call(row, opp)
                outcomes = await self.crm.upsert_batch(opps)
            except CircuitOpen as exc:  # the breaker protects a CRM that is down: wait for its trial call
                for row, opp in zip(rows, opps, strict=True):
                    self._failed(row, opp, exc, permanent=False, circuit_open=True)
                return
            except DeliveryError as exc:
                if exc.retry_after is not None:
                    self._not_before = max(self._not_before, time.monotonic() + exc.retry_after)
                for row, opp in zip(rows, opps, strict=True):
                    self._failed(row, opp, exc, permanent=exc.permanent)
                return
            except Exception as exc:  # an adapter bug must not kill the relay; treat as a failed round
                log.exception("CRM upsert of %s crashed", [r.event_id for r in rows])
                for row, opp in zip(rows, opps, strict=True):
                    self._failed(row, opp, exc, permanent=False)
                return
            finally:
                CRM_SECONDS.labels(self.crm.name).observe(time.perf_counter() - started)
                CRM_CALLS.labels(self.crm.name).inc()
        for row, opp, outcome in zip(rows, opps, outcomes, strict=True):
            if outcome is None:
                CRM_UPSERTS.labels(self.crm.name, "ok").inc()
                self._sent.append(row.id)
            else:  # the CRM answers; this record was refused: its own retry or DLQ, the same rules
                log.warning("CRM refused %s inside a batch: %s", row.event_id, outcome)
                self._failed(row, opp, outcome, permanent=outcome.permanent, crm_down=False)

    def _failed(self, row: PendingRow, opp: RenewalOpportunity, exc: BaseException, *, permanent: bool,
                circuit_open: bool = False, crm_down: bool = True) -> None:
        assert self.crm is not None
        # A record refused by a CRM that answers is not an outage: the next success must not resume it early.
        self._degraded = self._degraded or crm_down
        failing_for = row.failing_for or 0.0
        error = f"{type(exc).__name__}: {exc}"
        if not permanent and failing_for < self.cfg.crm_give_up_after_hours * 3600:
            CRM_UPSERTS.labels(self.crm.name, "retry").inc()
            if circuit_open:  # no call was made: not an attempt; come back for the breaker's trial call
                delay = breaker_wait(self.crm.breaker) + random.uniform(0, self.crm.breaker.reset_after / 5)
            else:
                delay = round_delay(row.attempts, base=self.cfg.crm_round_delay, cap=self.cfg.crm_max_round_delay,
                                    retry_after=getattr(exc, "retry_after", None))
            self.store.retry_later(row.id, delay, error, count_attempt=not circuit_open)
            if not row.alerted and failing_for >= self.cfg.crm_alert_after_minutes * 60:
                log.warning("CRM sync of %s failing for %.0f s, still retrying: %s", row.event_id, failing_for, error)
                alert = crm_delayed_alert(opp, error, self.clock.now(), failing_for,
                                          self.cfg.crm_give_up_after_hours * 3600, row.event_id)
                self._raise(opp, alert)
                self.store.mark_alerted(row.contract_id)
            return
        CRM_UPSERTS.labels(self.crm.name, "dead").inc()
        log.error("CRM upsert %s failed for good after %.0f s: %s; `renewal-sync redrive --contract %s` re-sends it",
                  row.event_id, failing_for, exc, row.contract_id)
        produce_dead_letter(self.producer, topic=row.topic, partition=0, offset=row.id, key=row.key,
                            value=row.value, headers=row.headers, error=exc, service=SERVICE)
        self.producer.flush(10)
        self._raise(opp, crm_failing_alert(opp, error, self.clock.now(), row.event_id))
        self.store.mark_done([row.id], "dead", f"{exc}")

    def _raise(self, opp: RenewalOpportunity, alert: Alert) -> None:
        record = encode(alert, source=SOURCE, event_id=alert.alert_id, time=self.clock.now())
        self.store.add_outbox([OutboxRow(KAFKA, opp.contract_id, alert.alert_id, self.cfg.topic(ALERTS.name),
                                         record.key, record.value, record.headers)])
        self._wake.set()

__all__ = ["CRM", "OutboxRelay", "breaker_wait", "round_delay"]
