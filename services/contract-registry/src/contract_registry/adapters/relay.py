"""The outbox relay: publishes committed outbox rows to Kafka, in order per contract, then marks them.

- Wakes on commit through LISTEN/NOTIFY; a slow fallback poll covers notifications lost while
  disconnected.
- Claims rows with SELECT ... FOR UPDATE SKIP LOCKED ordered by seq, so replicas never publish the
  same row twice. A claimed row whose contract still has an earlier unpublished row held by another
  replica is left for later: per-contract order = commit order even with several relays.
- Marks rows published only after the idempotent producer (acks=all) confirmed delivery (flush).
  A crash after produce but before the mark re-sends those rows after restart with the same ce_id
  (the outbox row id); consumers dedupe on ce_id. A crash before produce loses nothing: the rows
  are still unpublished.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Engine, text

from mesh_common.pg import libpq_url
from mesh_common.settings import KafkaSettings

from ..settings import RegistrySettings
from .db import check_schema, make_engine

log = logging.getLogger(__name__)

PUBLISHED = Counter("registry_outbox_published_total", "Outbox records published to Kafka", ["topic"])
PUBLISH_FAILED = Counter("registry_outbox_publish_failed_total", "Outbox records whose delivery failed")
PENDING = Gauge("registry_outbox_pending", "Outbox records committed but not yet published")
COMMIT_TO_ACK = Histogram("registry_outbox_commit_to_ack_seconds", "Outbox row created -> Kafka ack",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

_CLAIM = text("""
    SELECT id, seq, aggregate_id, topic, key, value, headers, created_at
    FROM outbox
    WHERE published_at IS NULL
    ORDER BY seq
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
""")
# Earliest unpublished row per contract that this relay did NOT claim (another replica holds it).
_BLOCKERS = text("""
    SELECT aggregate_id, min(seq) FROM outbox
    WHERE published_at IS NULL AND aggregate_id = ANY(:aggregates) AND NOT (seq = ANY(:claimed))
    GROUP BY aggregate_id
""")
_PENDING = text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
_MARK = text("UPDATE outbox SET published_at = now() WHERE id = ANY(:ids)")
_PURGE_OUTBOX = text("DELETE FROM outbox WHERE published_at < now() - make_interval(secs => :seconds)")
_PURGE_PROCESSED = text("DELETE FROM processed_events WHERE processed_at < now() - make_interval(secs => :seconds)")


@dataclass
class _Delivery:
    ok: set[uuid.UUID]
    failed: dict[uuid.UUID, str]


class OutboxRelay:
    def __init__(self, database_url: str, settings: RegistrySettings, kafka: KafkaSettings,
                 engine: Engine | None = None, name: str = "relay") -> None:
        self.settings = settings
        self.database_url = database_url
        self.name = name
        self._owns_engine = engine is None
        self.engine = engine or make_engine(database_url, settings.db_schema, pool_size=2)
        self.producer = Producer(kafka.producer(**{"client.id": f"{kafka.client_id}-registry-{name}"}))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._next_purge = time.monotonic() + settings.purge_interval_seconds

    # ---- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"outbox-{self.name}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.producer.flush(5)
        if self._owns_engine:
            self.engine.dispose()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """Publish until stop(): drain, then sleep until NOTIFY (or the fallback poll)."""
        while not self._stop.is_set():
            try:
                with self._listen() as listener:
                    while not self._stop.is_set():
                        while self.publish_batch() >= self.settings.relay_batch_size:
                            pass  # a full batch: there may be more right away
                        if time.monotonic() >= self._next_purge:
                            self.purge()
                        with self.engine.connect() as conn:  # cheap: a partial index holds only pending rows
                            PENDING.set(conn.execute(_PENDING).scalar_one())
                        self._wait(listener)
                self.last_error = None
            except Exception as exc:  # database or broker trouble: back off and start over, never die
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("outbox relay %s failed; retrying", self.name)
                self._stop.wait(1.0)

    def _listen(self) -> psycopg.Connection[Any]:
        schema = check_schema(self.settings.db_schema)
        conn = psycopg.connect(libpq_url(self.database_url), autocommit=True,
                               options=f"-csearch_path={schema}" if schema else "")
        conn.execute(f'LISTEN "{self.settings.notify_channel}"')
        return conn

    def _wait(self, listener: psycopg.Connection[Any]) -> None:
        deadline = time.monotonic() + self.settings.relay_fallback_poll_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            # Short slices so stop() is honoured quickly; one notification is enough to wake us.
            for _ in listener.notifies(timeout=0.25, stop_after=1):
                return

    # ---- one round --------------------------------------------------------------------------------

    def publish_batch(self) -> int:
        """Claim, publish and mark one batch. Returns how many rows were claimed."""
        with self.engine.connect() as conn, conn.begin():
            rows = conn.execute(_CLAIM, {"limit": self.settings.relay_batch_size}).all()
            if not rows:
                return 0
            claimed = [r.seq for r in rows]
            blockers: dict[str, int] = dict(conn.execute(_BLOCKERS, {"aggregates": list({r.aggregate_id for r in rows}),
                                                     "claimed": claimed}).all())
            ready = [r for r in rows if r.aggregate_id not in blockers or r.seq < blockers[r.aggregate_id]]
            delivery = self._produce(ready)
            if delivery.ok:
                conn.execute(_MARK, {"ids": list(delivery.ok)})
            now = time.time()
            for r in ready:
                if r.id in delivery.ok:
                    PUBLISHED.labels(r.topic).inc()
                    COMMIT_TO_ACK.observe(max(0.0, now - r.created_at.timestamp()))
        if delivery.failed:
            PUBLISH_FAILED.inc(len(delivery.failed))
            raise RuntimeError(f"{len(delivery.failed)} outbox records not delivered, e.g. "
                               f"{next(iter(delivery.failed.values()))}")
        return len(rows)

    def purge(self) -> tuple[int, int]:
        """Delete published outbox rows and inbound dedup ids past their retention. Returns the counts."""
        self._next_purge = time.monotonic() + self.settings.purge_interval_seconds
        with self.engine.begin() as conn:
            outbox = conn.execute(_PURGE_OUTBOX, {"seconds": self.settings.outbox_retention_hours * 3600}).rowcount
            processed = conn.execute(_PURGE_PROCESSED,
                                     {"seconds": self.settings.processed_events_retention_days * 86400}).rowcount
        return outbox, processed

    def _produce(self, rows: list[Any]) -> _Delivery:
        delivery = _Delivery(set(), {})

        def done(row_id: uuid.UUID) -> Any:
            def callback(err: KafkaError | None, _msg: Message) -> None:
                if err is None:
                    delivery.ok.add(row_id)
                else:
                    delivery.failed[row_id] = str(err)
            return callback

        for r in rows:
            headers = [(k, v.encode()) for k, v in r.headers]
            while True:
                try:
                    self.producer.produce(r.topic, key=r.key.encode(), value=r.value.encode(), headers=headers,
                                          on_delivery=done(r.id))
                    break
                except BufferError:  # local queue full: let deliveries drain, then retry
                    self.producer.poll(0.1)
        remaining = self.producer.flush(30)
        if remaining:
            for r in rows:
                if r.id not in delivery.ok:
                    delivery.failed.setdefault(r.id, "not acknowledged within 30s")
        return delivery

    def ready(self) -> str | None:
        """Readiness: the producer reaches the cluster and the loop is healthy."""
        try:
            self.producer.list_topics(timeout=2)
        except Exception as exc:
            return f"producer cannot reach Kafka: {exc}"
        if self._thread is not None and not self.alive:
            return "relay thread is not running"
        return self.last_error
