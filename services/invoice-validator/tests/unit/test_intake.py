"""UBL 2.1 and JSON intake parsing (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from invoice_validator import samples as s
from invoice_validator.adapters.intake import IntakeError, parse_json, parse_ubl

from contract_schema import InvoiceReceived


def _canonical(data: dict[str, object], inv: InvoiceReceived) -> InvoiceReceived:
    data.update(invoice_id=inv.invoice_id, tenant_id=inv.tenant_id, received_at=datetime(2026, 1, 1, tzinfo=UTC))
    return InvoiceReceived.model_validate(data)


def test_ubl_invoice_parses_to_the_same_canonical_invoice() -> None:
    inv = s.invoice(lines=(s.line(1, service_period_end=date(2026, 3, 31)),
                           s.line(2, item_code="SLA-CREDIT", quantity="1", unit_price="-50.00", unit="EA"),
                           s.line(3, item_code="MS", quantity="1", unit_price="5000", unit="EA", milestone_ref="M1")),
                    due_date=date(2026, 4, 30))
    parsed = _canonical(parse_ubl(s.ubl_invoice(inv)), inv)
    assert parsed.lines == tuple(ln.model_copy(update={"description": ln.item_code}) for ln in inv.lines)
    assert (parsed.vendor_id, parsed.invoice_number, parsed.contract_ref, parsed.payment_terms_days) == \
        (inv.vendor_id, inv.invoice_number, inv.contract_ref, 30)
    assert parsed.due_date == date(2026, 4, 30) and parsed.total == Decimal("5950.00")


def test_ubl_missing_field_is_named() -> None:
    xml = s.ubl_invoice(s.invoice()).replace(b"<cbc:IssueDate>2026-03-31</cbc:IssueDate>", b"")
    with pytest.raises(IntakeError) as err:
        parse_ubl(xml)
    assert err.value.field == "cbc:IssueDate"
    no_price = s.ubl_invoice(s.invoice()).replace(b"<cbc:PriceAmount", b"<cbc:Other").replace(
        b"</cbc:PriceAmount>", b"</cbc:Other>")
    with pytest.raises(IntakeError) as err:
        parse_ubl(no_price)
    assert err.value.field == "cac:InvoiceLine[1]/cac:Price/cbc:PriceAmount"


def test_ubl_entities_and_dtds_are_refused() -> None:
    xxe = b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">&x;</Invoice>"""
    with pytest.raises(IntakeError) as err:
        parse_ubl(xxe)
    assert "forbidden" in err.value.problem


def test_bad_json_is_refused() -> None:
    with pytest.raises(IntakeError):
        parse_json(b"[1, 2]")
    with pytest.raises(IntakeError):
        parse_json(b"{not json")
