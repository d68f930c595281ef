"""`notifier`: the worker (alerts consumer + ticker) and the HTTP API in one process, configured from env."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import partial
from types import FrameType
from typing import Any

import psycopg
import uvicorn
from confluent_kafka import Producer
from opentelemetry import trace

from contract_schema.alert import Alert
from contract_schema.codec import Envelope
from contract_schema.renewal import RenewalDecision
from mesh_common.auth import AuthSettings
from mesh_common.clock import EPOCH, Clock, ClockFollower, ManualClock, SystemClock
from mesh_common.consumer import EventConsumer
from mesh_common.delivery import RetryPolicy
from mesh_common.ops import CONSUMER_LAG
from mesh_common.settings import DatabaseSettings, KafkaSettings, ServiceSettings
from mesh_common.tracing import setup_tracing_from_env

from ..adapters.channels import Channel, EmailChannel, HttpChannel, SmtpSettings
from ..adapters.store import Store
from ..config import NotifierSettings
from ..domain.rules import RulesConfig, RulesError, parse_rules
from ..service import SERVICE, Links, Notifier
from .app import create_app

log = logging.getLogger("notifier")


def load_rules(path: os.PathLike[str] | str) -> RulesConfig:
    with open(path, encoding="utf-8") as fh:
        return parse_rules(fh.read(), str(path))


def build_channels(rules: RulesConfig, settings: NotifierSettings,
                   environ: Mapping[str, str] = os.environ) -> dict[str, Channel]:
    policy = RetryPolicy(settings.retry_attempts, settings.retry_base_delay, settings.retry_max_delay)
    smtp = SmtpSettings(host=settings.smtp_host, port=settings.smtp_port, starttls=settings.smtp_starttls,
                        ssl=settings.smtp_ssl, username=settings.smtp_username, password=settings.smtp_password,
                        sender=settings.smtp_sender, timeout=settings.smtp_timeout,
                        ca_file=settings.smtp_ca_file)
    out: dict[str, Channel] = {}
    for name, cfg in rules.channels.items():
        if cfg.kind == "email":
            out[name] = EmailChannel(name, smtp, policy)
        else:
            url = cfg.url or (environ.get(cfg.url_env) if cfg.url_env else None)
            secret = environ.get(cfg.secret_env) if cfg.secret_env else None
            out[name] = HttpChannel(name, cfg.kind, url, policy, secret=secret)
    return out


def record_lag(stats_json: str) -> None:
    """librdkafka statistics -> the shared mesh_consumer_lag gauge, per assigned partition."""
    stats = json.loads(stats_json)
    for topic, info in stats.get("topics", {}).items():
        for partition, p in info.get("partitions", {}).items():
            if partition != "-1" and p.get("consumer_lag", -1) >= 0:
                CONSUMER_LAG.labels(SERVICE, topic, partition).set(p["consumer_lag"])


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the active trace id so logs and traces join up."""

    def format(self, record: logging.LogRecord) -> str:
        span = trace.get_current_span().get_span_context()
        entry: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                                 "service": SERVICE, "msg": record.getMessage()}
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class Ticker:
    """Runs Notifier.tick when the clock moves (topic clock) or every `interval` seconds (wall clock)."""

    def __init__(self, notifier: Notifier, interval: float) -> None:
        self.notifier, self.interval = notifier, interval
        self._wake = threading.Event()
        self._stop = threading.Event()

    def poke(self, *_: object) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.notifier.tick()
            except Exception:  # a failed tick is retried on the next one; never kill the thread
                log.exception("tick failed")


