"""Builders for contracts and invoices, shared by the tests, the benchmark and demos."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from contract_schema import (
    ContractSnapshot,
    ContractStatus,
    ContractTerms,
    Direction,
    InvoiceLine,
    InvoiceReceived,
    ObligationDefinition,
    ObligationKind,
    Party,
    Person,
    RateCardLine,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rate_line(item_code: str = "DEV-HOUR", unit_price: str = "100.00", **kw: Any) -> RateCardLine:
    data: dict[str, Any] = {"line_id": f"L-{item_code}", "item_code": item_code, "unit": "HUR",
                            "unit_price": Decimal(unit_price), "currency": "EUR", "valid_from": date(2026, 1, 1)}
    data.update(kw)
    return RateCardLine(**data)


def terms(version: int = 1, *, effective_from: date = date(2026, 1, 1),
          rate_card: tuple[RateCardLine, ...] | None = None, **kw: Any) -> ContractTerms:
    data: dict[str, Any] = {
        "version": version, "effective_from": effective_from, "currency": "EUR",
        "total_value": Decimal("1000000"), "effective_date": date(2026, 1, 1), "end_date": date(2027, 12, 31),
        "payment_terms_days": 30,
        "rate_card": rate_card if rate_card is not None else (rate_line(),),
        "obligations": (ObligationDefinition(obligation_id="M1", kind=ObligationKind.MILESTONE,
                                             title="Go-live", amount=Decimal("5000.00")),),
    }
    data.update(kw)
    return ContractTerms(**data)


def contract(contract_id: str = "C-1", *, vendor: str = "V-1", tenant: str = "t1",
             versions: tuple[ContractTerms, ...] | None = None, **kw: Any) -> ContractSnapshot:
    data: dict[str, Any] = {
        "contract_id": contract_id, "tenant_id": tenant, "title": f"Services {contract_id}",
        "counterparty": Party(party_id=f"P-{vendor}", name=f"Vendor {vendor}", erp_vendor_id=vendor),
        "direction": Direction.BUY_SIDE, "contract_type": "services",
        "owner": Person(name="Olive Owner", email="olive@example.com"),
        "status": ContractStatus.ACTIVE, "versions": versions or (terms(),), "updated_at": T0,
    }
    data.update(kw)
    return ContractSnapshot(**data)


def line(line_no: int = 1, item_code: str = "DEV-HOUR", quantity: str = "10", unit_price: str = "100.00",
         amount: str | None = None, service_date: date = date(2026, 3, 1), **kw: Any) -> InvoiceLine:
    q, p = Decimal(quantity), Decimal(unit_price)
    data: dict[str, Any] = {"line_no": line_no, "item_code": item_code, "quantity": q, "unit": "HUR",
                            "unit_price": p, "amount": Decimal(amount) if amount is not None else q * p,
                            "service_date": service_date}
    data.update(kw)
    return InvoiceLine(**data)


def invoice(invoice_id: str = "INV-1", *, lines: tuple[InvoiceLine, ...] | None = None, vendor: str = "V-1",
            contract_ref: str | None = "C-1", number: str | None = None, tenant: str = "t1",
            **kw: Any) -> InvoiceReceived:
    data: dict[str, Any] = {
        "invoice_id": invoice_id, "tenant_id": tenant, "vendor_id": vendor, "invoice_number": number or invoice_id,
        "contract_ref": contract_ref, "issue_date": date(2026, 3, 31), "currency": "EUR",
        "payment_terms_days": 30, "lines": lines or (line(),), "received_at": T0,
    }
    data.update(kw)
    return InvoiceReceived(**data)


def ubl_invoice(inv: InvoiceReceived) -> bytes:
    """The same invoice as a UBL 2.1 / Peppol BIS Billing 3.0 document."""
    lines = []
    for ln in inv.lines:
        qty, price = ln.quantity, ln.unit_price
        if price < 0:  # UBL credit line: negative quantity, non-negative price
            qty, price = -qty, -price
        period_end = f"<cbc:EndDate>{ln.service_period_end}</cbc:EndDate>" if ln.service_period_end else ""
        milestone = (f"<cac:AdditionalItemProperty><cbc:Name>MilestoneRef</cbc:Name>"
                     f"<cbc:Value>{ln.milestone_ref}</cbc:Value></cac:AdditionalItemProperty>"
                     if ln.milestone_ref else "")
        lines.append(f"""
  <cac:InvoiceLine>
    <cbc:ID>{ln.line_no}</cbc:ID>
    <cbc:InvoicedQuantity unitCode="{ln.unit}">{qty}</cbc:InvoicedQuantity>
    <cbc:LineExtensionAmount currencyID="{inv.currency}">{ln.amount}</cbc:LineExtensionAmount>
    <cac:InvoicePeriod><cbc:StartDate>{ln.service_date}</cbc:StartDate>{period_end}</cac:InvoicePeriod>
    <cac:Item>
      <cbc:Name>{ln.description or ln.item_code}</cbc:Name>
      <cac:SellersItemIdentification><cbc:ID>{ln.item_code}</cbc:ID></cac:SellersItemIdentification>
      {milestone}
    </cac:Item>
    <cac:Price><cbc:PriceAmount currencyID="{inv.currency}">{price}</cbc:PriceAmount></cac:Price>
  </cac:InvoiceLine>""")
    contract_ref = (f"<cac:ContractDocumentReference><cbc:ID>{inv.contract_ref}</cbc:ID>"
                    f"</cac:ContractDocumentReference>" if inv.contract_ref else "")
    due = f"<cbc:DueDate>{inv.due_date}</cbc:DueDate>" if inv.due_date else ""
    terms = (f"<cac:PaymentTerms><cbc:Note>Net {inv.payment_terms_days} days</cbc:Note></cac:PaymentTerms>"
             if inv.payment_terms_days is not None else "")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
         xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
         xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:CustomizationID>urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0</cbc:CustomizationID>
  <cbc:ProfileID>urn:fdc:peppol.eu:2017:poacc:billing:01:1.0</cbc:ProfileID>
  <cbc:ID>{inv.invoice_number}</cbc:ID>
  <cbc:IssueDate>{inv.issue_date}</cbc:IssueDate>
  {due}
  <cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode>
  <cbc:DocumentCurrencyCode>{inv.currency}</cbc:DocumentCurrencyCode>
  {contract_ref}
  <cac:AccountingSupplierParty>
    <cac:Party>
      <cbc:EndpointID schemeID="0088">{inv.vendor_id}</cbc:EndpointID>
      <cac:PartyName><cbc:Name>Vendor {inv.vendor_id}</cbc:Name></cac:PartyName>
    </cac:Party>
  </cac:AccountingSupplierParty>
  <cac:AccountingCustomerParty><cac:Party><cbc:EndpointID schemeID="0088">BUYER</cbc:EndpointID></cac:Party>
  </cac:AccountingCustomerParty>
  {terms}
  <cac:LegalMonetaryTotal>
    <cbc:LineExtensionAmount currencyID="{inv.currency}">{sum(ln.amount for ln in inv.lines)}</cbc:LineExtensionAmount>
    <cbc:PayableAmount currencyID="{inv.currency}">{sum(ln.amount for ln in inv.lines)}</cbc:PayableAmount>
  </cac:LegalMonetaryTotal>{"".join(lines)}
</Invoice>
""".encode()
