"""Chapter 2: invoices from the ERP, their verdicts, and the verdict webhooks at AP."""

from __future__ import annotations

from typing import Any

from contract_schema.invoice import InvoiceValidated

from .data import consulting_line, milestone_line
from .outcomes import StepFailed, poll
from .output import note
from .stack import url_of
from .story import TENANT, Story


class Invoices(Story):
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

    def milestone_invoice_passes(self) -> str:
        # Through the validator's HTTP intake this time (AP systems that cannot produce to Kafka).
        return self.expect_verdict("milestone-resent", f"A-{self.run}-4", [milestone_line(self.today)],
                                   "approved", None, via="http")
