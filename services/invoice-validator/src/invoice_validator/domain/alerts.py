"""The red alert for a rejected invoice that bills a lot; pure."""

from __future__ import annotations

from contract_schema import Alert, ContractSnapshot, InvoiceValidated, Tier


def overbilling_alert(verdict: InvoiceValidated, alert_id: str, invoice_ce_id: str, service: str,
                      contract: ContractSnapshot | None) -> Alert:
    contract_id = verdict.contract_id or verdict.vendor_id
    return Alert(
        alert_id=alert_id, tenant_id=verdict.tenant_id, contract_id=contract_id,
        alert_type="invoice.rejected", tier=Tier.RED,
        title=f"Invoice {verdict.invoice_number} from {verdict.vendor_id} rejected",
        what=f"Invoice {verdict.invoice_number} bills {verdict.total_billed} {verdict.currency}; "
             f"{verdict.prevented_overpayment} {verdict.currency} of it is not supported by the contract.",
        why="; ".join(verdict.messages)[:2000],
        required_action="Hold the payment and ask the vendor for a corrected invoice.",
        owner=contract.owner if contract is not None else None,
        backup_owner=contract.backup_owner if contract is not None else None,
        amount_at_stake=verdict.prevented_overpayment or verdict.total_billed, currency=verdict.currency,
        dedup_key=f"invoice.rejected:{contract_id}:{verdict.invoice_id}", source_service=service,
        source_event_id=invoice_ce_id, raised_at=verdict.validated_at,
    )
