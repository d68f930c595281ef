"""invoice-validator benchmark against a real broker, with a passthrough baseline in the same run.

    python services/invoice-validator/bench/run.py            # BENCH_SCALE=1.0: 10,000 contracts x 20
                                                               # rate-card lines, >= 200,000 invoice lines
    BENCH_BOOTSTRAP=host:port ...                              # use a running broker (else one is started)
    python services/invoice-validator/bench/run.py --baseline  # (internal) the baseline consumer process

Both sides run as a separate process on the same broker and drain the same pre-encoded invoices
(blast phase: lines/s), then a paced phase at half the validator's rate measures produce -> verdict
readable latency. Peak memory is the process's VmHWM. The baseline decodes each record with
contract_schema and produces an InvoiceValidated of the same shape with no rules applied.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from invoice_validator import samples as s

from contract_schema import (
    ContractSnapshot,
    InvoiceLine,
    InvoiceReceived,
    InvoiceValidated,
    LineVerdict,
    Record,
    VerdictStatus,
    VolumeTier,
    decode,
    encode,
)
from contract_schema.topics import ALERTS, CONTRACT_STATE, INVOICE_RECEIVED, INVOICE_VALIDATED, OBLIGATION_EVENTS
from mesh_common.settings import KafkaSettings
from mesh_testing import create_topics, free_port, wait_for

PARTITIONS = 6
RATE_LINES = 20
INVOICE_ID = re.compile(rb'"invoice_id":"([^"]+)"')


# --- data -------------------------------------------------------------------------------------


def make_contracts(n: int, rng: random.Random) -> list[ContractSnapshot]:
    out = []
    for i in range(n):
        lines = []
        for j in range(RATE_LINES):
            price = Decimal(rng.randint(20, 400))
            tiers = (VolumeTier(from_quantity=Decimal(0), to_quantity=Decimal(40), unit_price=price),
                     VolumeTier(from_quantity=Decimal(40), unit_price=price * Decimal("0.9"))) if j % 4 == 0 else ()
            lines.append(s.rate_line(f"ITEM-{j:02d}", str(price), line_id=f"L{j:02d}", tiers=tiers,
                                     tolerance_percent=Decimal(1)))
        out.append(s.contract(f"BC-{i:06d}", vendor=f"BV-{i:06d}", versions=(s.terms(rate_card=tuple(lines)),)))
    return out


def make_invoices(contracts: list[ContractSnapshot], total_lines: int, rng: random.Random,
                  tag: str) -> tuple[list[InvoiceReceived], int]:
    invoices, lines_made = [], 0
    while lines_made < total_lines:
        c = rng.choice(contracts)
        card = c.versions[0].rate_card
        n = rng.randint(1, 50)
        lines = []
        for k in range(1, n + 1):
            rate = card[rng.randrange(len(card))]
            qty = Decimal(rng.randint(1, 5))
            price = rate.unit_price * (Decimal("1.2") if rng.random() < 0.05 else 1)  # 5% overbilled
            lines.append(InvoiceLine(line_no=k, item_code=rate.item_code, quantity=qty, unit="HUR", unit_price=price,
                                     amount=qty * price, service_date=date(2026, 3, 1) + timedelta(days=k % 28)))
        inv_id = f"{tag}-{len(invoices):07d}"
        invoices.append(InvoiceReceived(
            invoice_id=inv_id, tenant_id="t1", vendor_id=c.counterparty.erp_vendor_id or "", invoice_number=inv_id,
            contract_ref=c.contract_id, issue_date=date(2026, 3, 31), currency="EUR", payment_terms_days=30,
            lines=tuple(lines), received_at=datetime(2026, 4, 1, tzinfo=UTC)))
        lines_made += n
    return invoices, lines_made


# --- measurement ------------------------------------------------------------------------------


class VerdictClock:
    """Reads an output topic from the start and notes when each invoice's result became readable."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-reader-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False})
        meta = wait_for(lambda: self.consumer.list_topics(topic, timeout=5).topics.get(topic), timeout=30)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self.consumer.consume(1000, timeout=0.1):
                if m.error() is None and (found := INVOICE_ID.search(m.value() or b"")):
                    self.seen.setdefault(found.group(1).decode(), time.time())

    def wait_all(self, ids: list[str], timeout: float) -> None:
        wait_for(lambda: all(i in self.seen for i in ids), timeout=timeout, interval=0.2,
                 message=f"results for {len(ids)} invoices ({sum(i in self.seen for i in ids)} so far)")

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.consumer.close()


def blast(producer: Producer, topic: str, records: list[Record]) -> dict[int, float]:
    sent: dict[int, float] = {}
    for i, r in enumerate(records):
        sent[i] = time.time()
        while True:
            try:
                producer.produce(topic, key=r.key, value=r.value, headers=r.headers)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)
    return sent