def main() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=os.environ.get("MESH_LOG_LEVEL", "INFO"), handlers=[handler])
    settings = NotifierSettings()
    service = ServiceSettings()
    kafka = KafkaSettings()
    setup_tracing_from_env(SERVICE)
    try:
        rules = load_rules(settings.rules_file)
    except (RulesError, OSError) as exc:
        print(f"notifier: cannot use rules file: {exc}", file=sys.stderr)
        sys.exit(2)
    store = Store(DatabaseSettings().url, settings.db_schema)
    store.migrate()

    clock: Clock
    follower: ClockFollower | None = None
    if service.clock == "topic":
        manual = ManualClock(EPOCH)
        clock = manual
        follower = ClockFollower(manual, kafka.consumer(f"{settings.group_id}-clock"), topic=settings.clock_topic,
                                 clock_id=settings.clock_id)
    else:
        clock = SystemClock()
    # Records are flushed once per alert: no linger, the flush is the batch.
    producer = Producer(kafka.producer(**{"linger.ms": 0}))
    notifier = Notifier(rules=rules, store=store, channels=build_channels(rules, settings), producer=producer,
                        clock=clock, links=Links(service.public_base_url, settings.ack_secret,
                                                 settings.calendar_secret, timedelta(days=settings.ack_link_ttl_days)),
                        alerts_topic=settings.alerts_topic, notifications_topic=settings.notifications_topic)

    def handle(envelope: Envelope, _msg: object) -> None:
        event = envelope.event
        work: Callable[[], object]
        if isinstance(event, Alert):
            work = partial(notifier.handle_alert, event)
        elif isinstance(event, RenewalDecision):
            work = partial(notifier.renewal_decided, event)  # stops the contract's renewal escalations
        else:
            raise ValueError(f"expected an Alert or a RenewalDecision, got {envelope.type}")
        # The database being away is not the record's fault: wait for it (holding the partition)
        # rather than dead-lettering a good record. Bad data still raises and goes to the DLQ.
        delay = 0.5
        while True:
            try:
                work()
                return
            except psycopg.OperationalError as exc:
                log.warning("database unavailable handling %s %s, retrying in %.1fs: %s", envelope.type,
                            envelope.id, delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    # Several consumers in one process share the partitions like replicas do; each thread has its
    # own database connection and SMTP session, so deliveries to slow servers overlap.
    consumers = []
    for i in range(settings.consumers):
        overrides: dict[str, Any] = {"session.timeout.ms": settings.session_timeout_ms,
                                     "statistics.interval.ms": settings.stats_interval_ms, "stats_cb": record_lag}
        if settings.instance_id:
            overrides["group.instance.id"] = settings.instance_id + (f"-{i}" if i else "")
        consumers.append(EventConsumer(kafka, service=SERVICE, group_id=settings.group_id,
                                       topics=[settings.alerts_topic, settings.decisions_topic], handler=handle,
                                       producer=producer,
                                       **overrides))
    ticker = Ticker(notifier, settings.tick_seconds)
    if follower is not None:
        follower.on_advance = ticker.poke
        follower.start()
        # Alerts are decided at the mesh's time: wait for the ticks already on the topic.
        while not follower.wait_caught_up(5):
            log.info("waiting for the clock topic %s", settings.clock_topic)

    async def ready_consumer() -> str | None:
        return None if all(t.is_alive() for t in consumer_threads) else "an alert consumer stopped"

    async def ready_db() -> str | None:
        store.ping()
        return None

    app = create_app(notifier, auth=AuthSettings(), checks={"consumer": ready_consumer, "database": ready_db})
    consumer_threads = [threading.Thread(target=c.run, name=f"alerts-{i}", daemon=True)
                        for i, c in enumerate(consumers)]
    ticker_thread = threading.Thread(target=ticker.run, name="ticker", daemon=True)
    for thread in consumer_threads:
        thread.start()
    ticker_thread.start()

    server = uvicorn.Server(uvicorn.Config(app, host=service.http_host, port=service.http_port,
                                           log_level="warning", lifespan="off"))

    def shutdown(signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info("notifier started: rules %s (version %s, %d rules), clock %s", settings.rules_file, rules.version,
             len(rules.rules), service.clock)
    try:
        server.run()
    finally:
        for consumer in consumers:
            consumer.stop()
        ticker.stop()
        if follower is not None:
            follower.stop()
        for thread in consumer_threads:
            thread.join(15)
        producer.flush(10)


if __name__ == "__main__":
    main()
