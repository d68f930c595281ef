"""Real parts for the notifier's integration tests.

A real broker and PostgreSQL (mesh_testing fixtures), a real SMTP server on loopback
(aiosmtpd), a real HTTP server on loopback standing in for Slack, Teams and a generic
webhook receiver, and the `notifier` console script run as a subprocess following the
shared clock topic, so tests move time by producing ClockAdvanced.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from contract_schema.alert import Alert, ClockAdvanced, NotificationRecorded
from contract_schema.codec import decode, encode
from contract_schema.renewal import RenewalDecision
from mesh_testing import create_topics, free_port, stop_processes, unique_name, wait_for

# A Monday, 10:00 UTC; ClockAdvanced moves the notifier from here.
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


# --- SMTP -----------------------------------------------------------------------------------


@dataclass
class SmtpSink:
    """Messages the loopback SMTP server accepted. `hold_next` parks the next DATA until released."""

    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    hold_next: bool = False
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    reject_held: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        if self.hold_next:
            self.hold_next = False
            self.held.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)
            if self.reject_held:  # the client died before the end of DATA was confirmed: not accepted
                return "451 4.3.0 client went away, message not accepted"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for rcpts, m in self.messages if address in rcpts]

    def about(self, needle: str) -> list[tuple[list[str], EmailMessage]]:
        with self.lock:
            return [(r, m) for r, m in self.messages if needle in str(m["Subject"]) or needle in body_text(m)]


def body_text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        sink.release.set()
        controller.stop()


# --- HTTP receivers (Slack, Teams, generic webhook) -----------------------------------------


@dataclass
class HttpSink:
    port: int
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)  # path -> status to answer (default 200)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        with self.lock:
            return [(h, json.loads(b)) for p, h, b in self.posts if p == path]


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    sink = HttpSink(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = sink.status.get(self.path, 200)
            if status < 300:
                with sink.lock:
                    sink.posts.append((self.path, dict(self.headers), body))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"invalid_payload")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", sink.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


# --- Kafka helpers --------------------------------------------------------------------------


class TopicReader:
    """Reads a topic from the beginning by assignment and keeps everything it saw."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.messages: list[Message] = []
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("reader"),
                                  "enable.auto.commit": False})
        meta = wait_for(lambda: self.consumer.list_topics(topic, timeout=5).topics.get(topic), timeout=20)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])

    def drain(self) -> list[Message]:
        while True:
            msg = self.consumer.poll(0.1)
            if msg is None:
                return self.messages
            if msg.error() is None:
                self.messages.append(msg)

    def wait(self, predicate: Callable[[list[Message]], Any], timeout: float = 30.0, what: str = "") -> Any:
        return wait_for(lambda: predicate(self.drain()), timeout=timeout, interval=0.1, message=what or self.topic)

    def close(self) -> None:
        self.consumer.close()


def notifications(messages: list[Message]) -> list[NotificationRecorded]:
    out = []
    for m in messages:
        event = decode(m.value(), m.headers()).event
        assert isinstance(event, NotificationRecorded)
        out.append(event)
    return out


# --- the notifier under test ----------------------------------------------------------------