def paced(producer: Producer, topic: str, records: list[Record], rate: float) -> list[float]:
    sent = []
    start = time.time()
    for i, r in enumerate(records):
        due = start + i / rate
        while (now := time.time()) < due:
            time.sleep(min(0.002, due - now))  # pacing the producer, not waiting for a condition
        sent.append(time.time())
        producer.produce(topic, key=r.key, value=r.value, headers=r.headers)
        producer.poll(0)
    producer.flush(30)
    return sent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Result:
    name: str
    lines_per_s: float
    p50_ms: float
    p99_ms: float
    peak_mb: float


def measure(name: str, bootstrap: str, in_topic: str, out_topic: str, proc: subprocess.Popen[bytes],
            blast_records: list[Record], blast_ids: list[str], blast_lines: int,
            lat_records: list[Record], lat_ids: list[str], rate: float | None) -> Result:
    reader = VerdictClock(bootstrap, out_topic)
    producer = Producer(KafkaSettings(bootstrap_servers=bootstrap).producer(**{"queue.buffering.max.messages": 200000}))
    t0 = time.time()
    blast(producer, in_topic, blast_records)
    reader.wait_all(blast_ids, timeout=1800)
    t1 = max(reader.seen[i] for i in blast_ids)
    lines_per_s = blast_lines / (t1 - t0)
    invoices_per_s = len(blast_ids) / (t1 - t0)
    pace = rate if rate is not None else invoices_per_s / 2
    sent = paced(producer, in_topic, lat_records, pace)
    reader.wait_all(lat_ids, timeout=600)
    latencies = [(reader.seen[i] - t) * 1000 for i, t in zip(lat_ids, sent, strict=True)]
    reader.close()
    peak = peak_rss_mb(proc.pid)
    print(f"  {name}: {blast_lines} lines in {t1 - t0:.1f}s = {lines_per_s:,.0f} lines/s "
          f"({invoices_per_s:,.0f} invoices/s); paced at {pace:,.0f} invoices/s: "
          f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms; peak RSS {peak:.0f} MB",
          flush=True)
    return Result(name, lines_per_s, percentile(latencies, 50), percentile(latencies, 99), peak)


# --- the baseline process -----------------------------------------------------------------------


