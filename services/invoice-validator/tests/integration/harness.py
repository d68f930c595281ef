"""Runs the real `invoice-validator` console script against the test broker, on topics with a
unique prefix, and reads what it produces."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from contract_schema import ClockAdvanced, Event, InvoiceValidated, decode, encode
from contract_schema.topics import (
    ALERTS,
    CLOCK,
    CONTRACT_STATE,
    INVOICE_RECEIVED,
    INVOICE_VALIDATED,
    OBLIGATION_EVENTS,
    topic_for,
)
from mesh_common.auth import AuthSettings, issue_token
from mesh_common.settings import KafkaSettings
from mesh_testing import create_topics, free_port, stop_processes, unique_name, wait_for

PARTITIONS = 2
SOURCE = "/tests/invoice-validator"


class TopicReader:
    """Everything on a topic from the beginning, by assignment (no group); `drain` reads what is there."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("reader"),
                                  "enable.auto.commit": False})
        meta = wait_for(lambda: self.consumer.list_topics(topic, timeout=5).topics.get(topic), timeout=30)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        self.messages: list[Message] = []

    def drain(self) -> list[Message]:
        while True:
            batch = self.consumer.consume(500, timeout=0.2)
            if not batch:
                return self.messages
            self.messages.extend(m for m in batch if m.error() is None)

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Webhook:
    """A real HTTP server on loopback standing in for the AP system's webhook endpoint."""

    port: int
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ap/verdicts"


@contextmanager
def webhook_server() -> Iterator[Webhook]:
    hook = Webhook(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hook.received.append(({k: v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", hook.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()


@dataclass
class Running:
    bootstrap: str
    prefix: str
    port: int
    process: subprocess.Popen[bytes]
    producer: Producer
    auth: AuthSettings
    log_path: Path
    readers: dict[str, TopicReader] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return self.prefix + name

    def produce(self, event: Event, *, event_id: str | None = None) -> str:
        event_id = event_id or str(uuid.uuid4())
        record = encode(event, source=SOURCE, event_id=event_id)
        self.producer.produce(self.topic(topic_for(type(event)).name), key=record.key, value=record.value,
                              headers=record.headers)
        self.producer.flush(10)
        return event_id

    def produce_raw(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.producer.produce(self.topic(topic), key=key, value=value, headers=headers)
        self.producer.flush(10)

    def tick(self, now: datetime) -> None:
        self.produce(ClockAdvanced(now=now))

    def reader(self, name: str) -> TopicReader:
        if name not in self.readers:
            self.readers[name] = TopicReader(self.bootstrap, self.topic(name))
        return self.readers[name]

    def verdicts(self, invoice_id: str) -> list[InvoiceValidated]:
        out = []
        for m in self.reader(INVOICE_VALIDATED.name).drain():
            event = decode(m.value(), m.headers()).event
            if isinstance(event, InvoiceValidated) and event.invoice_id == invoice_id:
                out.append(event)
        return out

    def verdict_ids(self, invoice_id: str) -> list[str]:
        """The ce_id of every verdict record for the invoice (a copy re-sent after a redelivery carries
        the same id; consumers drop it, so distinct ids are what counts)."""
        out = []
        for m in self.reader(INVOICE_VALIDATED.name).drain():
            envelope = decode(m.value(), m.headers())
            if isinstance(envelope.event, InvoiceValidated) and envelope.event.invoice_id == invoice_id:
                out.append(envelope.id)
        return out

    def verdict(self, invoice_id: str, timeout: float = 30) -> InvoiceValidated:
        found = wait_for(lambda: self.verdicts(invoice_id), timeout=timeout,
                         message=f"verdict for {invoice_id} (worker log {self.log_path})")
        return found[0]

    def token(self, *scopes: str, tenant: str = "t1") -> str:
        return issue_token(self.auth, subject="ap-system", tenant=tenant, scopes=list(scopes))

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "invoice-validator"
    return [str(script)] if script.exists() else [sys.executable, "-m", "invoice_validator.entrypoints.main"]


def start(bootstrap: str, tmp: Path, *, prefix: str | None = None, extra_env: dict[str, str] | None = None,
          create: bool = True) -> Running:
    prefix = prefix or unique_name("iv") + "."
    if create:
        names = [prefix + t.name for t in (INVOICE_RECEIVED, CONTRACT_STATE, OBLIGATION_EVENTS, INVOICE_VALIDATED,
                                           ALERTS)]
        create_topics(bootstrap, names + [n + ".dlq" for n in names[:3]], partitions=PARTITIONS)
        create_topics(bootstrap, [prefix + CLOCK.name], partitions=1)
    port = free_port()
    auth = AuthSettings()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "VALIDATOR_APP_ID": prefix + "invoice-validator",
        "VALIDATOR_TOPIC_PREFIX": prefix,
        "VALIDATOR_TOPIC_PARTITIONS": str(PARTITIONS),
        # Own local store per process (two replicas must not share a RocksDB directory); state comes
        # back from the changelog topics.
        "VALIDATOR_DATA_DIR": str(tmp / f"faust-{uuid.uuid4().hex[:8]}"),
        "VALIDATOR_CLOCK_TOPIC": prefix + CLOCK.name,
        "VALIDATOR_SWEEP_INTERVAL_SECONDS": "0.2",
        "MESH_CLOCK": "topic",
        "MESH_HTTP_HOST": "127.0.0.1",
        "MESH_HTTP_PORT": str(port),
        **(extra_env or {}),
    }
    log_path = tmp / f"worker-{uuid.uuid4().hex[:6]}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(console_script(), env=env, stdout=log_file, stderr=subprocess.STDOUT)
    # The shared producer settings (idempotent, lz4 batches), as every other service of the mesh sends.
    producer = Producer(KafkaSettings(bootstrap_servers=bootstrap).producer())
    running = Running(bootstrap, prefix, port, process, producer, auth, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=90, interval=0.2, message=f"worker ready (log {log_path})")
    return running


def stop(running: Running) -> None:
    stop_processes([running.process], grace=30)
    for reader in running.readers.values():
        reader.close()
    running.readers.clear()


def wait_metric(running: Running, name: str, predicate: Callable[[float], bool], timeout: float = 30) -> float:
    return wait_for(lambda: (lambda v: v if predicate(v) else None)(running.metric(name)), timeout=timeout,
                    message=f"metric {name}")
