"""Renewal stages once, every stage owed published, one CRM opportunity per contract at the latest stage."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

import httpx

from contract_schema.contract import ContractSnapshot
from contract_schema.renewal import RenewalOpportunity

from ..harness import Mesh
from ..history import History, Seen
from ..workload import Workload
from .report import Report

STAGE_DAYS = {"120d": 120, "90d": 90, "60d": 60, "30d": 30}


def renewals(r: Report, h: History, w: Workload, mesh: Mesh) -> None:
    by_contract: dict[str, list[Seen]] = defaultdict(list)
    for s in h.on("crm.renewal.opportunity.v1"):
        if isinstance(s.event, RenewalOpportunity):
            by_contract[s.event.contract_id].append(s)
    opps = httpx.get(mesh.url("crm-simulator") + "/opportunities", timeout=30).json()
    at_crm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in opps:
        at_crm[o["external_id"]].append(o)
    clocks = sorted({date.fromisoformat(op.data["now"][:10]) for op in w.sent if op.op == "clock"})
    latest: dict[str, ContractSnapshot] = {}
    for s in h.on("clm.contract.state.v1"):
        if isinstance(s.event, ContractSnapshot):
            latest[s.event.contract_id] = s.event  # one partition per key: offset order
    for c in w.contracts:
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
            r.add("renewals", "duplicated", f"{c.contract_id}: the same opportunity state under "
                                             f"{max(len(d) for d in dup)} ce_ids")
        snap = latest.get(c.contract_id)
        ends = sorted({v.end_date for v in snap.versions if v.end_date is not None} if snap else set())
        due = owed_stages(c.body["terms"]["notice_period_days"],
                              ends or [date.fromisoformat(c.body["terms"]["end_date"])], clocks)
        stages = [s.event.stage.value for s in group if isinstance(s.event, RenewalOpportunity)]
        if due and not stages:
            r.add("renewals", "lost", f"{c.contract_id}: stages {due} due by {w.today}, none published")
            continue
        if not stages:
            continue
        crm = at_crm.get(c.contract_id, [])
        if len(crm) != 1:
            r.add("renewals", "duplicated" if len(crm) > 1 else "lost",
                  f"{c.contract_id}: {len(crm)} CRM opportunities")
            continue
        if crm[0]["fields"].get("Renewal_Stage__c") != stages[-1]:
            r.add("renewals", "lost", f"{c.contract_id}: CRM stage {crm[0]['fields'].get('Renewal_Stage__c')}"
                                      f", last published {stages[-1]}")
        missing = [st for st in due if st not in stages]
        if missing:
            r.add("renewals", "lost", f"{c.contract_id}: stage(s) {missing} due by {w.today}, "
                                      f"published {sorted(set(stages))}")
    r.effects["crm opportunities"] = len(opps)


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