def baseline_main(bootstrap: str, in_topic: str, out_topic: str, group: str) -> None:
    """Decode every invoice, produce a same-shaped InvoiceValidated (all approved, no rules)."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    consumer = Consumer(kafka.consumer(group))
    producer = Producer(kafka.producer())
    consumer.subscribe([in_topic])
    now = datetime.now(UTC)
    n = 0
    while True:
        for msg in consumer.consume(500, timeout=0.01):
            if msg.error() is not None:
                continue
            inv = decode(msg.value(), msg.headers()).event
            assert isinstance(inv, InvoiceReceived)
            lines = tuple(LineVerdict(line_no=ln.line_no, status=VerdictStatus.APPROVED, item_code=ln.item_code,
                                      billed_unit_price=ln.unit_price, billed_amount=ln.amount,
                                      expected_unit_price=ln.unit_price, expected_amount=ln.amount,
                                      reason_codes=(), message="Matches the contract.") for ln in inv.lines)
            total = sum((ln.amount for ln in inv.lines), Decimal(0))
            out = InvoiceValidated(invoice_id=inv.invoice_id, tenant_id=inv.tenant_id, vendor_id=inv.vendor_id,
                                   invoice_number=inv.invoice_number, contract_id=inv.contract_ref,
                                   contract_version=1, status=VerdictStatus.APPROVED, currency=inv.currency,
                                   lines=lines, reason_codes=(), messages=("Every line matches the contract.",),
                                   total_billed=total, total_expected=total, validated_at=now)
            record = encode(out, source="/bench/baseline", event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, inv.invoice_id)))
            while True:
                try:
                    producer.produce(out_topic, key=record.key, value=record.value, headers=record.headers)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            n += 1
            if n % 200 == 0:
                consumer.commit(asynchronous=True)


# --- orchestration ------------------------------------------------------------------------------


def start_broker() -> tuple[str, object | None]:
    if bootstrap := os.environ.get("BENCH_BOOTSTRAP"):
        return bootstrap, None
    from mesh_testing.servers import KafkaServer

    server = KafkaServer.start()
    return server.bootstrap, server


def validator_caught_up(bootstrap: str, group: str, topic: str) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    from confluent_kafka import ConsumerGroupTopicPartitions

    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    committed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, parts)])[group].result()
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    try:
        for tp in committed.topic_partitions:
            high = probe.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
            if tp.offset < high:
                return False
        return True
    finally:
        probe.close()


def main() -> None:
    if sys.argv[1:2] == ["--baseline"]:
        baseline_main(*sys.argv[2:6])
        return
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    n_contracts = max(10, int(10_000 * scale))
    n_lines = max(100, int(200_000 * scale))
    rng = random.Random(42)
    bootstrap, server = start_broker()
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    print(f"invoice-validator bench: scale {scale}, {n_contracts} contracts x {RATE_LINES} rate-card lines, "
          f">= {n_lines} invoice lines; broker {bootstrap}, prefix {prefix}", flush=True)
    topics = [prefix + t.name for t in (INVOICE_RECEIVED, CONTRACT_STATE, OBLIGATION_EVENTS, INVOICE_VALIDATED,
                                        ALERTS)]
    create_topics(bootstrap, topics + [prefix + "baseline.in", prefix + "baseline.out"], partitions=PARTITIONS)
    create_topics(bootstrap, [prefix + "mesh.clock.v1"], partitions=1)

    contracts = make_contracts(n_contracts, rng)
    invoices, lines = make_invoices(contracts, n_lines, rng, "B")
    lat_invoices, _ = make_invoices(contracts, max(100, n_lines // 20), rng, "L")
    src = "/bench"
    blast_records = [encode(i, source=src, event_id=str(uuid.uuid4())) for i in invoices]
    lat_records = [encode(i, source=src, event_id=str(uuid.uuid4())) for i in lat_invoices]
    blast_ids = [i.invoice_id for i in invoices]
    lat_ids = [i.invoice_id for i in lat_invoices]
    print(f"  {len(invoices)} invoices with {lines} lines (+{len(lat_invoices)} for the latency phase)", flush=True)

    producer = Producer(KafkaSettings(bootstrap_servers=bootstrap).producer())
    blast(producer, prefix + CONTRACT_STATE.name, [encode(c, source=src) for c in contracts])

    app_id = prefix + "invoice-validator"
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "VALIDATOR_APP_ID": app_id,
           "VALIDATOR_TOPIC_PREFIX": prefix, "VALIDATOR_TOPIC_PARTITIONS": str(PARTITIONS),
           "VALIDATOR_DATA_DIR": tempfile.mkdtemp(prefix="iv-bench-"),
           "VALIDATOR_CLOCK_TOPIC": prefix + "mesh.clock.v1",
           "VALIDATOR_ALERT_THRESHOLD": "1000000000", "MESH_HTTP_PORT": str(port), "MESH_LOG_LEVEL": "WARNING"}
    script = Path(sys.executable).parent / "invoice-validator"
    log = open(Path(tempfile.gettempdir()) / f"{app_id}.log", "wb")  # noqa: SIM115
    command = [str(script)]
    if profile := os.environ.get("BENCH_PROFILE"):  # cProfile output of the worker, for finding hot spots
        command = [sys.executable, "-m", "cProfile", "-o", profile, str(script)]
    worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    results = []
    try:
        t = time.time()
        def ready() -> bool:
            if worker.poll() is not None:
                sys.exit(f"worker died, see {log.name}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=120, interval=0.5)
        wait_for(lambda: validator_caught_up(bootstrap, app_id, prefix + CONTRACT_STATE.name), timeout=900,
                 interval=1.0, message="contracts loaded")
        print(f"  validator loaded {n_contracts} contracts in {time.time() - t:.1f}s", flush=True)
        results.append(measure("validator", bootstrap, prefix + INVOICE_RECEIVED.name,
                               prefix + INVOICE_VALIDATED.name, worker, blast_records, blast_ids, lines,
                               lat_records, lat_ids, None))
    finally:
        worker.terminate()
        worker.wait(60)
    # Same pace in the latency phase, so both latencies are measured under the same load.
    pace = (results[0].lines_per_s / (lines / len(invoices))) / 2
    base = subprocess.Popen([sys.executable, __file__, "--baseline", bootstrap, prefix + "baseline.in",
                             prefix + "baseline.out", prefix + "baseline"])
    try:
        warm = [encode(i, source=src) for i in lat_invoices[:1]]
        reader = VerdictClock(bootstrap, prefix + "baseline.out")
        blast(producer, prefix + "baseline.in", warm)
        reader.wait_all([lat_invoices[0].invoice_id], timeout=120)  # the consumer is assigned and running
        reader.close()
        results.append(measure("baseline", bootstrap, prefix + "baseline.in", prefix + "baseline.out", base,
                               blast_records, blast_ids, lines, lat_records[1:], lat_ids[1:], pace))
    finally:
        base.terminate()
        base.wait(30)
    v, b = results
    print(f"RESULT validator {v.lines_per_s:,.0f} lines/s, p50 {v.p50_ms:.1f} ms, p99 {v.p99_ms:.1f} ms, "
          f"peak {v.peak_mb:.0f} MB")
    print(f"RESULT baseline  {b.lines_per_s:,.0f} lines/s, p50 {b.p50_ms:.1f} ms, p99 {b.p99_ms:.1f} ms, "
          f"peak {b.peak_mb:.0f} MB")
    print(f"RESULT ratio validator/baseline = {v.lines_per_s / b.lines_per_s:.2f} (goal >= 0.5)")
    producer.flush(10)
    del producer
    if server is not None:
        server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