@dataclass
class Mesh:
    """One isolated notifier deployment: its own topics, consumer group, DB schema and clock."""

    bootstrap: str
    database_url: str
    smtp: SmtpSink
    smtp_port: int
    http: HttpSink
    tmp: Path
    prefix: str = field(default_factory=lambda: unique_name("nt").replace("-", "_"))
    process: subprocess.Popen[bytes] | None = None
    http_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    group_id: str = ""
    log_index: int = 0
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[int, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.alerts_topic = f"{self.prefix}.alert"
        self.notifications_topic = f"{self.prefix}.notification"
        self.clock_topic = f"{self.prefix}.clock"
        self.decisions_topic = f"{self.prefix}.decision"
        self.group_id = f"{self.prefix}-group"
        # Alerts are keyed by contract over several partitions, as in production; the rest need one.
        create_topics(self.bootstrap, [self.alerts_topic], partitions=4)
        create_topics(self.bootstrap, [self.alerts_topic + ".dlq", self.notifications_topic, self.clock_topic,
                                       self.decisions_topic, self.decisions_topic + ".dlq"], partitions=1)
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        self.now = T0
        self.set_clock(T0)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "KAFKA_", "MESH_"))}
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "DATABASE_URL": self.database_url,
            "MESH_CLOCK": "topic",
            "MESH_HTTP_PORT": str(self.http_port),
            "MESH_PUBLIC_BASE_URL": self.base_url,
            "MESH_LOG_LEVEL": "INFO",
            "NOTIFIER_DB_SCHEMA": self.prefix,
            "NOTIFIER_GROUP_ID": self.group_id,
            "NOTIFIER_INSTANCE_ID": f"{self.group_id}-0",
            "NOTIFIER_SESSION_TIMEOUT_MS": "6000",
            "NOTIFIER_STATS_INTERVAL_MS": "500",
            "NOTIFIER_ALERTS_TOPIC": self.alerts_topic,
            "NOTIFIER_NOTIFICATIONS_TOPIC": self.notifications_topic,
            "NOTIFIER_CLOCK_TOPIC": self.clock_topic,
            "NOTIFIER_DECISIONS_TOPIC": self.decisions_topic,
            "NOTIFIER_SMTP_HOST": "127.0.0.1",
            "NOTIFIER_SMTP_PORT": str(self.smtp_port),
            "NOTIFIER_SMTP_TIMEOUT": "30",
            "NOTIFIER_RETRY_ATTEMPTS": "2",
            "NOTIFIER_RETRY_BASE_DELAY": "0.05",
            "NOTIFIER_SLACK_WEBHOOK_URL": self.http.url("/slack"),
            "NOTIFIER_TEAMS_WEBHOOK_URL": self.http.url("/teams"),
            "NOTIFIER_WEBHOOK_URL": self.http.url("/webhook"),
            "NOTIFIER_WEBHOOK_SECRET": "webhook-secret",
            "NOTIFIER_ACK_SECRET": "ack-secret",
            "NOTIFIER_CALENDAR_SECRET": "calendar-secret",
        })
        env.update(self.extra_env)
        return env

    def start(self, replica: int = 0) -> None:
        """Start replica `replica` (0 serves base_url); replicas share the group, schema and topics."""
        self.log_index += 1
        log_path = self.tmp / f"notifier-{replica}-{self.log_index}.log"
        self.logs[replica] = log_path
        port = self.http_port if replica == 0 else free_port()
        env = self.env() | {"MESH_HTTP_PORT": str(port), "NOTIFIER_INSTANCE_ID": f"{self.group_id}-{replica}"}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(notifier_argv(), env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes[replica] = process
        if replica == 0:
            self.process = process
        wait_for(lambda: self._ready(replica, port), timeout=60, interval=0.1,
                 message=f"notifier replica {replica} ready (log {log_path})")

    def _ready(self, replica: int, port: int) -> bool:
        process = self.processes[replica]
        if process.poll() is not None:
            raise RuntimeError(f"notifier exited with {process.returncode}: {self.log(replica)}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self, replica: int = 0) -> str:
        return self.logs[replica].read_text(errors="replace")[-4000:]

    def kill(self, replica: int = 0) -> None:
        """SIGKILL: no shutdown hooks, no offset commit, no flush - a crash."""
        process = self.processes.pop(replica)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        stop_processes(self.processes.values())
        self.processes.clear()

    def send(self, alert: Alert) -> None:
        record = encode(alert, source="test", event_id=alert.alert_id)
        self.produce_raw(record.key, record.value, record.headers)

    def decide(self, decision: RenewalDecision) -> None:
        record = encode(decision, source="crm", event_id=unique_name("decision"))
        self.producer.produce(self.decisions_topic, key=record.key, value=record.value,
                              headers=record.headers)  # type: ignore[arg-type]
        self.producer.flush(10)

    def produce_raw(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.producer.produce(self.alerts_topic, key=key, value=value, headers=headers)  # type: ignore[arg-type]
        self.producer.flush(10)

    def set_clock(self, when: datetime) -> None:
        self.now = when
        record = encode(ClockAdvanced(now=when), source="test")
        self.producer.produce(self.clock_topic, key=record.key, value=record.value,
                              headers=record.headers)  # type: ignore[arg-type]
        self.producer.flush(10)

    def advance(self, delta: timedelta) -> None:
        self.set_clock(self.now + delta)

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.database_url.replace("postgresql+psycopg://", "postgresql://"),
                             options=f"-c search_path={self.prefix}") as conn:
            return conn.execute(query.encode(), params).fetchall()

    def reader(self, topic: str | None = None) -> TopicReader:
        return TopicReader(self.bootstrap, topic or self.notifications_topic)


def notifier_argv() -> list[str]:
    """The `notifier` console script beside this interpreter (else the module, run by this interpreter)."""
    script = Path(sys.executable).parent / "notifier"
    return [str(script)] if script.exists() else [sys.executable, "-m", "notifier.entrypoints.main"]


@pytest.fixture
def mesh(kafka_bootstrap: str, postgres_url: str, smtp: tuple[SmtpSink, int], http_sink: HttpSink,
         tmp_path: Path) -> Iterator[Mesh]:
    sink, port = smtp
    m = Mesh(kafka_bootstrap, postgres_url, sink, port, http_sink, tmp_path)
    try:
        yield m
    finally:
        m.stop()
