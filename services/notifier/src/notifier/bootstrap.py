"""The notifier's one composition root: settings, adapters, the clock and the service with its handler table.

`bootstrap()` wires the real adapters (PostgreSQL, SMTP/HTTP channels, Kafka) unless it is given
others: the service-layer tests pass fakes (adapters/fakes.py) and a ManualClock and run in
milliseconds. The entry point (entrypoints/main.py) only starts and stops what this returns."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from confluent_kafka import Producer
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from contract_schema.codec import Envelope
from contract_schema.topics import ALERTS, RENEWAL_DECISION
from mesh_common.clock import Clock, ClockFollower
from mesh_common.consumer import EventConsumer
from mesh_common.delivery import RetryPolicy
from mesh_common.kafka import EventProducer
from mesh_common.runtime import Ticker, lag_recorder, make_clock
from mesh_common.settings import DatabaseSettings, KafkaSettings, ServiceSettings

from .adapters.channels import Channel, EmailChannel, HttpChannel, SmtpSettings
from .adapters.ports import AlertStore
from .adapters.store import Store
from .domain.links import Links
from .domain.rules import RulesConfig, parse_rules
from .outage import OutagePolicy, lease_owner
from .service import Notifier, handle
from .settings import SERVICE, NotifierSettings

log = logging.getLogger("notifier")


@dataclass
class Wiring:
    settings: NotifierSettings
    kafka: KafkaSettings
    notifier: Notifier
    ticker: Ticker
    follower: ClockFollower | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()
        self.ticker.start()
        self.ticker.wake_within(0)  # at once: claims and retries a predecessor left are due from the start

    def stop(self) -> None:
        for consumer in self.consumers:
            consumer.stop()
        self.ticker.stop()
        if self.follower is not None:
            self.follower.stop()
        for thread in self.threads:
            thread.join(15)
        self.notifier.producer.flush(10)


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
            out[name] = EmailChannel(name, smtp, policy, breaker_reset=settings.breaker_reset_seconds)
        else:
            url = cfg.url or (environ.get(cfg.url_env) if cfg.url_env else None)
            secret = environ.get(cfg.secret_env) if cfg.secret_env else None
            out[name] = HttpChannel(name, cfg.kind, url, policy, secret=secret,
                                    breaker_reset=settings.breaker_reset_seconds)
    return out


def bootstrap(settings: NotifierSettings | None = None, *, service: ServiceSettings | None = None,
              kafka: KafkaSettings | None = None, rules: RulesConfig | None = None,
              store: AlertStore | None = None, producer: EventProducer | None = None,
              channels: Mapping[str, Channel] | None = None, clock: Clock | None = None,
              environ: Mapping[str, str] = os.environ) -> Wiring:
    """Raises RulesError or OSError when the rules file cannot be used."""
    settings, service, kafka = settings or NotifierSettings(), service or ServiceSettings(), kafka or KafkaSettings()
    rules = rules or load_rules(settings.rules_file)
    if store is None:
        real = Store(DatabaseSettings().url, settings.db_schema)
        real.migrate()
        store = real
    def tick() -> None:
        due = notifier.tick()
        if due is not None:
            ticker.wake_within(due)

    ticker = Ticker(tick, settings.tick_seconds)
    follower = None
    if clock is None:
        clock, follower = make_clock(service, kafka, group_id=f"{settings.group_id}-clock",
                                     topic=settings.clock_topic, clock_id=settings.clock_id, on_advance=ticker.poke)
    # Records are flushed once per alert: no linger, the flush is the batch.
    producer = producer or Producer(kafka.producer(**{"linger.ms": 0}))
    links = Links(service.public_base_url, settings.ack_secret, settings.calendar_secret,
                  timedelta(days=settings.ack_link_ttl_days))
    notifier = Notifier(rules=rules, store=store, channels=channels or build_channels(rules, settings, environ),
                        producer=producer, clock=clock, links=links, alerts_topic=settings.alerts_topic,
                        notifications_topic=settings.notifications_topic,
                        outage=OutagePolicy(give_up_seconds=settings.give_up_after_hours * 3600,
                                            round_delay=settings.retry_round_delay,
                                            max_round_delay=settings.retry_max_round_delay,
                                            lease_seconds=settings.delivery_lease_seconds,
                                            owner=lease_owner(settings.instance_id)))
    notifier.wake = ticker.wake_within
    return Wiring(settings, kafka, notifier, ticker, follower)


def on_record(notifier: Notifier) -> Callable[[Envelope, object], None]:
    """The consumer's handler: the event's handler from the table, waiting out a database outage.

    The database being away is not the record's fault: wait for it (holding the partition)
    rather than dead-lettering a good record. Bad data still raises and goes to the DLQ."""
    def run(envelope: Envelope, _msg: object) -> None:
        for attempt in Retrying(retry=retry_if_exception_type(psycopg.OperationalError),
                                wait=wait_exponential(multiplier=0.5, max=30.0), reraise=True,
                                before_sleep=lambda state: log.warning(
                                    "database unavailable handling %s %s, retrying in %.1fs: %s", envelope.type,
                                    envelope.id, state.upcoming_sleep, state.outcome and state.outcome.exception())):
            with attempt:
                handle(notifier, envelope.event)
    return run


def add_consumers(wiring: Wiring) -> list[EventConsumer]:
    """Several consumers in one process share the partitions like replicas do; each thread has its
    own database connection and SMTP session, so deliveries to slow servers overlap."""
    s = wiring.settings
    for i in range(s.consumers):
        overrides: dict[str, Any] = {"session.timeout.ms": s.session_timeout_ms,
                                     "statistics.interval.ms": s.stats_interval_ms, "stats_cb": lag_recorder(SERVICE)}
        if s.instance_id:
            overrides["group.instance.id"] = s.instance_id + (f"-{i}" if i else "")
        wiring.consumers.append(EventConsumer(wiring.kafka, service=SERVICE, group_id=s.group_id,
                                              topics=[s.alerts_topic, s.decisions_topic],
                                              carries={s.alerts_topic: ALERTS, s.decisions_topic: RENEWAL_DECISION},
                                              handler=on_record(wiring.notifier), producer=wiring.notifier.producer,
                                              **overrides))
    wiring.threads = [threading.Thread(target=c.run, name=f"alerts-{i}", daemon=True)
                      for i, c in enumerate(wiring.consumers)]
    return wiring.consumers
