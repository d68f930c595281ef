"""The checker: after the faults stop and the mesh is quiet, read the history and say what broke.

Each check adds counts (inputs, effects) and violations (lost, duplicated, divergent, other). An effect is
"duplicated" when one logical effect has several distinct ce_ids (a re-sent record with the same ce_id is
at-least-once delivery, which consumers drop, and is only counted as `redelivered`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx
import psycopg

from contract_schema.alert import Alert, NotificationRecorded
from contract_schema.contract import ContractSnapshot
from contract_schema.invoice import InvoiceReceived, InvoiceValidated
from contract_schema.obligation import (
    ObligationCompleted,
    ObligationDueSoon,
    ObligationEscalated,
    ObligationOverdue,
    ReleaseMilestoneBilling,
    SlaBreached,
)
from contract_schema.renewal import RenewalOpportunity

from .flood import Flood
from .harness import Mesh
from .history import History, Seen
from .nemesis import Fault
from .workload import Workload

EFFECT_TOPICS = {
    "invoice-validator": "ap.invoice.validated.v1", "contract-registry": "clm.contract.state.v1",
    "obligation-engine": "clm.obligation.events.v1", "renewal-sync": "crm.renewal.opportunity.v1",
    "notifier": "clm.notification.v1",
}
STAGE_DAYS = {"120d": 120, "90d": 90, "60d": 60, "30d": 30}


@dataclass
class Violation:
    check: str
    kind: str  # lost | duplicated | divergent | broken
    detail: str


@dataclass
class Report:
    inputs: Counter[str] = field(default_factory=Counter)
    latency: dict[str, Any] = field(default_factory=dict)
    effects: Counter[str] = field(default_factory=Counter)
    redelivered: Counter[str] = field(default_factory=Counter)
    dlq: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    recovery: list[dict[str, Any]] = field(default_factory=list)
    connections: dict[str, list[int]] = field(default_factory=dict)  # process -> broker-side ports it talks to

    def add(self, check: str, kind: str, detail: str) -> None:
        self.violations.append(Violation(check, kind, detail))

    def count(self, kind: str, check: str | None = None) -> int:
        return sum(1 for v in self.violations if v.kind == kind and (check is None or v.check == check))


def _distinct(records: list[Seen]) -> tuple[set[str], int]:
    """(distinct ce_ids, records beyond the first of each ce_id)."""
    ids = [r.ce_id or f"{r.topic}:{r.partition}:{r.offset}" for r in records]
    return set(ids), len(ids) - len(set(ids))


def same_verdict(a: InvoiceValidated, b: InvoiceValidated) -> bool:
    def shape(v: InvoiceValidated) -> tuple[Any, ...]:
        return (v.status.value, tuple(sorted(v.reason_codes)),
                tuple((ln.line_no, ln.status.value, tuple(sorted(ln.reason_codes))) for ln in v.lines))

    return shape(a) == shape(b)


class Checker:
    def __init__(self, mesh: Mesh, history: History, workload: Workload, faults: list[Fault],
                 flood: Flood | None = None) -> None:
        self.mesh, self.h, self.w, self.faults, self.fl = mesh, history, workload, faults, flood
        self.r = Report()

    def run(self) -> Report:
        for check in (self.verdicts, self.registry, self.obligations, self.renewals, self.notifications,
                      self.dead_letters, self.recovery, self.flood):
            try:
                check()
            except Exception as exc:  # a check that cannot run is itself a failure, named
                self.r.add(check.__name__, "broken", f"{type(exc).__name__}: {exc}")
        for op in self.w.sent:
            self.r.inputs[op.op] += 1
        for topic in EFFECT_TOPICS.values():
            self.r.effects[topic] = len(self.h.on(topic))
        return self.r

    # -- one verdict per invoice, the reference's verdict --

    def verdicts(self) -> None:
        from invoice_validator.domain.model import BillingState, ObligationView
        from invoice_validator.domain.validate import validate_invoice

        received: dict[str, InvoiceReceived] = {}
        for s in self.h.on("ap.invoice.received.v1"):
            if isinstance(s.event, InvoiceReceived):
                received.setdefault(s.event.invoice_id, s.event)
        by_invoice: dict[str, list[Seen]] = defaultdict(list)
        for s in self.h.on("ap.invoice.validated.v1"):
            if isinstance(s.event, InvoiceValidated):
                by_invoice[s.event.invoice_id].append(s)
        dlq_values = [s for s in self.h.on("ap.invoice.received.v1.dlq")]
        snapshots: dict[str, list[tuple[float, ContractSnapshot]]] = defaultdict(list)
        for s in self.h.on("clm.contract.state.v1"):
            if isinstance(s.event, ContractSnapshot):
                snapshots[s.event.contract_id].append((s.at, s.event))
        seen: dict[str, str] = {}
        billing: dict[str, BillingState] = defaultdict(BillingState)
        for invoice_id, sent in sorted(self.w.invoices.items(), key=lambda kv: kv[1]["seq"]):
            inv = received.get(invoice_id)
            if inv is None:
                self.r.add("verdicts", "lost", f"invoice {invoice_id} ({sent['via']}) accepted but never on "
                                              "ap.invoice.received.v1")
                continue
            records = by_invoice.get(invoice_id, [])
            ids, again = _distinct(records)
            self.r.redelivered["ap.invoice.validated.v1"] += again
            snapshot: ContractSnapshot | None = sent.get("snapshot")
            if not ids:
                in_dlq = [d for d in dlq_values if invoice_id.encode() in _raw(d)]
                what = "in the DLQ: " + (in_dlq[0].headers.get("dlq_reason", "no reason")) if in_dlq else "nowhere"
                self.r.add("verdicts", "lost", f"invoice {invoice_id} ({sent['via']}) has no verdict ({what})")
            if len(ids) > 1:
                self.r.add("verdicts", "duplicated", f"invoice {invoice_id}: {len(ids)} verdict ce_ids")
            if snapshot is None:
                continue
            # The reference: the contract state the invoice was sent after (the validator's state fence
            # guarantees at least that one). A later change published before the verdict was read (an
            # amendment, a termination, a completed milestone) may have reached the validator first: the
            # invoice raced it, and deciding with the newer state is right too. One of those verdicts,
            # never another.
            decided_at = records[0].at if records else float("inf")
            sent_state = (snapshot.current.version, snapshot.updated_at)
            candidates = [snapshot] + [x for at, x in snapshots.get(snapshot.contract_id, [])
                                       if at <= decided_at and (x.current.version, x.updated_at) > sent_state]
            key = f"{inv.tenant_id}|{inv.vendor_id}|{inv.invoice_number}"
            first = seen.get(key)
            outcomes = []
            for candidate in candidates:
                done = frozenset(s.obligation_id for s in candidate.obligation_states if s.status == "completed")
                outcomes.append(validate_invoice(inv, candidate, obligations=ObligationView(done),
                                                 billing=billing[snapshot.contract_id],
                                                 duplicate_of=first if first not in (None, invoice_id) else None,
                                                 now=inv.received_at))
            seen.setdefault(key, invoice_id)
            got = records[0].event if records else None
            chosen = next((o for o in outcomes if isinstance(got, InvoiceValidated) and same_verdict(got, o.verdict)),
                          outcomes[0])
            billing[snapshot.contract_id] = chosen.billing
            expected = chosen.verdict
            if isinstance(got, InvoiceValidated) and not same_verdict(got, expected):
                self.r.add("verdicts", "divergent",
                           f"invoice {invoice_id} ({sent['via']}, contract {got.contract_id} v{got.contract_version}):"
                           f" got {got.status.value} {sorted(got.reason_codes)}, reference {expected.status.value} "
                           f"{sorted(expected.reason_codes)} (v{snapshot.current.version}"
                           f"{f', or {len(candidates) - 1} later states' if len(candidates) > 1 else ''})")
            if len({(r.event.status.value if isinstance(r.event, InvoiceValidated) else None) for r in records}) > 1:
                self.r.add("verdicts", "divergent", f"invoice {invoice_id}: verdict records disagree")

    # -- every committed change on clm.contract.events.v1 once, in order; compacted state = database --

    def registry(self) -> None:
        with psycopg.connect(self.mesh.database_url, connect_timeout=10) as conn:
            outbox = conn.execute("select id::text, aggregate_id, seq, published_at is not null from outbox "
                                  "where topic = 'clm.contract.events.v1' order by seq").fetchall()
            contracts = conn.execute("select id, status, current_version from contracts").fetchall()
        on_topic: dict[str, list[Seen]] = defaultdict(list)
        for s in self.h.on("clm.contract.events.v1"):
            on_topic[s.ce_id or ""].append(s)
        self.r.redelivered["clm.contract.events.v1"] += sum(len(v) - 1 for v in on_topic.values())
        order: dict[str, list[tuple[int, int]]] = defaultdict(list)  # contract -> (outbox seq, first offset)
        for ce_id, contract_id, seq, published in outbox:
            found = on_topic.get(ce_id)
            if not found:
                self.r.add("registry", "lost", f"outbox change {ce_id} of {contract_id} (seq {seq}, published "
                                              f"{published}) not on clm.contract.events.v1")
                continue
            order[contract_id].append((seq, min(f.offset for f in found)))
        for contract_id, pairs in order.items():
            offsets = [o for _, o in sorted(pairs)]
            if offsets != sorted(offsets):
                self.r.add("registry", "divergent", f"{contract_id}: changes on the topic out of commit order")
        latest: dict[str, ContractSnapshot] = {}
        for s in self.h.on("clm.contract.state.v1"):
            if isinstance(s.event, ContractSnapshot):
                latest[s.event.contract_id] = s.event  # one partition per key: offset order
        for contract_id, status, version in contracts:
            snap = latest.get(contract_id)
            if snap is None or snap.current.version != version or snap.status.value != status:
                got = f"v{snap.current.version} {snap.status.value}" if snap else "none"
                self.r.add("registry", "lost", f"{contract_id}: database v{version} {status}, state topic {got}")

    # -- obligation transitions, completions, releases, SLA breaches once --

    def obligations(self) -> None:
        records = self.h.on("clm.obligation.events.v1")
        groups: dict[tuple[str, ...], list[Seen]] = defaultdict(list)
        for s in records:
            e = s.event
            if isinstance(e, (ObligationDueSoon, ObligationOverdue, ObligationEscalated, ObligationCompleted)):
                groups[(type(e).__name__, e.contract_id, e.instance_id)].append(s)
            elif isinstance(e, SlaBreached):
                groups[("SlaBreached", e.contract_id, e.window_start.date().isoformat())].append(s)
        for key, group in groups.items():
            ids, again = _distinct(group)
            self.r.redelivered["clm.obligation.events.v1"] += again
            if len(ids) > 1:
                self.r.add("obligations", "duplicated", f"{key[0]} {key[1]}/{key[2]}: {len(ids)} distinct ce_ids")
        completed = {(k[1], s.event.obligation_id) for k, g in groups.items() if k[0] == "ObligationCompleted"
                     for s in g if isinstance(s.event, ObligationCompleted)}
        overdue = {(k[1], s.event.obligation_id) for k, g in groups.items() if k[0] == "ObligationOverdue"
                   for s in g if isinstance(s.event, ObligationOverdue)}
        breached = {(k[1], k[2]) for k in groups if k[0] == "SlaBreached"}
        for op in self.w.sent:
            if op.op == "milestone-completed" and op.data["first"]:
                if (op.data["contract_id"], op.data["obligation_id"]) not in completed:
                    self.r.add("obligations", "lost", f"completion of {op.data['contract_id']}/"
                                                      f"{op.data['obligation_id']} ({op.data['side']}) never published")
        today = self.w.today
        for c in self.w.contracts:
            if c.kind == "services":
                for ob in c.body["terms"].get("obligations", []):
                    due = date.fromisoformat(ob["due_date"])
                    if (ob["obligation_id"] not in c.completed and due <= today - timedelta(days=2)
                            and c.status == "active" and (c.contract_id, ob["obligation_id"]) not in overdue):
                        self.r.add("obligations", "lost", f"{c.contract_id}/{ob['obligation_id']} due {due}, "
                                                          f"not completed, no ObligationOverdue by {today}")
            for window, value in c.sla_windows.items():
                if float(value) < 99.9 and (c.contract_id, window) not in breached:
                    self.r.add("obligations", "lost",
                               f"SLA {c.contract_id} window {window} at {value}%: no SlaBreached")
        releases: dict[tuple[str, str], list[Seen]] = defaultdict(list)
        for s in self.h.on("erp.milestone.commands.v1"):
            if isinstance(s.event, ReleaseMilestoneBilling):
                releases[(s.event.contract_id, s.event.obligation_id)].append(s)
        for key, group in releases.items():
            ids, again = _distinct(group)
            self.r.redelivered["erp.milestone.commands.v1"] += again
            if len(ids) > 1:
                self.r.add("obligations", "duplicated", f"ReleaseMilestoneBilling {key}: {len(ids)} ce_ids")
        calls = httpx.get(self.mesh.url("erp-simulator") + "/received", params={"kind": "milestone-release"},
                          timeout=30).json()
        at_erp: dict[tuple[str, str], set[str]] = defaultdict(set)
        for call in calls:
            if call["accepted"]:
                b = call["body"]
                at_erp[(b["contract_id"], b["obligation_id"])].add(call["headers"].get("idempotency-key")
                                                                   or str(call["seq"]))
        dlq = self.h.on("erp.performance.v1.dlq")
        for key in releases:
            if key not in at_erp:
                why = next((d.dlq_reason for d in dlq if d.key == key[0] and f"'{key[1]}'" in (d.dlq_reason or "")),
                           None)
                self.r.add("obligations", "lost", f"release of {key} never accepted by the ERP"
                           + (f" (dead-lettered: {why[:200]})" if why else ""))
            elif len(at_erp[key]) > 1:
                self.r.add("obligations", "duplicated", f"release of {key}: {len(at_erp[key])} distinct ERP calls")
        self.r.effects["erp milestone releases"] = sum(len(v) for v in at_erp.values())

    # -- renewal stages once, one CRM opportunity per contract with the latest stage --

    def renewals(self) -> None:
        by_contract: dict[str, list[Seen]] = defaultdict(list)
        for s in self.h.on("crm.renewal.opportunity.v1"):
            if isinstance(s.event, RenewalOpportunity):
                by_contract[s.event.contract_id].append(s)
        opps = httpx.get(self.mesh.url("crm-simulator") + "/opportunities", timeout=30).json()
        at_crm: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for o in opps:
            at_crm[o["external_id"]].append(o)
        clocks = sorted({date.fromisoformat(op.data["now"][:10]) for op in self.w.sent if op.op == "clock"})
        latest: dict[str, ContractSnapshot] = {}
        for s in self.h.on("clm.contract.state.v1"):
            if isinstance(s.event, ContractSnapshot):
                latest[s.event.contract_id] = s.event  # one partition per key: offset order
        for c in self.w.contracts:
            if c.kind != "renewal":
                continue
            group = by_contract.get(c.contract_id, [])
            content: dict[str, set[str]] = defaultdict(set)
            for s in group:
                assert isinstance(s.event, RenewalOpportunity)
                body = s.event.model_dump(mode="json", exclude={"updated_at", "sla_record"})
                content[repr(sorted(body.items()))].add(s.ce_id or "")
            dup = [ids for ids in content.values() if len(ids) > 1]
            if dup:
                self.r.add("renewals", "duplicated", f"{c.contract_id}: the same opportunity state under "
                                                      f"{max(len(d) for d in dup)} ce_ids")
            snap = latest.get(c.contract_id)
            ends = sorted({v.end_date for v in snap.versions if v.end_date is not None} if snap else set())
            due = owed_stages(c.body["terms"]["notice_period_days"],
                                  ends or [date.fromisoformat(c.body["terms"]["end_date"])], clocks)
            stages = [s.event.stage.value for s in group if isinstance(s.event, RenewalOpportunity)]
            if due and not stages:
                self.r.add("renewals", "lost", f"{c.contract_id}: stages {due} due by {self.w.today}, none published")
                continue
            if not stages:
                continue
            crm = at_crm.get(c.contract_id, [])
            if len(crm) != 1:
                self.r.add("renewals", "duplicated" if len(crm) > 1 else "lost",
                           f"{c.contract_id}: {len(crm)} CRM opportunities")
                continue
            if crm[0]["fields"].get("Renewal_Stage__c") != stages[-1]:
                self.r.add("renewals", "lost", f"{c.contract_id}: CRM stage {crm[0]['fields'].get('Renewal_Stage__c')}"
                                               f", last published {stages[-1]}")
            missing = [st for st in due if st not in stages]
            if missing:
                self.r.add("renewals", "lost", f"{c.contract_id}: stage(s) {missing} due by {self.w.today}, "
                                               f"published {sorted(set(stages))}")
        self.r.effects["crm opportunities"] = len(opps)

    # -- at most one e-mail per (alert, recipient, kind); every red alert handled --

    def notifications(self) -> None:
        mails = httpx.get(self.mesh.url("smtp-catcher") + "/messages", timeout=30).json()
        per: Counter[tuple[str, str]] = Counter()
        for m in mails:
            for rcpt in m.get("rcpt_tos", []):
                per[(m.get("message_id", ""), rcpt.lower())] += 1
        for (mid, rcpt), n in per.items():
            if n > 1:
                self.r.add("notifications", "duplicated", f"e-mail {mid} to {rcpt} delivered {n} times")
        self.r.effects["e-mails"] = len(mails)
        for a in unhandled_red_alerts(self.h):
            self.r.add("notifications", "lost", f"red alert {a.alert_id} ({a.alert_type}) neither "
                                                "delivered/recorded nor in the DLQ")

    def dead_letters(self) -> None:
        for topic in {s.topic for s in self.h.records if s.topic.endswith(".dlq")}:
            for s in self.h.on(topic):
                self.r.dlq[topic] += 1
                if not s.headers.get("dlq_reason"):
                    self.r.add("dead-letters", "broken", f"{topic} offset {s.offset} has no dlq_reason")

    # -- recovery: from the end of a fault to the first new effect --

    def recovery(self) -> None:
        for f in self.faults:
            if f.ended is None:
                continue
            service = f.target.split("#")[0]
            topics = [EFFECT_TOPICS[service]] if service in EFFECT_TOPICS else list(EFFECT_TOPICS.values())
            after = [s.at for t in topics for s in self.h.on(t) if s.at >= f.ended]
            first = min(after) if after else None
            self.r.recovery.append({"kind": f.kind, "target": f.target, "error": f.error, **f.detail,
                                    "recovery_seconds": None if first is None else round(first - f.ended, 2)})


    # -- malformed flood: every record in its DLQ with a reason; valid traffic as fast as before --

    def flood(self) -> None:
        if self.fl is None:
            return
        self.r.inputs["malformed records"] = len(self.fl.sent)
        for topic, key in self.fl.sent:
            if not any(d.key == key and d.dlq_reason for d in self.h.on(topic + ".dlq")):
                self.r.add("flood", "lost", f"malformed {key} on {topic}: not in {topic}.dlq with a reason")
        first: dict[str, float] = {}
        for s in self.h.on("ap.invoice.validated.v1"):
            if isinstance(s.event, InvoiceValidated):
                first.setdefault(s.event.invoice_id, s.at)
        clean: list[float] = []
        flooded: list[float] = []
        for op in self.w.sent:
            if op.op == "invoice" and not op.data["repost"] and op.data["invoice_id"] in first:
                latency = first[op.data["invoice_id"]] - op.at
                (flooded if self.fl.started <= op.at <= (self.fl.ended or op.at) else clean).append(latency)
        self.r.latency = {"clean_p99_s": p99(clean), "flooded_p99_s": p99(flooded), "clean_n": len(clean),
                          "flooded_n": len(flooded)}
        a, b = self.r.latency["clean_p99_s"], self.r.latency["flooded_p99_s"]
        if a is not None and b is not None and len(clean) >= 10 and len(flooded) >= 10 and b > 2 * max(a, 0.05):
            self.r.add("flood", "broken", f"verdict p99 {b:.2f} s under the flood vs {a:.2f} s clean (> 2x)")


def owed_stages(notice: int, ends: list[date], clocks: list[date]) -> list[str]:
    """The stages that must have been published, for a contract whose terms end on `ends` (the end
    date of each version on the state topic: the first term, then each renewal): per term, the latest
    stage due at the last clock value of that term. renewal-sync announces only the latest due stage
    at each tick (earlier ones it passes over count as passed), so after a clock leap over several
    stages only the last of them is owed. A tick that crosses an end date renews (or expires) the
    contract in the registry; whether that term's end-date stage is announced first depends on which
    record renewal-sync reads first, so a term is judged at its last tick on or before its end date,
    and its end-date stage is never owed."""
    owed: list[str] = []
    start: date | None = None
    for end in ends:
        in_term = [t for t in clocks if (start is None or t > start) and t <= end]
        if in_term:
            deadline = end - timedelta(days=notice)
            points = [(st, deadline - timedelta(days=n)) for st, n in STAGE_DAYS.items()]
            points.append(("notice-deadline", deadline))
            due = [st for st, on in points if in_term[-1] > on]  # a day of slack, as before
            if due:
                owed.append(due[-1])
        start = end
    return owed


def unhandled_red_alerts(history: History) -> list[Alert]:
    """Red alerts on the topic with neither a notification record nor a dead letter with its reason."""
    handled = {s.event.alert_id for s in history.on("clm.notification.v1") if isinstance(s.event, NotificationRecorded)}
    dlq = history.on("clm.alert.v1.dlq")
    return [s.event for s in history.on("clm.alert.v1")
            if isinstance(s.event, Alert) and s.event.tier.value == "red" and s.event.alert_id not in handled
            and not any(s.event.alert_id.encode() in _raw(d) and d.headers.get("dlq_reason") for d in dlq)]


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3)


def _raw(s: Seen) -> bytes:
    return s.raw + (s.key or "").encode()
