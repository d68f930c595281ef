"""What every chapter of the story shares: the run's contracts, clock, topic watcher and service calls, and
the framework a step runs in (`Story`, which each chapter extends)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

import httpx

from contract_schema.alert import ClockAdvanced
from contract_schema.base import Event
from contract_schema.topics import CLOCK
from mesh_common.auth import AuthSettings, issue_token

from ..kafka_out import EventSender
from .outcomes import Outcome, ServiceMissing, StepFailed
from .output import note, say, styled
from .stack import url_of
from .watcher import TopicWatcher

TENANT = "demo"


@dataclass
class Contract:
    role: str  # "milestone", "sla", "auto-renew"
    contract_id: str
    vendor_id: str
    owner: str
    backup: str


@dataclass
class Story:
    """One run of the story: its contracts, invoices and clock, and the framework every step runs in."""

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
        say(styled("1", f"▶ {name}"))
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
        mark = styled("32", "OK") if ok else styled("31", "FAIL")
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
