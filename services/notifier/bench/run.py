"""Benchmark: alerts/s through tiering + dedup + delivery to a loopback SMTP sink.

Baseline, measured in the same run on the same broker and the same input topic: a
passthrough consumer (the same EventConsumer loop: consume + decode + produce one record
per alert, no rules, no database, no SMTP). Prints both rates and their ratio.

    python services/notifier/bench/run.py
Env: BENCH_BOOTSTRAP (else a broker is started), BENCH_DATABASE_URL (else PostgreSQL is
started), BENCH_SCALE (1.0 = 2000 alerts, a fifth of them repeats that dedup suppresses),
BENCH_WORKERS (4: the notifier is measured with 1 consumer thread and with this many, as
NOTIFIER_CONSUMERS configures the service; the input topic has 4 partitions).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer
from notifier.adapters.channels import EmailChannel, SmtpSettings
from notifier.adapters.store import Store
from notifier.domain.links import Links
from notifier.domain.rules import parse_rules
from notifier.service import Notifier
from notifier.settings import DEFAULT_RULES

from contract_schema.alert import Alert, Tier
from contract_schema.base import Person
from contract_schema.codec import Envelope, encode
from mesh_common.clock import SystemClock
from mesh_common.consumer import EventConsumer
from mesh_common.delivery import RetryPolicy
from mesh_common.kafka import produce_event
from mesh_common.settings import KafkaSettings
from mesh_testing import create_topics, free_port, unique_name, wait_for


def start_smtp_sink(port: int) -> subprocess.Popen[bytes]:
    """aiosmtpd's discarding Sink in its own process, so it does not share the notifier's GIL."""
    proc = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                             "-c", "aiosmtpd.handlers.Sink"])

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=20, message="SMTP sink listening")
    return proc


PARTITIONS = 4
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))


def make_alerts(n: int) -> list[Alert]:
    now = datetime.now(UTC)
    owner = Person(name="Bench Owner", email="owner@bench.example")
    alerts = []
    distinct = max(1, int(n * 0.8))
    for i in range(n):
        cond = i if i < distinct else i % distinct  # the last fifth repeat earlier conditions
        alerts.append(Alert(
            alert_id=f"bench-{i}-{unique_name('a')}", tenant_id="t", contract_id=f"C-{cond % 500}",
            alert_type="obligation.due_soon", tier=Tier.YELLOW, title=f"Report {cond} due",
            what="The monthly report is due", deadline=now + timedelta(days=3), owner=owner,
            dedup_key=f"obligation.due_soon:C-{cond % 500}:ob-{cond}", source_service="bench", raised_at=now))
    return alerts


def run_until(consumers: list[EventConsumer], done: threading.Event, n_label: str, timeout: float = 600) -> float:
    threads = [threading.Thread(target=c.run, daemon=True) for c in consumers]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    finished = done.wait(timeout)
    elapsed = time.perf_counter() - start
    for consumer in consumers:
        consumer.stop()
    for thread in threads:
        thread.join(30)
    if not finished:
        raise SystemExit(f"{n_label}: did not finish in {timeout}s")
    return elapsed


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    n = max(50, int(2000 * scale))
    from mesh_testing.servers import bench_stack

    with bench_stack() as (bootstrap, db_url):
        assert db_url is not None
        bench(bootstrap, db_url, n)


def bench(bootstrap: str, db_url: str, n: int) -> None:
    prefix = unique_name("bench").replace("-", "_")
    alerts_topic, out_topic, notif_topic = f"{prefix}.alert", f"{prefix}.passthrough", f"{prefix}.notification"
    create_topics(bootstrap, [alerts_topic, alerts_topic + ".dlq", out_topic, notif_topic], partitions=PARTITIONS)
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    producer = Producer(kafka.producer())
    alerts = make_alerts(n)
    for a in alerts:
        r = encode(a, source="bench", event_id=a.alert_id)
        producer.produce(alerts_topic, key=r.key, value=r.value, headers=r.headers)  # type: ignore[arg-type]
    producer.flush(60)
    print(f"{n} alerts on {alerts_topic} ({n - int(n * 0.8)} repeats for dedup)")

    # Baseline: the same consume loop, decode, one record produced per alert.
    seen = 0
    done = threading.Event()

    def passthrough(envelope: Envelope, _msg: object) -> None:
        nonlocal seen
        produce_event(base.producer, envelope.event, source="bench", event_id=envelope.id, topic=out_topic)
        seen += 1
        if seen >= n:
            base.producer.flush(30)
            done.set()

    base = EventConsumer(kafka, service="bench-baseline", group_id=f"{prefix}-base", topics=[alerts_topic],
                         handler=passthrough)
    base_s = run_until([base], done, "baseline")

    # The notifier: rules, dedup in PostgreSQL, delivery ledger, e-mail to a loopback SMTP sink.
    smtp_port = free_port()
    sink = start_smtp_sink(smtp_port)
    try:
        base_rate = n / base_s
        print(f"baseline passthrough : {base_rate:9.1f} alerts/s ({base_s:.2f}s, 1 consumer)")
        for workers in sorted({1, WORKERS}):
            rate, sent, suppressed = run_notifier(kafka, db_url, alerts_topic, notif_topic, smtp_port, n, workers,
                                                  f"{prefix}_w{workers}")
            print(f"notifier             : {rate:9.1f} alerts/s ({n / rate:.2f}s, {workers} consumer thread(s)); "
                  f"{sent} e-mails sent, {suppressed} suppressed; ratio notifier/baseline: {rate / base_rate:.3f}")
    finally:
        sink.terminate()
        sink.wait(10)


def run_notifier(kafka: KafkaSettings, db_url: str, alerts_topic: str, notif_topic: str, smtp_port: int, n: int,
                 workers: int, schema: str) -> tuple[float, int, int]:
    store = Store(db_url, schema)
    store.migrate()
    rules = parse_rules(DEFAULT_RULES.read_text(), str(DEFAULT_RULES))
    email = EmailChannel("email", SmtpSettings(host="127.0.0.1", port=smtp_port), RetryPolicy(3, 0.05, 1))
    producer = Producer(kafka.producer(**{"linger.ms": 0}))  # as the service configures it
    notifier = Notifier(rules=rules, store=store, channels={"email": email}, producer=producer,
                        clock=SystemClock(), links=Links("http://localhost:8000", "a", "c"),
                        alerts_topic=alerts_topic, notifications_topic=notif_topic)
    handled = 0
    done = threading.Event()
    lock = threading.Lock()

    def handle(envelope: Envelope, _msg: object) -> None:
        nonlocal handled
        assert isinstance(envelope.event, Alert)
        notifier.handle_alert(envelope.event)
        with lock:
            handled += 1
            if handled >= n:
                done.set()

    consumers = [EventConsumer(kafka, service="bench-notifier", group_id=f"{schema}-group", topics=[alerts_topic],
                               handler=handle, producer=producer) for _ in range(workers)]
    elapsed = run_until(consumers, done, f"notifier x{workers}")
    suppressed = store.conn().execute("SELECT coalesce(sum(suppressed), 0) AS s FROM threads").fetchone()
    sent = store.conn().execute("SELECT count(*) AS n FROM deliveries WHERE status = 'sent'").fetchone()
    store.conn().execute(f"DROP SCHEMA {schema} CASCADE")
    return n / elapsed, int(sent["n"]) if sent else -1, int(suppressed["s"]) if suppressed else -1


if __name__ == "__main__":
    main()
