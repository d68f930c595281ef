"""Invoices as AP systems send them over HTTP -> the canonical InvoiceReceived fields.

Two shapes: the project's JSON invoice (InvoiceReceived without the server-set fields) and a
UBL 2.1 Invoice as Peppol BIS Billing 3.0 / EN 16931 exchange it. XML is parsed by defusedxml:
no DTDs, no external or expanded entities.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

NS = {
    "inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
MILESTONE_PROPERTY = "MilestoneRef"  # cac:Item/cac:AdditionalItemProperty name carrying a milestone ref


class IntakeError(Exception):
    """Bad input, naming the field (a JSON path or an XPath-like UBL path) and the problem."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntakeError("body", f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise IntakeError("body", "must be a JSON object")
    return data


def _text(node: Element | None, path: str, field: str, *, required: bool = False) -> str | None:
    found = node.find(path, NS) if node is not None else None
    value = found.text.strip() if found is not None and found.text else None
    if required and not value:
        raise IntakeError(field, "is missing")
    return value


def _decimal(value: str | None, field: str) -> Decimal:
    if value is None:
        raise IntakeError(field, "is missing")
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise IntakeError(field, f"{value!r} is not a number") from exc
    if not result.is_finite():
        raise IntakeError(field, f"{value!r} is not a finite number")
    return result


def _payment_days(note: str | None) -> int | None:
    """'Net 30', '30 days', 'Payment within 30 days' -> 30."""
    if not note:
        return None
    match = re.search(r"(\d{1,4})", note)
    return int(match.group(1)) if match else None


def parse_ubl(body: bytes) -> dict[str, Any]:
    """A UBL 2.1 Invoice document -> InvoiceReceived fields (without tenant, id and receive time)."""
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise IntakeError("body", f"forbidden XML construct: {type(exc).__name__}") from exc
    except SafeET.ParseError as exc:
        raise IntakeError("body", f"not well-formed XML: {exc}") from exc
    if root.tag != f"{{{NS['inv']}}}Invoice":
        raise IntakeError("body", "root element must be a UBL 2.1 Invoice")

    supplier = root.find("cac:AccountingSupplierParty/cac:Party", NS)
    if supplier is None:
        raise IntakeError("cac:AccountingSupplierParty/cac:Party", "is missing")
    vendor = _text(supplier, "cbc:EndpointID", "") or _text(supplier, "cac:PartyIdentification/cbc:ID", "")
    if not vendor:
        raise IntakeError("cac:AccountingSupplierParty/cac:Party/cbc:EndpointID", "is missing")
    issue_date = _text(root, "cbc:IssueDate", "cbc:IssueDate", required=True)
    header_period_start = _text(root, "cac:InvoicePeriod/cbc:StartDate", "cac:InvoicePeriod/cbc:StartDate")

    lines: list[dict[str, Any]] = []
    nodes = root.findall("cac:InvoiceLine", NS)
    if not nodes:
        raise IntakeError("cac:InvoiceLine", "an invoice needs at least one line")
    for index, node in enumerate(nodes, start=1):
        where = f"cac:InvoiceLine[{index}]"
        qty_node = node.find("cbc:InvoicedQuantity", NS)
        if qty_node is None:
            raise IntakeError(f"{where}/cbc:InvoicedQuantity", "is missing")
        unit = qty_node.get("unitCode")
        if not unit:
            raise IntakeError(f"{where}/cbc:InvoicedQuantity/@unitCode", "is missing")
        quantity = _decimal(qty_node.text and qty_node.text.strip(), f"{where}/cbc:InvoicedQuantity")
        amount = _decimal(_text(node, "cbc:LineExtensionAmount", ""), f"{where}/cbc:LineExtensionAmount")
        price = _decimal(_text(node, "cac:Price/cbc:PriceAmount", ""), f"{where}/cac:Price/cbc:PriceAmount")
        if quantity < 0:  # a UBL credit line has a negative quantity; ours a negative price
            quantity, price = -quantity, -price
        item_code = _text(node, "cac:Item/cac:SellersItemIdentification/cbc:ID", "") \
            or _text(node, "cac:Item/cac:StandardItemIdentification/cbc:ID", "")
        if not item_code:
            raise IntakeError(f"{where}/cac:Item/cac:SellersItemIdentification/cbc:ID", "is missing")
        start = _text(node, "cac:InvoicePeriod/cbc:StartDate", "") or header_period_start or issue_date
        line_id = _text(node, "cbc:ID", f"{where}/cbc:ID", required=True) or ""
        milestone = None
        for prop in node.findall("cac:Item/cac:AdditionalItemProperty", NS):
            if _text(prop, "cbc:Name", "") == MILESTONE_PROPERTY:
                milestone = _text(prop, "cbc:Value", "")
        lines.append({
            "line_no": int(line_id) if line_id.isdigit() else index,
            "item_code": item_code,
            "description": _text(node, "cac:Item/cbc:Name", "") or "",
            "quantity": str(quantity), "unit": unit, "unit_price": str(price), "amount": str(amount),
            "service_date": start,
            "service_period_end": _text(node, "cac:InvoicePeriod/cbc:EndDate", ""),
            "milestone_ref": milestone,
        })
    return {
        "invoice_number": _text(root, "cbc:ID", "cbc:ID", required=True),
        "vendor_id": vendor,
        "contract_ref": _text(root, "cac:ContractDocumentReference/cbc:ID", ""),
        "issue_date": issue_date,
        "due_date": _text(root, "cbc:DueDate", ""),
        "currency": _text(root, "cbc:DocumentCurrencyCode", "cbc:DocumentCurrencyCode", required=True),
        "payment_terms_days": _payment_days(_text(root, "cac:PaymentTerms/cbc:Note", "")),
        "lines": lines,
        "total": _text(root, "cac:LegalMonetaryTotal/cbc:LineExtensionAmount", ""),
        "source_system": "ubl",
    }
