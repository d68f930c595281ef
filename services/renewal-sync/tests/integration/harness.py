"""Test harness: fake Salesforce / HubSpot servers on loopback, the service as a subprocess,
and small Kafka helpers. Real broker, real PostgreSQL, real HTTP; nothing patched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

import contract_schema as cs
from contract_schema.codec import decode
from contract_schema.contract import ContractSnapshot
from contract_schema.topics import (
    ALERTS,
    CLOCK,
    CONTRACT_EVENTS,
    CONTRACT_STATE,
    RENEWAL_DECISION,
    RENEWAL_OPPORTUNITY,
    SCORECARD,
)
from mesh_testing import create_topics, free_port, unique_name, wait_for

SF_CLIENT_ID, SF_CLIENT_SECRET, SF_TOKEN = "sf-client", "sf-secret", "sf-access-token-1"
HUBSPOT_TOKEN = "pat-na1-test-token"
WEBHOOK_SECRET = "whsec-test"


# --- fake CRMs -------------------------------------------------------------------------------

@dataclass
class Upsert:
    contract_id: str
    stage: str  # our renewal stage (Renewal_Stage__c / renewal_stage)
    crm_stage: str  # StageName / dealstage
    close_date: str
    body: dict[str, Any]


@dataclass
class FakeCrm:
    """Salesforce or HubSpot on loopback. Checks the auth header and the payload shape, answers
    429 (with Retry-After) and 500 some of the time, or 503 for every call while `down`."""

    kind: str  # "salesforce" | "hubspot"
    flaky: bool = True
    down: bool = False
    upserts: list[Upsert] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # shape/auth problems: must stay empty
    failures_served: int = 0
    requests: int = 0
    rate_limited: int = 0  # answer this many upsert calls 429 with Retry-After: `retry_after`
    retry_after: str = "2"
    # contract id -> per-record error codes to answer, one per call, inside an otherwise successful collection call
    record_errors: dict[str, list[str]] = field(default_factory=dict)
    batches: list[int] = field(default_factory=list)  # records per upsert call answered 2xx
    answers: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, status) of each upsert call
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeCrm:
        crm = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def log_message(self, *_: Any) -> None:
                pass

            def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                if self.command == "PATCH" or self.path.endswith("/batch/upsert"):
                    crm.answers.append((time.monotonic(), status))
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                if crm.kind == "salesforce" and self.path == "/services/oauth2/token":
                    form = urllib.parse.parse_qs(body.decode())
                    if (form.get("grant_type") != ["client_credentials"] or form.get("client_id") != [SF_CLIENT_ID]
                            or form.get("client_secret") != [SF_CLIENT_SECRET]):
                        crm.rejected.append(f"bad token request {form}")
                        return self._reply(400, {"error": "invalid_client"})
                    return self._reply(200, {"access_token": SF_TOKEN, "instance_url": crm.base_url,
                                             "token_type": "Bearer"})
                if crm.kind == "hubspot" and self.path == "/crm/v3/objects/deals/batch/upsert":
                    return self._upsert(body)
                crm.rejected.append(f"POST {self.path}")
                self._reply(404, {"message": "not found"})

            def do_PATCH(self) -> None:  # noqa: N802
                body = self._body()
                if crm.kind == "salesforce" and self.path == "/services/data/v60.0/composite/sobjects/Opportunity/" \
                        "Contract_Id__c":
                    return self._upsert(body)
                crm.rejected.append(f"PATCH {self.path}")
                self._reply(404, [{"errorCode": "NOT_FOUND"}])

            def _upsert(self, raw: bytes) -> None:
                with crm.lock:
                    crm.requests += 1
                    n = crm.requests
                    if crm.down:
                        crm.failures_served += 1
                        return self._reply(503, {"message": "down for maintenance"})
                    if crm.rate_limited > 0:
                        crm.rate_limited -= 1
                        crm.failures_served += 1
                        return self._reply(429, {"message": "rate limited"}, {"Retry-After": crm.retry_after})
                    if crm.flaky and n % 4 == 1:
                        crm.failures_served += 1
                        return self._reply(429, {"message": "rate limited"}, {"Retry-After": "0.05"})
                    if crm.flaky and n % 7 == 3:
                        crm.failures_served += 1
                        return self._reply(500, {"message": "internal error"})
                    expected = SF_TOKEN if crm.kind == "salesforce" else HUBSPOT_TOKEN
                    if self.headers.get("Authorization") != f"Bearer {expected}":
                        crm.rejected.append(f"auth header {self.headers.get('Authorization')!r}")
                        return self._reply(401, {"message": "unauthorized"})
                    body = json.loads(raw)
                    problem = crm._check_shape(body)
                    if problem:
                        crm.rejected.append(problem)
                        return self._reply(400, {"message": problem})
                    crm.batches.append(len(body["records"] if crm.kind == "salesforce" else body["inputs"]))
                    if crm.kind == "salesforce":  # one UpsertResult per record, in order; a refused one alone
                        answers: list[dict[str, Any]] = []
                        for record in body["records"]:
                            cid = record["Contract_Id__c"]
                            if crm.record_errors.get(cid):
                                code = crm.record_errors[cid].pop(0)
                                answers.append({"id": None, "success": False, "errors": [
                                    {"statusCode": code, "message": f"{code} (test)", "fields": []}]})
                                continue
                            crm.upserts.append(Upsert(cid, record["Renewal_Stage__c"], record["StageName"],
                                                      record["CloseDate"], record))
                            answers.append({"id": f"006{cid}", "success": True, "errors": [], "created": True})
                        return self._reply(200, answers)
                    results = []
                    for item in body["inputs"]:
                        props = item["properties"]
                        crm.upserts.append(Upsert(props["contract_id"], props["renewal_stage"], props["dealstage"],
                                                  props["closedate"], {"inputs": [item]}))
                        results.append({"id": props["contract_id"], "properties": props, "new": True})
                    return self._reply(200, {"status": "COMPLETE", "results": results})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def _check_shape(self, body: Any) -> str | None:
        if self.kind == "salesforce":
            records = body.get("records")
            if body.get("allOrNone") is not False or not isinstance(records, list) or not 1 <= len(records) <= 200:
                return "salesforce collection upsert takes allOrNone false and 1..200 records"
            ids = [r.get("Contract_Id__c") for r in records]
            if len(set(ids)) != len(ids) or not all(ids):
                return "every record carries its own external id, once"
            for record in records:
                missing = [f for f in ("Name", "StageName", "CloseDate", "Amount", "Renewal_Stage__c")
                           if f not in record]
                if missing or record.get("attributes") != {"type": "Opportunity"}:
                    return f"salesforce record misses {missing} or attributes.type"
                date.fromisoformat(record["CloseDate"])
            return None
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= 100:
            return "hubspot batch upsert takes 1..100 inputs"
        ids = [item.get("id") for item in inputs]
        if len(set(ids)) != len(ids):
            return "the same deal twice in one batch"
        for item in inputs:
            props = item.get("properties", {})
            if item.get("idProperty") != "contract_id" or item.get("id") != props.get("contract_id"):
                return f"hubspot upsert must use idProperty contract_id = id, got {item.get('idProperty')}"
            missing = [f for f in ("dealname", "dealstage", "closedate", "amount", "pipeline") if f not in props]
            if missing:
                return f"hubspot properties miss {missing}"
        return None

    def stages(self, contract_id: str) -> list[str]:
        with self.lock:
            return [u.stage for u in self.upserts if u.contract_id == contract_id]

    def per_stage(self, contract_id: str) -> Counter[str]:
        return Counter(self.stages(contract_id))

    def last(self, contract_id: str) -> Upsert | None:
        with self.lock:
            mine = [u for u in self.upserts if u.contract_id == contract_id]
        return mine[-1] if mine else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# --- Kafka -----------------------------------------------------------------------------------

TOPICS = (CONTRACT_STATE, CONTRACT_EVENTS, SCORECARD, RENEWAL_DECISION, CLOCK, RENEWAL_OPPORTUNITY, ALERTS)


class Bus:
    """Producer and readers for one test's prefixed topics."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap, self.prefix = bootstrap, prefix
        names = [prefix + t.name for t in TOPICS] + [prefix + t.name + ".dlq" for t in TOPICS]
        create_topics(bootstrap, names, partitions=3)
        self.producer = Producer({"bootstrap.servers": bootstrap})
        self._readers: dict[str, Reader] = {}

    def send(self, event: cs.Event, topic: str, event_id: str | None = None, traceparent: str | None = None) -> None:
        record = cs.encode(event, source="/tests", event_id=event_id, traceparent=traceparent)
        self.producer.produce(self.prefix + topic, key=record.key, value=record.value, headers=record.headers)
        self.producer.flush(10)

    def contract(self, snap: ContractSnapshot, traceparent: str | None = None) -> None:
        self.send(snap, CONTRACT_STATE.name, traceparent=traceparent)

    def tick(self, when: datetime) -> None:
        self.send(cs.ClockAdvanced(now=when), CLOCK.name)

    def reader(self, topic: str) -> Reader:
        if topic not in self._readers:
            self._readers[topic] = Reader(self.bootstrap, self.prefix + topic)
        return self._readers[topic]

    # A crash between producing a record and marking it sent re-produces it after the restart with
    # the same ce_id; consumers deduplicate on ce_id, so these views do too. A second announcement
    # under a new ce_id still shows up twice.
    def opportunities(self, contract_id: str) -> list[cs.RenewalOpportunity]:
        return [e for e in self.reader(RENEWAL_OPPORTUNITY.name).distinct_events()
                if isinstance(e, cs.RenewalOpportunity) and e.contract_id == contract_id]

    def alerts(self, contract_id: str) -> list[cs.Alert]:
        return [e for e in self.reader(ALERTS.name).distinct_events()
                if isinstance(e, cs.Alert) and e.contract_id == contract_id]

    def close(self) -> None:
        for r in self._readers.values():
            r.close()


