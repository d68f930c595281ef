"""Benchmark: the portfolio's projection into its read model against a plain consume-and-decode of the same
records on the same broker, the rebuild time, and p99 of the pipeline and summary endpoints at that size.

Records: per contract one snapshot, one renewal opportunity and obligation events up to the total (a third
scheduled, a third completed, a third overdue); every contract in one tenant (the panels' worst case).
The baseline reads every input topic from the beginning and decodes each record (no database); the
projection is `portfolio rebuild`'s loop (ProjectingConsumer.run_to_end) into an empty schema.

Env: BENCH_BOOTSTRAP, BENCH_DATABASE_URL (else started), BENCH_SCALE (1.0 = 10,000 contracts and
1,000,000 events), BENCH_REQUESTS (200 per endpoint).
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from datetime import timedelta

import httpx
from confluent_kafka import Consumer, KafkaError, Producer
from portfolio import samples
from portfolio.adapters.db import migrate, sqlalchemy_url
from portfolio.adapters.kafka import ProjectingConsumer
from portfolio.bootstrap import AppConfig, bootstrap
from portfolio.entrypoints.app import create_app
from portfolio.settings import INPUTS, PortfolioSettings

from contract_schema.codec import decode, encode
from contract_schema.topics import topic_for
from mesh_common.auth import AuthSettings, issue_token
from mesh_common.clock import ManualClock
from mesh_common.settings import KafkaSettings
from mesh_testing import create_topics
from mesh_testing.http import serve
from mesh_testing.servers import bench_stack

AUTH = AuthSettings(hs256_secret="portfolio-benchmark-secret-0123456789abcdef")
TENANT = "tenant-bench"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def publish(bootstrap: str, prefix: str, contracts: int, events: int) -> int:
    producer = Producer(KafkaSettings(bootstrap_servers=bootstrap).producer(**{"linger.ms": 50,
                                                                              "queue.buffering.max.messages": 500000}))
    sent = 0

    def send(event: samples.Event) -> None:
        nonlocal sent
        record = encode(event, source=samples.SOURCE, event_id=str(uuid.uuid4()))
        while True:
            try:
                producer.produce(prefix + topic_for(type(event)).name, key=record.key, value=record.value,
                                 headers=record.headers)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        if sent % 10000 == 0:
            producer.poll(0)

    per_contract = max(0, events // contracts - 2)
    for c in range(contracts):
        cid = f"C-{c:06d}"
        send(samples.snapshot(cid, tenant=TENANT, days_to_deadline=c % 150, value=str(1000 + c),
                              party=f"party-{c % 50}", contract_type=("msa", "sow", "nda")[c % 3]))
        send(samples.opportunity(cid, tenant=TENANT))
        for i in range(per_contract):
            at = samples.T0 + timedelta(minutes=i)
            maker = (samples.scheduled, samples.completed, samples.overdue)[i % 3]
            send(maker(cid, f"o{i // 3}#1", tenant=TENANT, at=at))
    producer.flush(120)
    return sent


def baseline(bootstrap: str, prefix: str, total: int) -> float:
    """Seconds to consume and decode every record (the floor any subscriber pays)."""
    consumer = Consumer(KafkaSettings(bootstrap_servers=bootstrap).consumer(f"{prefix}baseline"))
    consumer.subscribe([prefix + spec.name for spec in INPUTS])
    seen, started = 0, time.monotonic()
    try:
        while seen < total:
            for msg in consumer.consume(500, 0.2):
                if msg.error() is None:
                    decode(msg.value(), msg.headers())
                    seen += 1
                elif msg.error().code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(msg.error())
        return time.monotonic() - started
    finally:
        consumer.close()


def latency(url: str, path: str, n: int) -> tuple[float, float]:
    token = issue_token(AUTH, subject="bench", tenant=TENANT, scopes=["portfolio:read"])
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for _ in range(n):
            started = time.perf_counter()
            assert client.get(path).status_code == 200
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, pct(times, 99) * 1000


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    contracts, events = max(10, int(10_000 * scale)), max(100, int(1_000_000 * scale))
    requests = int(os.environ.get("BENCH_REQUESTS", "200"))
    with bench_stack() as (brokers, db_url):
        assert db_url is not None
        prefix = f"pfbench{uuid.uuid4().hex[:6]}."
        create_topics(brokers, [prefix + s.name for s in INPUTS] + [prefix + s.name + ".dlq" for s in INPUTS],
                      partitions=6)
        started = time.monotonic()
        total = publish(brokers, prefix, contracts, events)
        print(f"published {total} records for {contracts} contracts in {time.monotonic() - started:.1f}s")
        base = baseline(brokers, prefix, total)

        schema = f"pfbench_{uuid.uuid4().hex[:8]}"
        url = sqlalchemy_url(db_url)
        migrate(url, schema)
        settings = PortfolioSettings(db_schema=schema, topic_prefix=prefix, consumer_group=f"{prefix}projection",
                                     consume_in_process=False)
        config = AppConfig(database_url=url, portfolio=settings, kafka=KafkaSettings(bootstrap_servers=brokers),
                           auth=AUTH, clock=ManualClock(samples.T0))
        wiring = bootstrap(config)
        started = time.monotonic()
        written = ProjectingConsumer(wiring.portfolio, settings, config.kafka).run_to_end()
        projection = time.monotonic() - started
        wiring.stop()
        print(f"baseline: consume + decode {total} records in {base:.1f}s = {total / base:,.0f}/s")
        print(f"projection (the rebuild): {written} events into the read model in {projection:.1f}s "
              f"= {written / projection:,.0f}/s")
        print(f"ratio projection/baseline: {base / projection:.2f} (goal >= 0.5)")

        with serve(create_app(config)) as base_url:
            for path in ("/v1/portfolio/pipeline", "/v1/portfolio/summary"):
                p50, p99 = latency(base_url, path, requests)
                print(f"{path} at {contracts} contracts: p50 {p50:.0f} ms, p99 {p99:.0f} ms (goal p99 < 100 ms)")


if __name__ == "__main__":
    main()
