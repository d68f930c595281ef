"""Chapter 5: tiered alerts by e-mail, and a CRM decision that stops an escalation (the control invoice
comes from the invoices chapter)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from contract_schema.alert import Alert
from contract_schema.renewal import RenewalDecision

from .data import consulting_line
from .invoices import Invoices
from .outcomes import StepFailed, poll
from .output import note
from .stack import url_of
from .story import TENANT, Contract


class Alerts(Invoices):
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
