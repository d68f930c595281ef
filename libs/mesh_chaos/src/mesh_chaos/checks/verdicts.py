"""One verdict per invoice, and the reference's verdict: the validator's domain replayed over the
contract state each invoice was sent after (or a later one it raced)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from contract_schema.contract import ContractSnapshot
from contract_schema.invoice import InvoiceReceived, InvoiceValidated

from ..history import History, Seen
from ..workload import Workload
from .report import Report, distinct, raw


def same_verdict(a: InvoiceValidated, b: InvoiceValidated) -> bool:
    def shape(v: InvoiceValidated) -> tuple[Any, ...]:
        return (v.status.value, tuple(sorted(v.reason_codes)),
                tuple((ln.line_no, ln.status.value, tuple(sorted(ln.reason_codes))) for ln in v.lines))

    return shape(a) == shape(b)


def verdicts(r: Report, h: History, w: Workload) -> None:
    from invoice_validator.domain.model import BillingState, ObligationView
    from invoice_validator.domain.validate import validate_invoice

    received: dict[str, InvoiceReceived] = {}
    for s in h.on("ap.invoice.received.v1"):
        if isinstance(s.event, InvoiceReceived):
            received.setdefault(s.event.invoice_id, s.event)
    by_invoice: dict[str, list[Seen]] = defaultdict(list)
    for s in h.on("ap.invoice.validated.v1"):
        if isinstance(s.event, InvoiceValidated):
            by_invoice[s.event.invoice_id].append(s)
    dlq_values = [s for s in h.on("ap.invoice.received.v1.dlq")]
    snapshots: dict[str, list[tuple[float, ContractSnapshot]]] = defaultdict(list)
    for s in h.on("clm.contract.state.v1"):
        if isinstance(s.event, ContractSnapshot):
            snapshots[s.event.contract_id].append((s.at, s.event))
    seen: dict[str, str] = {}
    billing: dict[str, BillingState] = defaultdict(BillingState)
    for invoice_id, sent in sorted(w.invoices.items(), key=lambda kv: kv[1]["seq"]):
        inv = received.get(invoice_id)
        if inv is None:
            r.add("verdicts", "lost", f"invoice {invoice_id} ({sent['via']}) accepted but never on "
                                     "ap.invoice.received.v1")
            continue
        records = by_invoice.get(invoice_id, [])
        ids, again = distinct(records)
        r.redelivered["ap.invoice.validated.v1"] += again
        snapshot: ContractSnapshot | None = sent.get("snapshot")
        if not ids:
            in_dlq = [d for d in dlq_values if invoice_id.encode() in raw(d)]
            what = "in the DLQ: " + (in_dlq[0].headers.get("dlq_reason", "no reason")) if in_dlq else "nowhere"
            r.add("verdicts", "lost", f"invoice {invoice_id} ({sent['via']}) has no verdict ({what})")
        if len(ids) > 1:
            r.add("verdicts", "duplicated", f"invoice {invoice_id}: {len(ids)} verdict ce_ids")
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
            r.add("verdicts", "divergent",
                  f"invoice {invoice_id} ({sent['via']}, contract {got.contract_id} v{got.contract_version}):"
                  f" got {got.status.value} {sorted(got.reason_codes)}, reference {expected.status.value} "
                  f"{sorted(expected.reason_codes)} (v{snapshot.current.version}"
                  f"{f', or {len(candidates) - 1} later states' if len(candidates) > 1 else ''})")
        if len({(s.event.status.value if isinstance(s.event, InvoiceValidated) else None) for s in records}) > 1:
            r.add("verdicts", "divergent", f"invoice {invoice_id}: verdict records disagree")
