"""Harness: the real worker as a subprocess (its console script) against the real broker, with
topics under a unique prefix, its own clock id moved by ClockAdvanced events, and a real HTTP
server on loopback standing in for ERP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from contract_schema import ClockAdvanced, DecodeError, Event, ObligationScheduled, decode, encode
from contract_schema.topics import (
    ALERTS,
    CLOCK,
    CONTRACT_EVENTS,
    CONTRACT_STATE,
    ERP_MILESTONE_COMMANDS,
    ERP_PERFORMANCE,
    OBLIGATION_EVENTS,
    SCORECARD,
    topic_for,
)
from mesh_testing import create_topics, free_port, unique_name, wait_for

PARTITIONS = 3
ERP_TOKEN = "erp-secret-token"
T0 = datetime(2030, 1, 1, 8, tzinfo=UTC)
ERP_GIVE_UP_SECONDS = 4.0


@dataclass
class Seen:
    topic: str
    key: str
    ce_id: str
    event: Event | None
    headers: dict[str, str]


class ErpServer:
    """ERP's milestone endpoint: records every authorised call; 401 without the right bearer token."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.unauthorised = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") != f"Bearer {ERP_TOKEN}":
                    outer.unauthorised += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                outer.calls.append({"path": self.path, "body": json.loads(body),
                                    "idempotency_key": self.headers.get("Idempotency-Key")})
                if "/c-down-" in self.path:  # an ERP that is down for this contract
                    self.send_response(503)
                    self.end_headers()
                    return
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"released"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()


