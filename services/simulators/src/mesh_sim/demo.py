"""`make demo` / `mesh-demo`: the whole contract-mesh story against the local stack, printed as it happens.

Brings the mesh up (`make up`) unless every process already answers, then drives the story through
the real services and the simulators, waits for each outcome by polling (with a timeout, never a
blind sleep), and ends with a summary table. Exits 1 when any expected outcome did not happen.

Every run uses fresh contract ids and e-mail addresses, and starts the shared clock (mesh.clock.v1)
after the latest tick already on the topic, so runs never see each other's outcomes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from contract_schema.alert import Alert, ClockAdvanced
from contract_schema.base import Event
from contract_schema.codec import DecodeError, Envelope, decode
from contract_schema.contract import ContractSnapshot
from contract_schema.invoice import InvoiceValidated
from contract_schema.obligation import (
    ObligationCompleted,
    ReleaseMilestoneBilling,
    SlaBreached,
)
from contract_schema.renewal import RenewalDecision, RenewalOpportunity
from contract_schema.topics import CATALOG, CLOCK
from mesh_common.auth import AuthSettings, issue_token

from .kafka_out import EventSender

T = TypeVar("T")
TENANT = "demo"
SERVICES = ("contract-registry", "obligation-engine", "invoice-validator", "renewal-sync", "notifier")
SIMULATORS = ("erp-simulator", "crm-simulator", "smtp-catcher")
DEFAULT_PORTS = {"contract-registry": 8081, "obligation-engine": 8082, "invoice-validator": 8083,
                 "renewal-sync": 8084, "notifier": 8085, "erp-simulator": 8091, "crm-simulator": 8092,
                 "smtp-catcher": 8093}


def repo_root() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "infra" / "scripts" / "services.sh").is_file():
            return parent
    return Path.cwd()


def url_of(name: str) -> str:
    """Where services.sh puts a process (same <NAME>_PORT overrides)."""
    port = os.environ.get(name.upper().replace("-", "_") + "_PORT") or DEFAULT_PORTS[name]
    return f"http://127.0.0.1:{port}"


# --- output ------------------------------------------------------------------------------------

COLOUR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
_print_lock = threading.Lock()


def _c(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if COLOUR else text


def say(text: str = "") -> None:
    with _print_lock:
        print(text, flush=True)


def note(text: str) -> None:
    say(f"    {text}")


# --- outcomes ----------------------------------------------------------------------------------


class StepFailed(Exception):
    """The step ran but the expected outcome did not happen; the message is what was observed."""


class ServiceMissing(StepFailed):
    pass


@dataclass
class Outcome:
    step: str
    expected: str
    observed: str
    ok: bool


def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll until `predicate` returns something truthy; StepFailed naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except httpx.HTTPError as exc:  # a service restarting: keep polling
            last = f"{type(exc).__name__}: {exc}"
        if last and not isinstance(last, str):
            return last
        if time.monotonic() >= deadline:
            raise StepFailed(f"nothing within {timeout:.0f}s: {what}" + (f" ({last})" if isinstance(last, str) else ""))
        time.sleep(interval)  # poll interval


# --- watching the topics -----------------------------------------------------------------------


class TopicWatcher:
    """Reads every catalog topic from where it ends now, decodes, keeps and narrates this run's events."""

    def __init__(self, bootstrap: str, interesting: Callable[[Event], bool]) -> None:
        self.events: list[tuple[str, Envelope]] = []
        self.interesting = interesting
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last: str | None = None
        self._repeats = 0
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"mesh-demo-{uuid.uuid4().hex[:8]}",
                                   "enable.auto.commit": False, "enable.partition.eof": False,
                                   "isolation.level": "read_committed"})
        metadata = self._consumer.list_topics(timeout=10).topics
        parts = []
        for spec in CATALOG:
            if spec.name not in metadata or spec.name == CLOCK.name:
                continue
            for p in metadata[spec.name].partitions:
                tp = TopicPartition(spec.name, p)
                high = self._consumer.get_watermark_offsets(tp, timeout=10)[1]
                parts.append(TopicPartition(spec.name, p, high))
        self._consumer.assign(parts)
        self._thread = threading.Thread(target=self._run, name="topic-watcher", daemon=True)

    def start(self) -> TopicWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            try:
                envelope = decode(msg.value(), msg.headers())
            except DecodeError:
                continue
            with self._lock:
                self.events.append((msg.topic() or "", envelope))
            if self.interesting(envelope.event):
                self._narrate(f"{msg.topic()}: {describe(envelope.event)}")
        self._narrate(None)

    def _narrate(self, line: str | None) -> None:
        """Print an event line; a run of identical lines (e.g. a year of SLA windows) prints once, counted."""
        if line is not None and line == self._last:
            self._repeats += 1
            return
        if self._repeats:
            say(_c("2", f"        (and {self._repeats} more like it)"))
        self._last, self._repeats = line, 0
        if line is not None:
            say(_c("2", f"      ← {line}"))

    def find(self, kind: type[T], where: Callable[[T], bool] = lambda _: True) -> list[T]:
        with self._lock:
            return [e.event for _, e in self.events if isinstance(e.event, kind) and where(e.event)]


