"""Benchmark: contracts created per second through HTTP with the transactional outbox, single creates
and bulk import.

Single creates: throughput, p50/p99 request latency and p99 commit -> readable on Kafka, and a
baseline measured in the same run: the same HTTP creates and inserts (contract, version, audit)
without outbox rows, NOTIFY or publishing. The ratio shows what the outbox costs.
Bulk import (POST /v1/contracts:import, NDJSON in parts as `contract-registry import` sends it):
contracts/s from the first part sent to the last record committed, with the outbox (and the
in-process relay publishing meanwhile), against the same import without the outbox; plus when the
last snapshot was readable on Kafka; and the import with the outbox but no relay until it is committed
(what writing the outbox rows costs, apart from publishing them on the same machine).

Env: BENCH_BOOTSTRAP (Kafka; else one is started), BENCH_DATABASE_URL (PostgreSQL; else one is
started), BENCH_SCALE (1.0 = 1000 creates and 10,000 imported contracts per variant), BENCH_CONCURRENCY (8),
BENCH_IMPORT_ROUNDS (3 interleaved rounds of both import variants).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import httpx
import uvicorn
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from contract_registry.adapters.db import migrate, sqlalchemy_url
from contract_registry.adapters.ports import OutboxRecord
from contract_registry.bootstrap import AppConfig
from contract_registry.domain.contracts import Change
from contract_registry.domain.importing import NDJSON
from contract_registry.entrypoints.app import create_app
from contract_registry.entrypoints.import_client import parts
from contract_registry.examples import draft
from contract_registry.service import Registry
from contract_registry.settings import RegistrySettings
from sqlalchemy import create_engine, text

from contract_schema.codec import header_map
from contract_schema.topics import CATALOG
from mesh_common.auth import AuthSettings, issue_token
from mesh_common.settings import KafkaSettings
from mesh_testing import create_topics, free_port, wait_for
from mesh_testing.servers import KafkaServer, PostgresServer

AUTH = AuthSettings(hs256_secret="registry-benchmark-secret-0123456789abcdef")


IMPORT_GOAL, IMPORT_RATIO_GOAL, CREATE_GOAL = 2000.0, 0.8, 500.0  # issue 17


class NoOutboxRegistry(Registry):
    """Baseline: the same transaction minus the outbox rows and NOTIFY (audit still written); for single
    creates and imports alike, since both take their outbox records from here."""

    def outbox_records(self, change: Change, now: datetime, traceparent: str | None) -> list[OutboxRecord]:
        return []


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Server:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=30, message="uvicorn started")
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def drive(base_url: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    """POST n creates with `concurrency` client threads; returns elapsed seconds and request latencies."""
    headers = {"Authorization": "Bearer " + issue_token(AUTH, subject="bench", tenant="bench",
                                                         scopes=["contracts:write"])}
    body = draft()
    latencies: list[float] = []
    lock = threading.Lock()
    local = threading.local()

    def one(_: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=base_url, headers=headers, timeout=30)
        start = time.perf_counter()
        resp = client.post("/v1/contracts", json=body)
        took = time.perf_counter() - start
        if resp.status_code != 201:
            raise RuntimeError(f"create failed: {resp.status_code} {resp.text}")
        with lock:
            latencies.append(took)

    # Warm-up (connection pools, code paths), not measured.
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(min(50, n))))
    latencies.clear()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - started, latencies


def run_variant(name: str, db_url: str, bootstrap: str, n: int, concurrency: int, with_outbox: bool) -> dict[str, Any]:
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    migrate(db_url, schema)
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = RegistrySettings(db_schema=schema, topic_prefix=prefix, relay_in_process=with_outbox,
                                consume_in_process=False)
    state_topic = settings.state_topic
    if with_outbox:
        create_topics(bootstrap, [prefix + s.name for s in CATALOG], partitions=6)
    config = AppConfig(database_url=db_url, registry=settings, kafka=KafkaSettings(bootstrap_servers=bootstrap),
                       auth=AUTH)
    app = create_app(config, registry_cls=Registry if with_outbox else NoOutboxRegistry)
    lags: list[float] = []
    stop = threading.Event()
    reader: threading.Thread | None = None
    if with_outbox:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 5})
        parts = wait_for(lambda: consumer.list_topics(state_topic, timeout=5).topics[state_topic].partitions)
        consumer.assign([TopicPartition(state_topic, p, OFFSET_BEGINNING) for p in parts])

        def read() -> None:
            # commit -> readable: ce_time is the registry clock when the create began (just before its
            # transaction), so the figure includes the commit itself; an upper bound.
            while not stop.is_set():
                msg = consumer.poll(0.1)
                if msg is None:
                    continue
                if msg.error():
                    print("reader:", msg.error())
                    continue
                ce_time = header_map(msg.headers())["ce_time"]
                lags.append(time.time() - datetime.fromisoformat(ce_time).timestamp())
            consumer.close()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
    with Server(app) as base_url:
        elapsed, latencies = drive(base_url, n, concurrency)
        if with_outbox:
            wait_for(lambda: len(lags) >= n + min(50, n), timeout=60, interval=0.05,
                         message="all creates readable on Kafka")
    stop.set()
    if reader:
        reader.join(10)
    engine = create_engine(sqlalchemy_url(db_url))
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()
    measured_lags = lags[min(50, n):]
    return {"name": name, "rate": n / elapsed, "p50": pct(latencies, 50) * 1000, "p99": pct(latencies, 99) * 1000,
            "lag_p50": pct(measured_lags, 50) * 1000 if measured_lags else None,
            "lag_p99": pct(measured_lags, 99) * 1000 if measured_lags else None,
            "mean": statistics.mean(latencies) * 1000}


def run_import(name: str, db_url: str, bootstrap: str, n: int, with_outbox: bool,
               relay_after: bool = False) -> dict[str, Any]:
    """Import n distinct contracts over HTTP; contracts/s until the last is committed (and, with the outbox,
    until the last snapshot is readable on Kafka). `relay_after`: no relay while the import runs (the API
    with REGISTRY_RELAY_IN_PROCESS=false); `contract-registry relay` starts when it is committed. That
    splits the outbox's cost on this box into writing the rows and publishing them meanwhile."""
    schema = f"bench_imp_{name}_{uuid.uuid4().hex[:8]}"
    migrate(db_url, schema)
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = RegistrySettings(db_schema=schema, topic_prefix=prefix,
                                relay_in_process=with_outbox and not relay_after,
                                consume_in_process=False, expiry_in_process=False)
    relay: subprocess.Popen[bytes] | None = None
    if with_outbox:
        create_topics(bootstrap, [prefix + s.name for s in CATALOG], partitions=6)
    config = AppConfig(database_url=db_url, registry=settings, kafka=KafkaSettings(bootstrap_servers=bootstrap),
                       auth=AUTH)
    app = create_app(config, registry_cls=Registry if with_outbox else NoOutboxRegistry)
    text_body = "\n".join(json.dumps(draft(external_id=f"LEGACY-{i}", title=f"Legacy contract {i}"))
                           for i in range(n)) + "\n"
    pieces = list(parts(text_body, NDJSON))
    headers = {"Authorization": "Bearer " + issue_token(AUTH, subject="bench", tenant="bench",
                                                         scopes=["contracts:write", "contracts:read"]),
               "Content-Type": NDJSON}
    on_kafka = 0.0
    with Server(app) as base_url, httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
        started = time.perf_counter()
        import_id = None
        for piece in pieces:
            params: dict[str, Any] = {"first_line": piece.first_line} | ({"import_id": import_id} if import_id else {})
            resp = http.post("/v1/contracts:import", content=piece.body, params=params)
            if resp.status_code != 202:
                raise RuntimeError(f"import refused: {resp.status_code} {resp.text[:300]}")
            import_id = resp.json()["import_id"]
        state = wait_for(lambda: (got := http.get(f"/v1/imports/{import_id}").json())["pending"] == 0 and got,
                         timeout=600, interval=0.1, message="import written")
        elapsed = time.perf_counter() - started
        if state["created"] != n:
            raise RuntimeError(f"imported {state['created']} of {n}: {state['rejections'][:3]}")
        if with_outbox and relay_after:
            relay = subprocess.Popen([sys.executable, "-m", "contract_registry.entrypoints.cli", "relay"],
                                     env={**os.environ, "DATABASE_URL": db_url, "REGISTRY_DB_SCHEMA": schema,
                                          "REGISTRY_TOPIC_PREFIX": prefix, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                                          "MESH_LOG_LEVEL": "WARNING"})
        if with_outbox:
            wait_for(lambda: topic_total(bootstrap, settings.state_topic) >= n, timeout=600, interval=0.1,
                     message="every imported snapshot on Kafka")
            on_kafka = time.perf_counter() - started
    if relay is not None:
        relay.send_signal(signal.SIGTERM)
        relay.wait(30)
    engine = create_engine(sqlalchemy_url(db_url))
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()
    return {"name": name, "rate": n / elapsed, "kafka_rate": n / on_kafka if on_kafka else None}