@dataclass
class Stack:
    bootstrap: str
    prefix: str
    clock_id: str
    app_id: str
    erp: ErpServer
    log_dir: Path
    now: datetime = T0
    seen: list[Seen] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    second: subprocess.Popen[bytes] | None = None  # a second replica, for rebalance tests
    _producer: Producer | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _runs: int = 0
    http_port: int = 0

    def topic(self, name: str) -> str:
        return self.prefix + name

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer({"bootstrap.servers": self.bootstrap})
        return self._producer

    def send(self, event: Event, event_id: str | None = None, topic: str | None = None) -> str:
        record = encode(event, source="/tests", event_id=event_id, time=self.now)
        ce_id = dict(record.headers)["ce_id"].decode()
        self.producer.produce(topic or self.topic(topic_for(type(event)).name), key=record.key, value=record.value,
                              headers=record.headers)
        self.producer.flush(10)
        return ce_id

    def send_raw(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.producer.produce(self.topic(topic), key=key, value=value, headers=headers)
        self.producer.flush(10)

    def advance(self, to: datetime) -> None:
        assert to >= self.now, "the clock never goes back"
        self.now = to
        self.send(ClockAdvanced(clock_id=self.clock_id, now=to))

    def advance_by(self, delta: timedelta) -> None:
        self.advance(self.now + delta)

    # --- the worker subprocess

    def start(self, **env: str) -> None:
        self.http_port = free_port()
        self.proc = self._spawn(self.http_port, env)

    def start_second(self) -> Path:
        """Another replica in the same consumer group; returns its log file."""
        self.second = self._spawn(free_port())
        return self.log_dir / f"worker{self._runs}.log"

    def stop_second(self) -> None:
        if self.second is not None:
            self.second.send_signal(signal.SIGTERM)
            self.second.wait(30)
            self.second = None

    def _spawn(self, http_port: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self._runs += 1
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "MESH_CLOCK": "topic",
               "OBLIGATION_TOPIC_PREFIX": self.prefix, "OBLIGATION_APP_ID": self.app_id,
               "OBLIGATION_CLOCK_ID": self.clock_id, "OBLIGATION_TOPIC_PARTITIONS": str(PARTITIONS),
               "OBLIGATION_ERP_BASE_URL": self.erp.url, "OBLIGATION_ERP_TOKEN": ERP_TOKEN,
               "OBLIGATION_ERP_ATTEMPTS": "3", "OBLIGATION_ERP_BASE_DELAY": "0.05",
               # ERP give-up compressed to 4 s (default 24 h) for the give-up test; test_erp_outage.py
               # sets its own.
               "OBLIGATION_ERP_ROUND_DELAY": "0.3", "OBLIGATION_ERP_MAX_ROUND_DELAY": "1",
               "OBLIGATION_ERP_BREAKER_RESET": "1",
               "OBLIGATION_ERP_GIVE_UP_AFTER_HOURS": str(ERP_GIVE_UP_SECONDS / 3600),
               "OBLIGATION_PARK_SECONDS": "3600", "OBLIGATION_DATA_DIR": str(self.log_dir / f"data{self._runs}"),
               "OBLIGATION_SESSION_TIMEOUT": "6", "MESH_LOG_LEVEL": os.environ.get("OE_TEST_LOG_LEVEL", "INFO"),
               "MESH_HTTP_HOST": "127.0.0.1", "MESH_HTTP_PORT": str(http_port), **(extra_env or {})}
        script = shutil.which("obligation-engine", path=str(Path(sys.executable).parent)) or "obligation-engine"
        log = open(self.log_dir / f"worker{self._runs}.log", "wb")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen([script], env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def wait_ready(self, timeout: float = 120) -> None:
        """Start-up takes a while on a busy box: wait until a probe contract gets scheduled."""
        from obligation_engine.samples import contract

        probe = unique_name("c-ready")
        self.send(contract(probe, self.now.date(), now=self.now))
        self.wait(lambda: self.records(probe, ObligationScheduled), "worker ready", timeout=timeout)

    # --- what came out

    def follow(self) -> None:
        topics = [self.topic(t.name) for t in (OBLIGATION_EVENTS, ALERTS, SCORECARD, ERP_MILESTONE_COMMANDS)]
        topics += [self.topic(ERP_PERFORMANCE.name) + ".dlq", self.topic(CONTRACT_STATE.name) + ".dlq"]
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique_name("oe-reader"),
                             "enable.auto.commit": False})
        parts = []
        for t in topics:
            md = wait_for(lambda t=t: consumer.list_topics(t, timeout=5).topics.get(t), timeout=30)  # type: ignore[misc]
            parts += [TopicPartition(t, p, OFFSET_BEGINNING) for p in md.partitions]
        consumer.assign(parts)

        def run() -> None:
            while not self._stop.is_set():
                msg = consumer.poll(0.1)
                if msg is None or msg.error() is not None:
                    continue
                headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}
                try:
                    event: Event | None = decode(msg.value(), msg.headers()).event
                except DecodeError:
                    event = None
                self.seen.append(Seen(msg.topic() or "", (msg.key() or b"").decode(), headers.get("ce_id", ""),
                                      event, headers))
            consumer.close()

        threading.Thread(target=run, daemon=True).start()

    def changelog_has(self, key: str, table: str = "contracts") -> bool:
        """Whether the worker's table changelog holds a record for `key` (its state is persisted)."""
        topic = f"{self.app_id}-{table}-changelog"
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique_name("oe-changelog"),
                             "enable.auto.commit": False})
        try:
            md = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if md is None or not md.partitions:
                return False
            ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p, end in ends.items() if end > 0])
            remaining = {p for p, end in ends.items() if end > 0}
            while remaining:
                msg = consumer.poll(5)
                if msg is None:
                    return False
                if msg.error() is not None:
                    continue
                if key.encode() in (msg.key() or b""):
                    return True
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                    remaining.discard(msg.partition() or 0)
            return False
        finally:
            consumer.close()

    def records(self, contract_id: str, cls: type | None = None, topic: str | None = None) -> list[Seen]:
        out = []
        for s in list(self.seen):
            cid = getattr(s.event, "contract_id", None) if s.event is not None else None
            if s.topic.endswith(".dlq"):
                cid = s.key
            if cid != contract_id and not (s.key == contract_id):
                continue
            if cls is not None and not isinstance(s.event, cls):
                continue
            if topic is not None and s.topic != self.topic(topic):
                continue
            out.append(s)
        return out

    def events(self, contract_id: str, cls: type) -> list[Any]:
        return [s.event for s in self.records(contract_id, cls)]

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 30) -> Any:
        try:
            return wait_for(predicate, timeout=timeout, interval=0.05, message=what)
        except TimeoutError:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}: see {self.log_dir}") from None
            raise


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prefix = unique_name("oe") + "."
    names = [prefix + t.name for t in (CONTRACT_STATE, CONTRACT_EVENTS, ERP_PERFORMANCE, OBLIGATION_EVENTS,
                                       ERP_MILESTONE_COMMANDS, ALERTS, SCORECARD)]
    create_topics(kafka_bootstrap, names + [n + ".dlq" for n in names[:3]], partitions=PARTITIONS)
    create_topics(kafka_bootstrap, [prefix + CLOCK.name], partitions=1)
    erp = ErpServer()
    s = Stack(kafka_bootstrap, prefix, unique_name("clock"), unique_name("obligation-engine"), erp,
              tmp_path_factory.mktemp("obligation-engine"))
    s.advance(T0)  # the worker starts at the test's time
    s.follow()
    s.start()
    s.wait_ready()
    try:
        yield s
    finally:
        s.stop_second()
        s.stop()
        s._stop.set()
        erp.stop()