class Reader:
    """Reads a topic from the beginning by assignment and keeps everything it saw."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("reader"),
                                  "enable.auto.commit": False})
        meta = wait_for(lambda: self.consumer.list_topics(topic, timeout=5).topics.get(topic), timeout=20)
        self.partitions = list(meta.partitions)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])
        self.records: list[tuple[Any, dict[str, str]]] = []

    def _read_up_to(self, ends: dict[int, int]) -> bool:
        positions = self.consumer.position([TopicPartition(self.topic, p) for p in ends])
        return all(end <= 0 or tp.offset >= end for tp, end in zip(positions, ends.values(), strict=True))

    def events(self) -> list[Any]:
        """Everything on the topic up to its end when called (a fresh reader's first fetch can take longer
        than one empty poll on a loaded machine, so the end offsets say when it is done, not a quiet poll)."""
        ends = {p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                for p in self.partitions}
        deadline = time.monotonic() + 30
        while True:
            msgs = self.consumer.consume(500, 0.2)
            if not msgs and self._read_up_to(ends):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: not read up to its end offsets {ends} in 30 s")
            for m in msgs:
                if m.error() is None:
                    headers = {k: (v or b"").decode() for k, v in (m.headers() or [])}
                    try:
                        self.records.append((decode(m.value(), m.headers()).event, headers))
                    except cs.DecodeError:
                        self.records.append((m.value(), headers))
        return [e for e, _ in self.records]

    def distinct_events(self) -> list[Any]:
        """Events in order, a redelivery of the same ce_id counted once."""
        self.events()
        seen: set[str] = set()
        out = []
        for event, headers in self.records:
            ce_id = headers.get("ce_id", "")
            if ce_id and ce_id in seen:
                continue
            seen.add(ce_id)
            out.append(event)
        return out

    def close(self) -> None:
        self.consumer.close()


# --- the service under test ------------------------------------------------------------------

def renewal_sync_command() -> list[str]:
    script = Path(sys.executable).with_name("renewal-sync")
    if script.exists():
        return [str(script)]
    found = shutil.which("renewal-sync")
    return [found] if found else [sys.executable, "-m", "renewal_sync.entrypoints.main"]


class Service:
    """`renewal-sync` as a subprocess with MESH_CLOCK=topic, on its own topics, group and schema."""

    def __init__(self, bootstrap: str, database_url: str, prefix: str, crm: FakeCrm | None,
                 log_dir: Path, **extra_env: str) -> None:
        self.port = free_port()
        schema = "rs_" + prefix.strip(".").replace("-", "_").lower()
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": database_url,
            "MESH_CLOCK": "topic", "MESH_HTTP_PORT": str(self.port), "MESH_LOG_LEVEL": "INFO",
            "RENEWAL_TOPIC_PREFIX": prefix, "RENEWAL_GROUP_ID": prefix + "renewal-sync",
            "RENEWAL_DB_SCHEMA": schema, "RENEWAL_WEBHOOK_SECRETS": json.dumps({"t1": WEBHOOK_SECRET}),
            "RENEWAL_CRM": crm.kind if crm else "none", "RENEWAL_CRM_BASE_URL": crm.base_url if crm else "",
            "RENEWAL_SALESFORCE_CLIENT_ID": SF_CLIENT_ID, "RENEWAL_SALESFORCE_CLIENT_SECRET": SF_CLIENT_SECRET,
            "RENEWAL_HUBSPOT_TOKEN": HUBSPOT_TOKEN,
            "RENEWAL_CRM_ATTEMPTS": "3", "RENEWAL_CRM_BASE_DELAY": "0.02", "RENEWAL_CRM_MAX_DELAY": "0.2",
            "RENEWAL_CRM_ROUND_DELAY": "0.2", "RENEWAL_CRM_MAX_ROUND_DELAY": "1",
            "RENEWAL_CRM_BREAKER_RESET": "0.3",
            "RENEWAL_SESSION_TIMEOUT_MS": "6000",
            **extra_env,
        }
        self.log_path = log_dir / f"{prefix.strip('.')}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def replica(self) -> Service:
        """Another replica: same topics, consumer group and schema, its own HTTP port."""
        other = Service.__new__(Service)
        other.port = free_port()
        other.env = {**self.env, "MESH_HTTP_PORT": str(other.port)}
        other.log_path = self.log_path.with_name(self.log_path.stem + f"-{other.port}.log")
        other.proc = None
        return other

    def launch(self) -> Service:
        """Start the process without waiting for it to be ready."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(renewal_sync_command(), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def ready(self) -> bool:
        """/readyz answers 200 (raises once the process has exited)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"renewal-sync exited {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> Service:
        self.launch()
        wait_for(self.ready, timeout=60, interval=0.1, message="renewal-sync /readyz")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def undelivered(self) -> int:
        """Outbox rows (Kafka or CRM) not yet marked sent: 0 means a crash now re-sends nothing."""
        with psycopg.connect(self.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")) as db:
            row = db.execute(f"SELECT count(*) FROM {self.env['RENEWAL_DB_SCHEMA']}.outbox "
                             "WHERE status = 'pending'").fetchone()
        return int(row[0]) if row else 0

    def kill(self) -> None:
        """Hard crash: no shutdown hooks."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def snapshot(contract_id: str, *, end_date: date | None = date(2026, 12, 31), notice: int = 30,
             auto_renew: bool = True, status: str = "active", version: int = 1,
             total_value: str = "120000.00", effective_date: date = date(2026, 1, 1)) -> ContractSnapshot:
    return ContractSnapshot.model_validate({
        "contract_id": contract_id, "tenant_id": "t1", "title": f"Hosting {contract_id}",
        "counterparty": {"party_id": "P-" + contract_id, "name": "Acme", "crm_account_id": "001ACME"},
        "direction": "sell-side", "contract_type": "msa",
        "owner": {"name": "Olga Owner", "email": "olga@example.com"},
        "backup_owner": {"name": "Bert Backup", "email": "bert@example.com"},
        "timezone": "Europe/Berlin", "status": status,
        "versions": [{"version": v, "effective_from": effective_date.isoformat(), "currency": "EUR",
                      "total_value": total_value, "effective_date": effective_date.isoformat(),
                      "end_date": end_date.isoformat() if end_date else None, "auto_renew": auto_renew,
                      "notice_period_days": notice} for v in range(1, version + 1)],
        "updated_at": datetime.now(UTC).isoformat(),
    })


def day(y: int, m: int, d: int) -> datetime:
    """Noon UTC: past local midnight in Europe/Berlin on the same date."""
    return datetime(y, m, d, 12, tzinfo=UTC)