def describe(event: Event) -> str:
    """One line about an event, for the narration."""
    name = type(event).__name__
    d = event.model_dump(mode="json")
    if isinstance(event, InvoiceValidated):
        reasons = ",".join(event.reason_codes or sorted({c for line in event.lines for c in line.reason_codes}))
        return f"{name} {event.invoice_number} -> {event.status.value} [{reasons}]"
    if isinstance(event, RenewalOpportunity):
        return f"{name} {event.contract_id} stage {event.stage.value} ({event.status.value})"
    if "alert_type" in d:
        return f"Alert {d['tier']} {d['alert_type']}: {d['title']}"
    if "kind" in d and "alert_id" in d:
        return f"{name} {d['kind']} via {d.get('channel')} to {d.get('recipient')}"
    bits = [str(d[k]) for k in ("invoice_number", "contract_id", "contract_ref", "obligation_id", "status",
                                "decision", "stage") if d.get(k)]
    return f"{name} {' '.join(bits)}"


# --- the story ---------------------------------------------------------------------------------


@dataclass
class Contract:
    role: str  # "milestone", "sla", "auto-renew"
    contract_id: str
    vendor_id: str
    owner: str
    backup: str


@dataclass
class Demo:
    bootstrap: str
    timeout: float
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    outcomes: list[Outcome] = field(default_factory=list)
    contracts: dict[str, Contract] = field(default_factory=dict)
    today: date = date(2000, 1, 1)
    now: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    watcher: TopicWatcher | None = None
    healthy: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    invoices: dict[str, str] = field(default_factory=dict)  # label -> invoice_id
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=20))

    def __post_init__(self) -> None:
        self.sender = EventSender("/contract-mesh/demo")
        self.token = issue_token(AuthSettings(), subject="mesh-demo", tenant=TENANT,
                                 scopes=["contracts:read", "contracts:write", "invoices:read", "invoices:write"])

    # -- framework --

    def step(self, name: str, expected: str, body: Callable[[], str]) -> bool:
        say()
        say(_c("1", f"▶ {name}"))
        note(f"expect: {expected}")
        try:
            observed, ok = body(), True
        except ServiceMissing as exc:
            observed, ok = str(exc), False
        except StepFailed as exc:
            observed, ok = str(exc) + self.crashed(), False
        except Exception as exc:  # a demo step must report, never crash the story
            observed, ok = f"error: {type(exc).__name__}: {exc}" + self.crashed(), False
        self.outcomes.append(Outcome(name, expected, observed, ok))
        mark = _c("32", "OK") if ok else _c("31", "FAIL")
        note(f"{mark}: {observed}")
        return ok

    def crashed(self) -> str:
        """Name the processes that answered at the start but do not now: the likely cause of a failure."""
        gone = []
        for name in sorted(self.healthy & self.answered):
            try:
                self.http.get(url_of(name) + "/healthz", timeout=2).raise_for_status()
            except httpx.HTTPError:
                gone.append(name)
        self.healthy -= set(gone)
        return "".join(f" [{n} stopped answering: see .run/logs/{n}.log]" for n in gone)

    @property
    def w(self) -> TopicWatcher:
        if self.watcher is None:
            raise StepFailed("skipped: not watching the topics (the clock step failed)")
        return self.watcher

    def need(self, *names: str) -> None:
        missing = [n for n in names if n not in self.healthy]
        if missing:
            raise ServiceMissing("service missing: " + ", ".join(missing))

    def need_contracts(self, *roles: str) -> None:
        if any(r not in self.contracts for r in roles):
            raise StepFailed("skipped: the contracts were not registered")

    def ours(self, event: Event) -> bool:
        ids = {c.contract_id for c in self.contracts.values()}
        d = event.__dict__
        return (d.get("contract_id") in ids or d.get("contract_ref") in ids
                or d.get("invoice_id") in self.invoices.values())

    def at(self, days: int, hour: int = 9) -> datetime:
        return datetime.combine(self.today + timedelta(days=days), dtime(hour), tzinfo=UTC)

    def clock_to(self, when: datetime) -> None:
        self.sender.send(ClockAdvanced(now=when), event_id=f"demo-{self.run}-clock-{when.isoformat()}")
        self.now = when
        note(f"→ ClockAdvanced on {CLOCK.name}: now = {when.isoformat()}")

    def registry(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.http.request(method, url_of("contract-registry") + path, headers=headers, **kw)

    # -- start-up --

    def bring_up(self) -> str:
        script = str(repo_root() / "infra" / "scripts" / "services.sh")

        def states() -> tuple[int, dict[str, str]]:
            """services.sh status: running / starting (alive, no /healthz) / stopped / absent, per process."""
            result = subprocess.run(["bash", script, "status"], text=True, capture_output=True)
            found = {}
            for line in result.stdout.splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] in SERVICES + SIMULATORS:
                    found[parts[0]] = parts[1]
            return result.returncode, found

        code, state = states()
        if not kafka_answers(self.bootstrap) or code != 0:
            note("the mesh is not (fully) running: make up")
            result = subprocess.run(["make", "--no-print-directory", "up"], cwd=repo_root(), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for line in result.stdout.splitlines():
                note("  | " + line)
            code, state = states()
        if not kafka_answers(self.bootstrap):
            raise StepFailed(f"Kafka at {self.bootstrap} does not answer")
        # A process that is alive but has no /healthz still takes part; it is reported below.
        self.healthy = {n for n, s in state.items() if s in ("running", "starting")}
        self.answered = {n for n, s in state.items() if s == "running"}
        def ready(name: str) -> bool:
            return self.http.get(url_of(name) + "/readyz", timeout=3).status_code == 200

        for name in sorted(n for n, s in state.items() if s == "running"):
            try:  # ready = caught up with its topics, before the story starts
                poll(functools.partial(ready, name), min(self.timeout, 60), f"{name} /readyz")
            except StepFailed as exc:
                note(f"{name} not ready: {exc}")
        problems = [f"{n} {state.get(n, 'unknown')}" for n in SERVICES + SIMULATORS if state.get(n) != "running"]
        if problems:
            raise StepFailed(f"{sum(s == 'running' for s in state.values())}/8 answer /healthz; "
                             + ", ".join(p.replace("starting", "alive without /healthz") for p in problems))
        return "5 services and 3 simulators answer /healthz"

    def start_clock(self) -> str:
        latest = latest_tick(self.bootstrap)
        start = max(datetime.now(UTC), latest + timedelta(days=1) if latest else datetime.now(UTC))
        self.today = start.date() + timedelta(days=1)
        self.watcher = TopicWatcher(self.bootstrap, self.ours).start()
        self.clock_to(self.at(0))
        return f"demo day 0 = {self.today} (previous tick {latest.isoformat() if latest else 'none'})"

    # -- steps --

    def register_contracts(self) -> str:
        self.need("contract-registry")
        made = []
        seen_before = self.processed("invoice-validator", "clm.contract.state.v1")
        for role, body in contract_bodies(self.run, self.today).items():
            resp = self.registry("POST", "/v1/contracts", json=body, headers={"Idempotency-Key": f"{self.run}-{role}"})
            if resp.status_code != 201:
                raise StepFailed(f"POST /v1/contracts ({role}) -> {resp.status_code}: {resp.text[:300]}")
            cid = resp.json()["contract_id"]
            act = self.registry("POST", f"/v1/contracts/{cid}/activate", headers={"If-Match": resp.headers["etag"]})
            if act.status_code != 200:
                raise StepFailed(f"activate {cid} -> {act.status_code}: {act.text[:300]}")
            self.contracts[role] = Contract(role, cid, body["counterparty"]["erp_vendor_id"], body["owner"]["email"],
                                            body["backup_owner"]["email"])
            note(f"→ registered and activated {role} contract {cid} ({body['title']})")
            made.append(cid)
        poll(lambda: {c.contract_id for c in self.w.find(ContractSnapshot, lambda c: c.status.value == "active")}
             >= set(made), self.timeout, "the 3 active snapshots on clm.contract.state.v1")
        observed = "3 contracts active; their snapshots are on clm.contract.state.v1"
        # Invoices and contracts travel on different topics: an ERP posts invoices days after activation, the
        # demo seconds after. Wait until the validator has consumed the 6 snapshots (created + activated).
        if seen_before is not None:
            try:
                poll(lambda: (self.processed("invoice-validator", "clm.contract.state.v1") or 0) >= seen_before + 6,
                     self.timeout, "the validator consuming the 6 snapshots (its mesh_records_processed_total)")
                observed += "; the validator has consumed them"
            except StepFailed as exc:
                observed += f"; {exc}"
        return observed

    def processed(self, service: str, topic: str) -> float | None:
        """A service's mesh_records_processed_total for a topic from its /metrics (None: not exposed)."""
        if service not in self.healthy:
            return None
        try:
            text = self.http.get(url_of(service) + "/metrics", timeout=3).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith("mesh_records_processed_total{") and f'topic="{topic}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0 if "mesh_records_processed_total" in text else None

    def invoice(self, label: str, number: str, lines: list[dict[str, Any]], via: str = "kafka") -> str:
        c = self.contracts["milestone"]
        invoice_id = f"INV-{self.run}-{label}"
        self.invoices[label] = invoice_id
        body = {"invoice_id": invoice_id, "tenant_id": TENANT, "vendor_id": c.vendor_id, "invoice_number": number,
                "contract_ref": c.contract_id, "issue_date": self.now.date().isoformat(), "currency": "EUR",
                "payment_terms_days": 30, "lines": lines, "received_at": self.now.isoformat()}
        resp = self.http.post(url_of("erp-simulator") + "/invoices", json=body, params={"via": via})
        if resp.status_code != 202:
            raise StepFailed(f"ERP simulator refused the invoice: {resp.status_code} {resp.text[:300]}")
        if via == "http":
            answer = resp.json()
            if answer.get("status_code") != 202:
                raise StepFailed(f"validator POST /v1/invoices -> {answer.get('status_code')}: "
                                 f"{answer.get('response')}")
            note(f"→ ERP posts invoice {number} ({invoice_id}) to the validator's POST /v1/invoices (202)")
        else:
            note(f"→ ERP posts invoice {number} ({invoice_id}) to ap.invoice.received.v1")
        return invoice_id

    def verdict(self, invoice_id: str) -> InvoiceValidated:
        found: list[InvoiceValidated] = poll(
            lambda: self.w.find(InvoiceValidated, lambda v: v.invoice_id == invoice_id),
            self.timeout, f"a verdict for {invoice_id} on ap.invoice.validated.v1")
        return found[0]

    def expect_verdict(self, label: str, number: str, lines: list[dict[str, Any]], status: str,
                       reason: str | None, via: str = "kafka") -> str:
        self.need("invoice-validator", "erp-simulator")
        self.need_contracts("milestone")
        v = self.verdict(self.invoice(label, number, lines, via))
        codes = set(v.reason_codes) | {c for line in v.lines for c in line.reason_codes}
        observed = f"{v.status.value} {sorted(codes)}"
        if v.status.value != status or (reason is not None and reason not in codes):
            raise StepFailed(observed)
        return observed + (f", prevented {v.prevented_overpayment} {v.currency}" if v.prevented_overpayment else "")

    def invoice_correct(self) -> str:
        return self.expect_verdict("correct", f"A-{self.run}-1", [consulting_line(self.today, 10, "150.00")],
                                   "approved", None)

    def invoice_overbilled(self) -> str:
        return self.expect_verdict("overbilled", f"A-{self.run}-2", [consulting_line(self.today, 20, "180.00")],
                                   "rejected", "PRICE_ABOVE_CONTRACT")

    def invoice_milestone_early(self) -> str:
        return self.expect_verdict("milestone-early", f"A-{self.run}-3", [milestone_line(self.today)],
                                   "rejected", "MILESTONE_NOT_COMPLETED")

    def invoice_duplicate(self) -> str:
        # The same vendor and invoice number as the correct one, posted again as a new document.
        return self.expect_verdict("duplicate", f"A-{self.run}-1", [consulting_line(self.today, 10, "150.00")],
                                   "rejected", "DUPLICATE_INVOICE")

    def ap_received_verdicts(self) -> str:
        self.need("invoice-validator", "erp-simulator")
        ids = {self.invoices[k] for k in ("correct", "overbilled", "milestone-early", "duplicate")
               if k in self.invoices}
        if len(ids) < 4:
            raise StepFailed("skipped: not all four invoices were posted")

        def got() -> list[dict[str, Any]]:
            items = self.http.get(url_of("erp-simulator") + "/received", params={"kind": "ap-verdict"}).json()
            mine = [i for i in items if isinstance(i["body"], dict) and i["body"].get("invoice_id") in ids]
            return mine if {i["body"]["invoice_id"] for i in mine} == ids else []

        mine = poll(got, self.timeout, "4 verdict webhooks at the ERP/AP simulator")
        unsigned = [i for i in mine if not i["accepted"]]
        if unsigned:
            raise StepFailed(f"{len(unsigned)} webhook(s) failed the signature check: {unsigned[0]['problem']}")
        statuses = sorted(i["body"].get("status", "?") for i in mine)
        return f"{len(mine)} signed verdict webhooks: {statuses}"

    def erp_completes_milestone(self) -> str:
        self.need("erp-simulator", "obligation-engine")
        self.need_contracts("milestone")
        c = self.contracts["milestone"]
        resp = self.http.post(url_of("erp-simulator") + "/performance/MilestoneCompleted",
                              params={"event_id": f"demo-{self.run}-m1-done"},
                              json={"contract_id": c.contract_id, "obligation_id": "M1",
                                    "occurred_at": self.now.isoformat(), "completed_at": self.now.isoformat(),
                                    "evidence_ref": f"PRJ-{self.run}-SIGNOFF"})
        if resp.status_code != 202:
            raise StepFailed(f"ERP simulator: {resp.status_code} {resp.text[:300]}")
        note("→ ERP posts MilestoneCompleted(M1) to erp.performance.v1")
        done = poll(lambda: self.w.find(ObligationCompleted, lambda e: e.contract_id == c.contract_id
                                              and e.obligation_id == "M1"),
                    self.timeout, "ObligationCompleted(M1) on clm.obligation.events.v1")[0]
        observed = f"ObligationCompleted(M1, origin {done.origin.value}, on time {done.on_time})"
        if "contract-registry" in self.healthy:
            def registry_shows() -> str | bool:
                body = self.registry("GET", f"/v1/contracts/{c.contract_id}").json()
                states = {s["obligation_id"]: s["status"] for s in body.get("obligation_states", [])}
                return states.get("M1") == "completed" or f"registry shows {states}"
            poll(registry_shows, self.timeout, "the registry showing M1 completed")
            observed += "; the registry shows M1 completed"
        return observed

    def milestone_invoice_passes(self) -> str:
        # Through the validator's HTTP intake this time (AP systems that cannot produce to Kafka).
        return self.expect_verdict("milestone-resent", f"A-{self.run}-4", [milestone_line(self.today)],
                                   "approved", None, via="http")

    def contract_side_milestone(self) -> str:
        self.need("contract-registry", "obligation-engine", "erp-simulator")
        self.need_contracts("milestone")
        c = self.contracts["milestone"]
        resp = self.registry("POST", f"/v1/contracts/{c.contract_id}/obligations/M2/complete",
                             json={"evidence_ref": f"GOLIVE-{self.run}"})
        if resp.status_code not in (200, 202):
            raise StepFailed(f"registry milestone endpoint -> {resp.status_code}: {resp.text[:300]}")
        note("→ the contract owner completes M2 (Go-live) in the registry")

        def released() -> list[dict[str, Any]]:
            items = self.http.get(url_of("erp-simulator") + "/received", params={"kind": "milestone-release"}).json()
            return [i for i in items
                    if i["body"]["contract_id"] == c.contract_id and i["body"]["obligation_id"] == "M2"]

        got = poll(released, self.timeout, "POST /milestones/{contract}/M2/release at the ERP simulator")
        commands = self.w.find(ReleaseMilestoneBilling, lambda e: e.contract_id == c.contract_id)
        auth = "with a valid token" if got[0]["accepted"] else f"REFUSED: {got[0]['problem']}"
        if not got[0]["accepted"]:
            raise StepFailed(f"release call reached the ERP simulator but was {auth}")
        # No loop: the ERP-side completion of M1 is never sent back to ERP, M2 is released once.
        calls = self.http.get(url_of("erp-simulator") + "/received", params={"kind": "milestone-release"}).json()
        m1_back = [i for i in calls if i["body"]["contract_id"] == c.contract_id and i["body"]["obligation_id"] == "M1"]
        if m1_back or len(got) != 1:
            raise StepFailed(f"echo: {len(m1_back)} release call(s) for the ERP-completed M1, {len(got)} for M2")
        return (f"ERP simulator received 1 release call for M2 {auth}; {len(commands)} command(s) on "
                "erp.milestone.commands.v1; none for M1, which ERP itself completed (no echo)")

    def sla_breach(self) -> str:
        self.need("erp-simulator", "obligation-engine")
        self.need_contracts("sla")
        c = self.contracts["sla"]
        start = datetime.combine((self.today.replace(day=1) - timedelta(days=1)).replace(day=1), dtime(0), tzinfo=UTC)
        end = datetime.combine(self.today.replace(day=1), dtime(0), tzinfo=UTC)
        resp = self.http.post(url_of("erp-simulator") + "/performance/SlaMeasurement",
                              params={"event_id": f"demo-{self.run}-sla"},
                              json={"contract_id": c.contract_id, "obligation_id": "S1", "metric": "availability",
                                    "window_start": start.isoformat(), "window_end": end.isoformat(),
                                    "value": "99.50", "occurred_at": self.now.isoformat()})
        if resp.status_code != 202:
            raise StepFailed(f"ERP simulator: {resp.status_code} {resp.text[:300]}")
        note(f"→ monitoring reports availability 99.50% for {start.date()}..{end.date()} (target 99.9%)")
        breach = poll(lambda: self.w.find(SlaBreached, lambda e: e.contract_id == c.contract_id),
                      self.timeout, "SlaBreached on clm.obligation.events.v1")[0]
        return (f"SlaBreached: measured {breach.measured} vs {breach.target}, "
                f"credit {breach.service_credit} {breach.currency}")

    def renewal_stage(self, stage: str, day: int) -> Callable[[], str]:
        def run() -> str:
            self.need("renewal-sync", "crm-simulator")
            self.need_contracts("auto-renew")
            c = self.contracts["auto-renew"]
            self.clock_to(self.at(day))

            def upserted() -> dict[str, Any] | None:
                opps: list[dict[str, Any]] = self.http.get(url_of("crm-simulator") + "/opportunities").json()
                for opp in opps:
                    if opp["external_id"] == c.contract_id and any(
                            stage in (h["fields"].get("Renewal_Stage__c"), h["fields"].get("renewal_stage"))
                            for h in opp["history"]):
                        return opp
                return None

            opp = poll(upserted, self.timeout, f"opportunity {c.contract_id} at stage {stage} in the CRM simulator")
            f = opp["fields"]
            return (f"CRM opportunity {opp['id']}: stage {f.get('Renewal_Stage__c')}, {f.get('StageName')}, "
                    f"close {f.get('CloseDate')}, amount {f.get('Amount')} {f.get('CurrencyIsoCode')}, "
                    f"{len(opp['history'])} upserts, auto-renewal risk {f.get('Auto_Renewal_Risk__c')}")
        return run

    def mails(self, contract: Contract | None = None, to: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        msgs = self.http.get(url_of("smtp-catcher") + "/messages", params={"since": since}).json()
        run_ids = {c.contract_id for c in self.contracts.values()}
        out = []
        for m in msgs:
            text = m["subject"] + m["text"]
            if contract is not None and contract.contract_id not in text:
                continue
            if contract is None and not any(cid in text for cid in run_ids) and self.run not in text:
                continue
            if to is not None and not any(to.lower() == r.lower() for r in m["rcpt_tos"]):
                continue
            out.append(m)
        return out

    def tiered_alerts(self) -> str:
        """Red for the overbilled invoice and the SLA breach, yellow for the 90/60-day renewal stages, green
        items rolled into a digest: each alert found on clm.alert.v1, then its e-mail in the SMTP catcher."""
        self.need("notifier", "smtp-catcher")
        self.need_contracts("milestone", "sla", "auto-renew")
        ids = {role: c.contract_id for role, c in self.contracts.items()}
        wanted: list[tuple[str, str, Callable[[Alert], bool]]] = [
            ("RED", "the overbilled invoice", lambda a: a.contract_id == ids["milestone"]
             and a.alert_type.startswith("invoice.") and self.invoices.get("overbilled", "?") in a.model_dump_json()),
            ("RED", "the SLA breach", lambda a: a.contract_id == ids["sla"] and "sla" in a.alert_type
             and "breach" in a.alert_type),
            ("YELLOW", "a 90/60-day renewal stage", lambda a: a.contract_id == ids["auto-renew"]
             and a.alert_type.startswith("renewal.") and ("90d" in a.dedup_key or "60d" in a.dedup_key)),
        ]

        def check() -> list[str] | str:
            subjects = [m["subject"] for m in self.mails()]
            found, missing = [], []
            for tier, what, is_it in wanted:
                titles = [a.title for a in self.w.find(Alert, is_it)]
                hit = next((sub for sub in subjects for t in titles if sub.startswith(f"[{tier}]") and t in sub), None)
                if hit:
                    found.append(f"{tier.lower()} for {what}: {hit!r}")
                else:
                    missing.append(f"{tier.lower()} e-mail for {what}" + ("" if titles else " (no such alert)"))
            digest = next((sub for sub in subjects if sub.startswith("[DIGEST]")), None)
            if digest:
                found.append(f"digest of green items: {digest!r}")
            else:
                missing.append("a digest e-mail")
            return found if not missing else "missing " + "; ".join(missing)

        found: list[str] = poll(check, self.timeout, "the tiered e-mails in the SMTP catcher")
        return "; ".join(found)

    def decision_stops_escalation(self) -> str:
        """The 30-day renewal alert (red, escalates to the backup after 24 h) is decided in the CRM; 26 h
        later its backup has had no escalation, while a control red alert raised at the same moment and
        left alone (a second overbilled invoice) did escalate to its backup: proof the notifier acted on
        this clock tick, so the missing escalation is the decision's doing, not a slow consumer."""
        self.need("renewal-sync", "crm-simulator", "notifier", "smtp-catcher", "invoice-validator", "erp-simulator")
        self.need_contracts("auto-renew", "milestone")
        c, a = self.contracts["auto-renew"], self.contracts["milestone"]
        try:
            red = poll(lambda: [m for m in self.mails(c, to=c.owner) if m["subject"].startswith("[RED]")],
                       self.timeout, f"the red 30-day renewal e-mail to {c.owner}")
            note(f"red alert to the owner: {red[0]['subject']}")
        except StepFailed as exc:
            red = []
            note(f"no red renewal e-mail to stop: {exc}")
        control_number = f"A-{self.run}-5"
        control = self.verdict(self.invoice("control", control_number, [consulting_line(self.today, 20, "180.00")]))
        note(f"control: invoice {control_number} {control.status.value}, its red alert left unacknowledged")
        poll(lambda: [m for m in self.mails(a, to=a.owner) if control_number in m["subject"]], self.timeout,
             f"the red e-mail for {control_number}")
        mark = max([m["seq"] for m in self.mails()] or [0])

        resp = self.http.post(url_of("crm-simulator") + "/decisions",
                              json={"contract_id": c.contract_id, "decision": "renew", "tenant_id": TENANT,
                                    "decided_by": c.owner, "note": "Renew for 12 months at the current price"})
        body = resp.json()
        if resp.status_code != 200 or body.get("status_code") != 202:
            raise StepFailed(f"CRM decision webhook: {resp.status_code} {body}")
        note("→ the CRM records the decision 'renew' and sends it to renewal-sync's signed webhook")
        poll(lambda: self.w.find(RenewalDecision, lambda e: e.contract_id == c.contract_id),
             self.timeout, "RenewalDecision on crm.renewal.decision.v1")

        def crm_shows_decision() -> bool:
            opps = self.http.get(url_of("crm-simulator") + "/opportunities").json()
            return any(o["external_id"] == c.contract_id and o["fields"].get("Renewal_Decision__c") == "renew"
                       for o in opps)

        try:  # the decision consumed by the mesh before time moves on
            poll(crm_shows_decision, self.timeout, "renewal-sync writing the decision back to the CRM opportunity")
            note("renewal-sync updated the CRM opportunity with the decision")
        except StepFailed as exc:
            note(str(exc))
        # Past the first escalation step (24 h) of both red alerts.
        self.clock_to(self.now + timedelta(hours=26))
        try:
            poll(lambda: [m for m in self.mails(a, to=a.backup, since=mark)
                          if "[ESCALATED]" in m["subject"] and control_number in m["subject"]],
                 self.timeout, f"the control escalation of {control_number} to {a.backup}")
        except StepFailed as exc:
            raise StepFailed("the notifier did not escalate the control alert either, so nothing is shown: "
                             f"{exc}") from None
        escalated = [m for m in self.mails(c, to=c.backup, since=mark) if "[ESCALATED]" in m["subject"]]
        if not red:
            raise StepFailed(f"decision recorded (RenewalDecision on the topic), but no red renewal e-mail was "
                             f"sent to {c.owner}, so there was no escalation to stop")
        if escalated:
            raise StepFailed(f"escalated anyway: {escalated[0]['subject']}")
        return (f"decision recorded; 26 h later no escalation to {c.backup}, while the undecided control alert "
                f"({control_number}) escalated to {a.backup}")

    def one_trace(self) -> str:
        """Spans of this run (services.sh writes them to <run dir>/traces/*.jsonl) sharing one trace id."""
        run_dir = Path(os.environ.get("MESH_RUN_DIR") or repo_root() / ".run")
        # MESH_OTEL_FILE where a service honours it; a service that ignores it prints its spans to stdout,
        # which services.sh sends to its log file.
        files = sorted((run_dir / "traces").glob("*.jsonl")) + sorted((run_dir / "logs").glob("*.log"))
        if not files:
            raise StepFailed(f"no span or log files under {run_dir}")

        def best() -> tuple[str, set[str]] | str:
            by_trace = spans_by_trace(files, since=self.started)
            if not by_trace:
                return "no spans of this run yet"
            trace_id, services = max(by_trace.items(), key=lambda kv: len(kv[1]))
            return (trace_id, services) if len(services) >= 3 else f"widest trace spans {sorted(services)}"

        # Batch span processors export every few seconds: poll until the spans are on disk.
        trace_id, services = poll(best, self.timeout, "a trace id shared by spans of 3 services")
        return f"trace {trace_id} has spans from {len(services)} services: {', '.join(sorted(services))}"

    # -- the whole story --

    def run_story(self) -> int:
        say(_c("1", f"contract mesh demo, run {self.run}"))
        if not self.step("Mesh running", "Kafka, PostgreSQL, 5 services, 3 simulators", self.bring_up):
            if not kafka_answers(self.bootstrap):
                return self.summary()
        self.step("Shared clock set", "ClockAdvanced on mesh.clock.v1; every service follows it", self.start_clock)
        self.step("Contracts registered", "milestone, SLA and auto-renewing contracts created and activated via REST",
                  self.register_contracts)
        self.step("Invoice: correct", "approved", self.invoice_correct)
        self.step("Invoice: overbilled", "rejected PRICE_ABOVE_CONTRACT", self.invoice_overbilled)
        self.step("Invoice: milestone not completed", "rejected MILESTONE_NOT_COMPLETED", self.invoice_milestone_early)
        self.step("Invoice: duplicate", "rejected DUPLICATE_INVOICE", self.invoice_duplicate)
        self.step("AP receives the verdicts", "4 HMAC-signed verdict webhooks at the ERP/AP simulator",
                  self.ap_received_verdicts)
        self.step("ERP completes milestone M1", "ObligationCompleted; the registry shows M1 completed",
                  self.erp_completes_milestone)
        self.step("Milestone invoice re-sent", "approved (new invoice number)", self.milestone_invoice_passes)
        self.step("Contract-side milestone M2", "release call at the ERP simulator, no echo back",
                  self.contract_side_milestone)
        self.step("SLA measurement below target", "SlaBreached with a service credit", self.sla_breach)
        for stage, day in (("120d", 21), ("90d", 51), ("60d", 81), ("30d", 111)):
            self.step(f"Clock -> day {day}: renewal {stage}", f"opportunity upserted in the CRM at stage {stage}",
                      self.renewal_stage(stage, day))
        self.step("Tiered alerts by e-mail", "red, yellow and green-digest e-mails in the SMTP catcher",
                  self.tiered_alerts)
        self.step("CRM decision stops escalation", "no escalation to the backup after the decision",
                  self.decision_stops_escalation)
        self.step("One trace across the mesh", "spans of >= 3 services share one trace id (traceparent in headers)",
                  self.one_trace)
        return self.summary()

    def summary(self) -> int:
        if self.watcher is not None:
            self.watcher.stop()
        self.sender.close()
        say()
        say(_c("1", "Summary"))
        rows: list[tuple[str, ...]] = [("#", "step", "expected", "observed", "result")]
        rows += [(str(i), o.step, o.expected, o.observed, "OK" if o.ok else "FAIL")
                 for i, o in enumerate(self.outcomes, 1)]
        say(table(rows))
        passed = sum(o.ok for o in self.outcomes)
        say(f"{passed}/{len(self.outcomes)} steps OK")
        return 0 if passed == len(self.outcomes) else 1


def table(rows: list[tuple[str, ...]], widths: Iterable[int] = (3, 32, 40, 70, 6)) -> str:
    """A plain-text table; long cells wrap inside their column."""
    import textwrap

    w = list(widths)
    out = []
    for n, row in enumerate(rows):
        cells = [textwrap.wrap(c, width) or [""] for c, width in zip(row, w, strict=True)]
        for i in range(max(len(c) for c in cells)):
            out.append(" | ".join((c[i] if i < len(c) else "").ljust(width) for c, width in zip(cells, w, strict=True)))
        if n == 0:
            out.append("-+-".join("-" * width for width in w))
    return "\n".join(out)


# --- the demo's data ---------------------------------------------------------------------------


def person(name: str, role: str, run: str) -> dict[str, str]:
    return {"name": name, "email": f"{role}.{run}@demo.example.com"}


def contract_bodies(run: str, today: date) -> dict[str, dict[str, Any]]:
    def d(days: int) -> str:
        return (today + timedelta(days=days)).isoformat()

    common = {"direction": "buy-side", "timezone": "UTC", "tags": ["demo", run]}
    return {
        "milestone": {
            **common, "title": f"Consulting: ERP rollout ({run})", "contract_type": "services",
            "counterparty": {"party_id": f"V-{run}-1", "name": "Acme Consulting", "erp_vendor_id": f"ERP-{run}-1"},
            "owner": person("Olga Owner", "olga", run), "backup_owner": person("Bob Backup", "bob", run),
            "terms": {"currency": "EUR", "total_value": "100000.00", "effective_date": d(-30), "end_date": d(335),
                      "notice_period_days": 30, "payment_terms_days": 30,
                      "rate_card": [{"line_id": "L1", "item_code": "CONSULT-SR", "description": "Senior consultant",
                                     "unit": "HUR", "unit_price": "150.00", "currency": "EUR",
                                     "valid_from": d(-30), "valid_to": d(335)}],
                      "obligations": [
                          {"obligation_id": "M1", "kind": "milestone", "title": "Design sign-off",
                           "due_date": d(10), "amount": "5000.00", "owner": person("Olga Owner", "olga", run)},
                          {"obligation_id": "M2", "kind": "milestone", "title": "Go-live", "due_date": d(60),
                           "amount": "8000.00", "owner": person("Olga Owner", "olga", run)}]},
        },
        "sla": {
            **common, "title": f"Hosting with 99.9% availability ({run})", "contract_type": "hosting",
            "counterparty": {"party_id": f"V-{run}-2", "name": "Cloudy Hosting", "erp_vendor_id": f"ERP-{run}-2"},
            "owner": person("Sam Service", "sam", run), "backup_owner": person("Sue Standby", "sue", run),
            "terms": {"currency": "EUR", "total_value": "120000.00", "effective_date": d(-90), "end_date": d(275),
                      "notice_period_days": 30, "payment_terms_days": 30,
                      "rate_card": [{"line_id": "H1", "item_code": "HOSTING", "unit": "MON", "unit_price": "10000.00",
                                     "currency": "EUR", "valid_from": d(-90), "valid_to": d(275)}],
                      "obligations": [
                          {"obligation_id": "S1", "kind": "sla", "title": "Availability 99.9% monthly",
                           "owner": person("Sam Service", "sam", run),
                           "sla": {"metric": "availability", "target": "99.9", "comparison": "at-least",
                                   "window": "monthly", "monthly_fee": "10000.00", "credit_percent_per_step": "5",
                                   "step": "0.1", "credit_cap_percent": "30"}}]},
        },
        "auto-renew": {
            **common, "title": f"Design software subscription ({run})", "contract_type": "software",
            "counterparty": {"party_id": f"V-{run}-3", "name": "Pixel Tools", "erp_vendor_id": f"ERP-{run}-3",
                             "crm_account_id": f"001{run.upper()}"},
            "owner": person("Rita Renewal", "rita", run), "backup_owner": person("Ben Backup", "ben", run),
            # Notice deadline = end - 60 days = day 140: stages at days 20 (120d), 50, 80 and 110 (30d).
            "terms": {"currency": "EUR", "total_value": "60000.00", "effective_date": d(-165), "end_date": d(200),
                      "auto_renew": True, "renewal_term_months": 12, "notice_period_days": 60,
                      "payment_terms_days": 30,
                      "rate_card": [{"line_id": "S1", "item_code": "SEAT", "unit": "EA", "unit_price": "100.00",
                                     "currency": "EUR", "valid_from": d(-165), "valid_to": d(200)}]},
        },
    }


def consulting_line(today: date, hours: int, price: str) -> dict[str, Any]:
    amount = (Decimal(price) * hours).quantize(Decimal("0.01"))
    return {"line_no": 1, "item_code": "CONSULT-SR", "description": "Senior consultant", "quantity": str(hours),
            "unit": "HUR", "unit_price": price, "amount": str(amount),
            "service_date": (today - timedelta(days=5)).isoformat()}


def milestone_line(today: date) -> dict[str, Any]:
    return {"line_no": 1, "item_code": "MILESTONE", "description": "Design sign-off", "quantity": "1", "unit": "EA",
            "unit_price": "5000.00", "amount": "5000.00", "service_date": today.isoformat(), "milestone_ref": "M1"}


def spans_by_trace(files: Iterable[Path], since: datetime) -> dict[str, set[str]]:
    """trace id -> service names, from JSON-lines span files (ConsoleSpanExporter), spans started after `since`."""
    out: dict[str, set[str]] = {}
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.startswith('{"name"'):  # ConsoleSpanExporter's JSON; log lines are skipped
                    continue
                try:
                    span = json.loads(line)
                    started = datetime.fromisoformat(span["start_time"].replace("Z", "+00:00"))
                    trace_id = span["context"]["trace_id"]
                    service = span["resource"]["attributes"].get("service.name") or path.stem
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a partly written last line, or not a span
                if started >= since:
                    out.setdefault(trace_id, set()).add(service)
    return out


# --- Kafka helpers -----------------------------------------------------------------------------


def kafka_answers(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:  # a closed port first, quietly: librdkafka would log every refused connection
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=2).close()
    except (OSError, ValueError):
        return False
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=3)
        return True
    except KafkaException:
        return False


def latest_tick(bootstrap: str) -> datetime | None:
    """The time of the last ClockAdvanced on the clock topic (ticks never go backwards)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"mesh-demo-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        topic = consumer.list_topics(CLOCK.name, timeout=10).topics.get(CLOCK.name)
        if topic is None or topic.error is not None:
            return None
        latest: datetime | None = None
        for p in topic.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(CLOCK.name, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(CLOCK.name, p, max(low, high - 20))])
            deadline = time.monotonic() + 10
            seen = 0
            while seen < min(20, high - low) and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                seen += 1
                try:
                    event = decode(msg.value(), msg.headers()).event
                except DecodeError:
                    continue
                if isinstance(event, ClockAdvanced) and (latest is None or event.now > latest):
                    latest = event.now
        return latest
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mesh-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("MESH_DEMO_TIMEOUT", "45")),
                        help="seconds to wait for each expected outcome")
    args = parser.parse_args(argv)
    os.environ.setdefault("KAFKA_BOOTSTRAP_SERVERS", args.bootstrap)
    return Demo(bootstrap=args.bootstrap, timeout=args.timeout).run_story()


if __name__ == "__main__":
    sys.exit(main())
