"""Chapter 3: obligations: milestones completed on either side (no echo), an SLA breach with its credit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any

from contract_schema.obligation import ObligationCompleted, ReleaseMilestoneBilling, SlaBreached

from .outcomes import StepFailed, poll
from .output import note
from .stack import url_of
from .story import Story


class Obligations(Story):
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