def topic_total(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"})
    try:
        parts_ = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts_)
    finally:
        consumer.close()


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    n = max(50, int(1000 * scale))
    n_import = max(500, int(10_000 * scale))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "8"))
    with ExitStack() as stack:
        bootstrap = os.environ.get("BENCH_BOOTSTRAP")
        if not bootstrap:
            kafka = KafkaServer.start()
            stack.callback(kafka.stop)
            bootstrap = kafka.bootstrap
        db_url = os.environ.get("BENCH_DATABASE_URL")
        if not db_url:
            pg = PostgresServer.start("bench")
            stack.callback(pg.stop)
            db_url = pg.url
        db_url = sqlalchemy_url(db_url)
        print(f"contract-registry benchmark: {n} creates per variant, {concurrency} concurrent HTTP clients; "
              f"{n_import} contracts imported per variant")
        base = run_variant("baseline", db_url, bootstrap, n, concurrency, with_outbox=False)
        out = run_variant("outbox", db_url, bootstrap, n, concurrency, with_outbox=True)
        # Interleaved rounds: on a shared 2-core box one pair can be off by 2x either way; the median of the
        # per-round ratios and the best rate of each variant are what a round of noise cannot fake.
        rounds = [(run_import("baseline", db_url, bootstrap, n_import, with_outbox=False),
                   run_import("outbox", db_url, bootstrap, n_import, with_outbox=True),
                   run_import("outbox_relay_after", db_url, bootstrap, n_import, with_outbox=True, relay_after=True))
                  for _ in range(int(os.environ.get("BENCH_IMPORT_ROUNDS", "3")))]
    for r in (base, out):
        lag = (f", commit->readable on Kafka p50 {r['lag_p50']:.1f} ms p99 {r['lag_p99']:.1f} ms"
               if r["lag_p99"] is not None else "")
        print(f"{r['name']:>9}: {r['rate']:8.1f} creates/s, latency p50 {r['p50']:.1f} ms p99 {r['p99']:.1f} ms{lag}")
    print(f"ratio outbox/baseline: throughput {out['rate'] / base['rate']:.2f}x, "
          f"p50 latency {out['p50'] / base['p50']:.2f}x, p99 latency {out['p99'] / base['p99']:.2f}x")
    for i, (b, o, p) in enumerate(rounds, 1):
        print(f"   import round {i}: {o['rate']:8.1f} contracts/s with the outbox (all on Kafka: "
              f"{o['kafka_rate']:.1f}/s), {b['rate']:.1f}/s without it, ratio {o['rate'] / b['rate']:.2f}; "
              f"no relay during the import {p['rate']:.1f}/s (then all on Kafka at {p['kafka_rate']:.1f}/s "
              f"overall), ratio {p['rate'] / b['rate']:.2f}")
    imp = max((o for _, o, _ in rounds), key=lambda r: r["rate"])
    imp_base = max((b for b, _, _ in rounds), key=lambda r: r["rate"])
    ratio = statistics.median(o["rate"] / b["rate"] for b, o, _ in rounds)
    proc_ratio = statistics.median(p["rate"] / b["rate"] for b, _, p in rounds)
    print(f"   import: {imp['rate']:8.1f} contracts/s with the outbox (best round; all on Kafka: "
          f"{imp['kafka_rate']:.1f}/s), baseline without it {imp_base['rate']:.1f}/s (best), "
          f"ratio {ratio:.2f} (median of rounds); no relay during the import: "
          f"{max(p['rate'] for _, _, p in rounds):.1f}/s (best), ratio {proc_ratio:.2f} (median)")
    print(f"goals: import >= {IMPORT_GOAL:.0f}/s {met(imp['rate'] >= IMPORT_GOAL)}, ratio >= {IMPORT_RATIO_GOAL} "
          f"{met(ratio >= IMPORT_RATIO_GOAL)}; single creates >= {CREATE_GOAL:.0f}/s {met(out['rate'] >= CREATE_GOAL)}")


if __name__ == "__main__":
    main()
