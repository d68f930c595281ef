"""Obligation transitions, completions, milestone releases (at the ERP too) and SLA breaches, each once;
none owed is missing."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import httpx

from contract_schema.obligation import (
    ObligationCompleted,
    ObligationDueSoon,
    ObligationEscalated,
    ObligationOverdue,
    ReleaseMilestoneBilling,
    SlaBreached,
)

from ..harness import Mesh
from ..history import History, Seen
from ..workload import Workload
from .report import Report, distinct


def obligations(r: Report, h: History, w: Workload, mesh: Mesh) -> None:
    records = h.on("clm.obligation.events.v1")
    groups: dict[tuple[str, ...], list[Seen]] = defaultdict(list)
    for s in records:
        e = s.event
        if isinstance(e, (ObligationDueSoon, ObligationOverdue, ObligationEscalated, ObligationCompleted)):
            groups[(type(e).__name__, e.contract_id, e.instance_id)].append(s)
        elif isinstance(e, SlaBreached):
            groups[("SlaBreached", e.contract_id, e.window_start.date().isoformat())].append(s)
    for key, group in groups.items():
        ids, again = distinct(group)
        r.redelivered["clm.obligation.events.v1"] += again
        if len(ids) > 1:
            r.add("obligations", "duplicated", f"{key[0]} {key[1]}/{key[2]}: {len(ids)} distinct ce_ids")
    completed = {(k[1], s.event.obligation_id) for k, g in groups.items() if k[0] == "ObligationCompleted"
                 for s in g if isinstance(s.event, ObligationCompleted)}
    overdue = {(k[1], s.event.obligation_id) for k, g in groups.items() if k[0] == "ObligationOverdue"
               for s in g if isinstance(s.event, ObligationOverdue)}
    breached = {(k[1], k[2]) for k in groups if k[0] == "SlaBreached"}
    for op in w.sent:
        if op.op == "milestone-completed" and op.data["first"]:
            if (op.data["contract_id"], op.data["obligation_id"]) not in completed:
                r.add("obligations", "lost", f"completion of {op.data['contract_id']}/"
                                             f"{op.data['obligation_id']} ({op.data['side']}) never published")
    today = w.today
    for c in w.contracts:
        if c.kind == "services":
            for ob in c.body["terms"].get("obligations", []):
                due = date.fromisoformat(ob["due_date"])
                if (ob["obligation_id"] not in c.completed and due <= today - timedelta(days=2)
                        and c.status == "active" and (c.contract_id, ob["obligation_id"]) not in overdue):
                    r.add("obligations", "lost", f"{c.contract_id}/{ob['obligation_id']} due {due}, "
                                                 f"not completed, no ObligationOverdue by {today}")
        for window, value in c.sla_windows.items():
            if float(value) < 99.9 and (c.contract_id, window) not in breached:
                r.add("obligations", "lost",
                      f"SLA {c.contract_id} window {window} at {value}%: no SlaBreached")
    releases: dict[tuple[str, str], list[Seen]] = defaultdict(list)
    for s in h.on("erp.milestone.commands.v1"):
        if isinstance(s.event, ReleaseMilestoneBilling):
            releases[(s.event.contract_id, s.event.obligation_id)].append(s)
    for key, group in releases.items():
        ids, again = distinct(group)
        r.redelivered["erp.milestone.commands.v1"] += again
        if len(ids) > 1:
            r.add("obligations", "duplicated", f"ReleaseMilestoneBilling {key}: {len(ids)} ce_ids")
    calls = httpx.get(mesh.url("erp-simulator") + "/received", params={"kind": "milestone-release"},
                      timeout=30).json()
    at_erp: dict[tuple[str, str], set[str]] = defaultdict(set)
    for call in calls:
        if call["accepted"]:
            b = call["body"]
            at_erp[(b["contract_id"], b["obligation_id"])].add(call["headers"].get("idempotency-key")
                                                               or str(call["seq"]))
    dlq = h.on("erp.performance.v1.dlq")
    for key in releases:
        if key not in at_erp:
            why = next((d.dlq_reason for d in dlq if d.key == key[0] and f"'{key[1]}'" in (d.dlq_reason or "")),
                       None)
            r.add("obligations", "lost", f"release of {key} never accepted by the ERP"
                  + (f" (dead-lettered: {why[:200]})" if why else ""))
        elif len(at_erp[key]) > 1:
            r.add("obligations", "duplicated", f"release of {key}: {len(at_erp[key])} distinct ERP calls")
    r.effects["erp milestone releases"] = sum(len(v) for v in at_erp.values())
