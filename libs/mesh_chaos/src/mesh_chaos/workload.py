"""The seeded workload: what a tenant's ERP, AP, CRM and contract owners do, through the public interfaces.

Every choice comes from `random.Random(seed)`, so a seed names one sequence of operations. Operations run
one at a time; each is retried until the mesh accepts it (a fault may be in the way), and an invoice is
sent only once the contract version it targets is on clm.contract.state.v1, so its verdict is decidable.
Everything sent is kept in `self.sent` for the checker.

The transport (retries, the producer, the registry's API) is `client.MeshClient`, the tenant's model is
`tenant`, the clock leap handshake with the nemesis is `leap`.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from contract_schema.alert import ClockAdvanced
from contract_schema.invoice import InvoiceReceived, InvoiceValidated
from contract_schema.obligation import MilestoneCompleted, SlaMeasurement

from .bodies import contract_body
from .client import TENANT, GaveUp, MeshClient
from .harness import Mesh
from .history import History
from .leap import LeapRequests
from .tenant import ContractModel, Sent

__all__ = ["START", "TENANT", "ContractModel", "GaveUp", "Sent", "Workload"]

log = logging.getLogger("mesh_chaos.workload")
START = date(2031, 1, 6)


class Workload(MeshClient):
    def __init__(self, mesh: Mesh, history: History, seed: int, patience: float = 120.0) -> None:
        super().__init__(mesh, history, patience)
        self.seed = seed
        self.rng = random.Random(seed)
        self.today = START
        self.contracts: list[ContractModel] = []
        self.sent: list[Sent] = []
        self.invoices: dict[str, dict[str, Any]] = {}  # invoice id -> what was sent, and the snapshot version
        self.stalls: list[str] = []
        self.leaps: list[tuple[date, date]] = []  # (from, to) of each clock leap
        self.leap_requests = LeapRequests()

    def record(self, op: str, **data: Any) -> None:
        self.sent.append(Sent(op, time.monotonic(), data))

    def now(self) -> datetime:
        return datetime.combine(self.today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)

    # -- the operations --

    def step(self) -> str:
        if (leapt := self.apply_leap()) is not None:
            return leapt
        live = [c for c in self.contracts if c.status == "active"]
        services = [c for c in live if c.kind == "services"]
        choices: list[tuple[float, Callable[[], str]]] = [
            (12 if len(self.contracts) < 4 else 6, self.create_contract),
            (40 if services else 0, lambda: self.invoice(self.rng.choice(services))),
            (5 if services else 0, lambda: self.duplicate(self.rng.choice(services))),
            (5 if self.invoices else 0, self.repost),
            (4 if services else 0, lambda: self.amend(self.rng.choice(services))),
            (1 if len(services) > 3 else 0, lambda: self.terminate(self.rng.choice(services))),
            (4 if services else 0, lambda: self.erp_completes(self.rng.choice(services))),
            (3 if services else 0, lambda: self.registry_completes(self.rng.choice(services))),
            (4 if any(c.kind == "sla" for c in live) else 0,
             lambda: self.sla_measurement(self.rng.choice([c for c in live if c.kind == "sla"]))),
            (10, self.advance_clock),
        ]
        weights = [w for w, _ in choices]
        action = self.rng.choices([a for _, a in choices], weights=weights)[0]
        return action()

    def set_clock(self) -> None:
        self.produce(ClockAdvanced(now=self.now()), event_id=f"chaos-{self.seed}-clock-{self.today}")
        self.record("clock", now=self.now().isoformat())

    def advance_clock(self, days: int | None = None) -> str:
        # Only once every invoice sent so far has its verdict: the clock must not expire an invoice the
        # validator parked because it is behind (a fault-free run would not see that either).
        # Bounded: an invoice the validator never decides is the checker's finding, not a reason to stop time.
        deadline = time.monotonic() + 30
        while self.pending_verdicts() and time.monotonic() < deadline:
            time.sleep(0.2)  # poll interval
        self.today += timedelta(days=days if days is not None else self.rng.randint(1, 4))
        self.set_clock()
        return f"clock -> {self.today}"

    # -- the clock leap (the nemesis asks, the workload's own thread does it between two operations) --

    def request_leap(self, days: int, timeout: float = 180) -> str | None:
        """Called by the nemesis: move the clock `days` ahead at the next step; the new date, or None."""
        return self.leap_requests.request(days, timeout)

    def apply_leap(self, last: bool = False) -> str | None:
        """Run a requested leap now: the workload loop calls this before each step, and with `last` once after
        its last step (a leap asked for later is refused)."""
        request = self.leap_requests.take(last)
        if request is None:
            return None
        days, done, out = request
        before = self.today
        try:
            what = self.advance_clock(days)
            self.leaps.append((before, self.today))
            self.record("clock-leap", days=days, before=before.isoformat(), now=self.today.isoformat())
            out.append(self.today.isoformat())
            return what + f" (leap of {days} days)"
        finally:
            done.set()

    def pending_verdicts(self) -> int:
        decided = {s.event.invoice_id for s in self.history.on("ap.invoice.validated.v1")
                   if isinstance(s.event, InvoiceValidated)}
        return len(set(self.invoices) - decided)

    def create_contract(self) -> str:
        n = len(self.contracts) + 1
        kind = self.rng.choices(["services", "renewal", "sla"], weights=[3, 2, 1])[0]
        tag = f"{self.seed}-{n}"
        price = Decimal(self.rng.choice(["100.00", "120.00", "150.00", "180.00"]))
        vendor = f"ERP-{tag}"
        owner = f"owner.{tag}@chaos.example.com"
        body = contract_body(kind, tag, n, self.today, price, vendor, owner, self.rng)

        def create() -> httpx.Response | None:
            r = self.registry("POST", "/v1/contracts", json=body, headers={"Idempotency-Key": f"chaos-{tag}"})
            if r.status_code == 201:
                return r
            if r.status_code < 500:
                raise GaveUp(f"create {tag}: {r.status_code} {r.text[:300]}")
            return None

        resp = self.retry(f"create contract {tag}", create)
        c = ContractModel(n, kind, resp.json()["contract_id"], vendor, self.rng.random() < 0.3, owner, price,
                          etag=resp.headers["etag"], body=body)
        self.contracts.append(c)
        self.record("contract-created", contract_id=c.contract_id, kind=kind)
        self.change(c, "activate", f"/v1/contracts/{c.contract_id}/activate", None, expect_status="active")
        return f"contract {c.contract_id} ({kind}) active"

    def change(self, c: ContractModel, what: str, path: str, body: dict[str, Any] | None,
               expect_status: str | None = None) -> None:
        """A change with If-Match (the ETag is the terms version; only an amendment makes a new one). A retry
        after a lost answer finds the change committed (409/412) and reads the contract to confirm it."""
        want = c.version + 1 if what == "amend" else c.version

        def committed(view: dict[str, Any]) -> bool:
            versions = [v.get("version", 0) for v in view.get("versions", [])] or [0]
            return max(versions) >= want and (expect_status is None or view.get("status") == expect_status)

        def attempt() -> bool | None:
            r = self.registry("POST", path, json=body, headers={"If-Match": c.etag})
            if r.status_code == 200:
                c.etag = r.headers.get("etag", c.etag)
                return True
            if r.status_code in (409, 412):  # maybe our earlier attempt committed: look
                g = self.registry("GET", f"/v1/contracts/{c.contract_id}")
                if g.status_code == 200 and committed(g.json()):
                    c.etag = g.headers.get("etag", c.etag)
                    return True
                raise GaveUp(f"{what} {c.contract_id}: {r.status_code} {r.text[:300]}")
            if r.status_code < 500:
                raise GaveUp(f"{what} {c.contract_id}: {r.status_code} {r.text[:300]}")
            return None

        self.retry(f"{what} {c.contract_id}", attempt)
        c.version = want
        if expect_status:
            c.status = expect_status
        self.record("contract-changed", contract_id=c.contract_id, change=what, version=want)
        self.wait_snapshot(c, expect_status)

    def amend(self, c: ContractModel) -> str:
        c.price = Decimal(self.rng.choice(["90.00", "110.00", "130.00", "160.00", "200.00"]))
        terms = dict(c.body["terms"])
        if self.rng.random() < 0.3:
            terms["end_date"] = (date.fromisoformat(terms["end_date"]) + timedelta(days=30)).isoformat()
        terms["rate_card"] = [{**terms["rate_card"][0], "unit_price": str(c.price), "valid_to": terms["end_date"]}]
        c.body["terms"] = terms
        body = {"effective_from": self.today.isoformat(), "reason": f"chaos amendment {c.version + 1}", "terms": terms}
        self.change(c, "amend", f"/v1/contracts/{c.contract_id}/amendments", body)
        return f"amended {c.contract_id} to v{c.version} (price {c.price})"

    def terminate(self, c: ContractModel) -> str:
        self.change(c, "terminate", f"/v1/contracts/{c.contract_id}/terminate",
                    {"terminated_on": self.today.isoformat(), "reason": "chaos"}, expect_status="terminated")
        return f"terminated {c.contract_id}"

    def _lines(self, c: ContractModel) -> list[dict[str, Any]]:
        lines = []
        for i in range(1, self.rng.randint(1, 4) + 1):
            hours = self.rng.randint(1, 12)
            price = c.price if self.rng.random() < 0.75 else c.price + Decimal(self.rng.choice(["10.00", "25.00"]))
            lines.append({"line_no": i, "item_code": "CONSULT", "description": "Consultant", "quantity": str(hours),
                          "unit": "HUR", "unit_price": str(price), "amount": str(price * hours),
                          "service_date": (self.today - timedelta(days=self.rng.randint(0, 3))).isoformat()})
        return lines

    def invoice(self, c: ContractModel, number: str | None = None) -> str:
        self.wait_snapshot(c)
        number = number or f"INV{c.n:03d}{len(c.invoices) + 1:05d}"
        c.invoices.append(number)
        invoice_id = f"chaos-{self.seed}-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]}"
        body: dict[str, Any] = {"invoice_id": invoice_id, "tenant_id": TENANT, "vendor_id": c.vendor,
                                "invoice_number": number, "issue_date": self.today.isoformat(), "currency": "EUR",
                                "payment_terms_days": 30, "lines": self._lines(c)}
        if not c.by_vendor:
            body["contract_ref"] = c.contract_id
        via = self.rng.choices(["kafka", "http-json", "http-ubl"], weights=[2, 1, 1])[0]
        return self.send_invoice(c, body, via)

    def send_invoice(self, c: ContractModel, body: dict[str, Any], via: str, repost: bool = False) -> str:
        invoice_id = body["invoice_id"]
        if via == "kafka":
            event = InvoiceReceived.model_validate({**body, "received_at": self.now().isoformat()})
            self.produce(event, event_id=f"ce-{invoice_id}")
        else:
            if via == "http-ubl":
                from invoice_validator.samples import ubl_invoice

                inv = InvoiceReceived.model_validate({**body, "received_at": self.now().isoformat()})
                content, ctype = ubl_invoice(inv), "application/xml"
            else:
                content, ctype = json.dumps({k: v for k, v in body.items() if k != "tenant_id"}).encode(), \
                    "application/json"

            def post() -> str | None:
                r = self.http.post(self.mesh.url("invoice-validator") + "/v1/invoices", content=content,
                                   headers={"Authorization": f"Bearer {self.token}", "content-type": ctype})
                if r.status_code == 202:
                    return str(r.json()["invoice_id"])
                if r.status_code < 500 and r.status_code != 429:
                    raise GaveUp(f"invoice {invoice_id} via {via}: {r.status_code} {r.text[:300]}")
                return None

            invoice_id = self.retry(f"invoice via {via}", post)
        snap = self.snapshot(c.contract_id)
        if not repost:
            self.invoices.setdefault(invoice_id, {"contract_id": c.contract_id, "via": via, "body": body,
                                                  "version": snap.current.version if snap else None,
                                                  "snapshot": snap,
                                                  "seq": len(self.invoices)})
        self.record("invoice", invoice_id=invoice_id, contract_id=c.contract_id, via=via, repost=repost,
                    number=body["invoice_number"])
        return f"invoice {invoice_id} via {via}{' (re-post)' if repost else ''}"

    def duplicate(self, c: ContractModel) -> str:
        """The same vendor and number again, as a new document (a new invoice id): DUPLICATE_INVOICE."""
        if not c.invoices:
            return self.invoice(c)
        return self.invoice(c, number=self.rng.choice(c.invoices))

    def repost(self) -> str:
        """The very same invoice again (an AP client retrying): one verdict, the same one."""
        invoice_id = self.rng.choice(sorted(self.invoices))
        sent = self.invoices[invoice_id]
        c = next(c for c in self.contracts if c.contract_id == sent["contract_id"])
        via = "kafka" if sent["via"] == "kafka" else sent["via"]
        return self.send_invoice(c, sent["body"], via, repost=True)

    def erp_completes(self, c: ContractModel) -> str:
        obligation = self.rng.choice(["M1", "M2"])
        event = MilestoneCompleted(contract_id=c.contract_id, obligation_id=obligation, occurred_at=self.now(),
                                   completed_at=self.now(), source_system="erp-chaos",
                                   evidence_ref=f"PRJ-{c.n}-{obligation}")
        self.produce(event, event_id=f"chaos-{self.seed}-done-{c.contract_id}-{obligation}")
        first = obligation not in c.completed
        c.completed.add(obligation)
        self.record("milestone-completed", contract_id=c.contract_id, obligation_id=obligation, side="erp",
                    first=first)
        return f"ERP completes {c.contract_id}/{obligation}"

    def registry_completes(self, c: ContractModel) -> str:
        obligation = self.rng.choice(["M1", "M2"])

        def attempt() -> bool | None:
            r = self.registry("POST", f"/v1/contracts/{c.contract_id}/obligations/{obligation}/complete",
                              json={"evidence_ref": f"REG-{c.n}-{obligation}"})
            if r.status_code in (200, 202):
                return True
            if r.status_code < 500:
                raise GaveUp(f"complete {c.contract_id}/{obligation}: {r.status_code} {r.text[:300]}")
            return None

        self.retry("registry completion", attempt)
        first = obligation not in c.completed
        c.completed.add(obligation)
        self.record("milestone-completed", contract_id=c.contract_id, obligation_id=obligation, side="registry",
                    first=first)
        return f"registry completes {c.contract_id}/{obligation}"

    def sla_measurement(self, c: ContractModel) -> str:
        end = self.today.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
        window = start.isoformat()
        # The same window again is the same measurement re-sent (same id, same value).
        value = c.sla_windows.setdefault(window, self.rng.choice(["99.95", "99.50", "98.90"]))
        event = SlaMeasurement(contract_id=c.contract_id, obligation_id="S1", metric="availability",
                               window_start=datetime.combine(start, datetime.min.time(), tzinfo=UTC),
                               window_end=datetime.combine(end, datetime.min.time(), tzinfo=UTC),
                               value=Decimal(value), occurred_at=self.now(), source_system="monitoring-chaos")
        self.produce(event, event_id=f"chaos-{self.seed}-sla-{c.contract_id}-{window}")
        self.record("sla-measurement", contract_id=c.contract_id, window=window)
        return f"SLA {c.contract_id} {window} = {value}"
