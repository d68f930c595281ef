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
