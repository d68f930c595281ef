"""HTTP intake: JSON and UBL XML give the same verdict; bad input, size and auth are refused clearly."""

from __future__ import annotations

from typing import Any

from invoice_validator import samples as s

from contract_schema import InvoiceValidated, VerdictStatus
from mesh_testing import unique_name, wait_for

from .harness import Running

XML = {"Content-Type": "application/xml"}


def _auth(validator: Running, *scopes: str, tenant: str = "t1") -> dict[str, str]:
    return {"Authorization": f"Bearer {validator.token(*scopes, tenant=tenant)}"}


def _shape(v: InvoiceValidated) -> Any:
    return (v.status, v.reason_codes, v.total_billed, v.total_expected, v.prevented_overpayment,
            [(lv.line_no, lv.status, lv.expected_unit_price, lv.variance, lv.reason_codes) for lv in v.lines])


def test_json_and_ubl_intake_give_the_same_verdict(validator: Running) -> None:
    c = s.contract(unique_name("C"), vendor=unique_name("V"))
    validator.produce(c)
    lines = (s.line(1), s.line(2, unit_price="125.00"), s.line(3, item_code="GOLD-PLATING", quantity="1"))
    vendor = c.counterparty.erp_vendor_id or ""
    as_json = s.invoice("ignored", contract_ref=c.contract_id, vendor=vendor, number=unique_name("N"), lines=lines)
    as_ubl = as_json.model_copy(update={"invoice_number": unique_name("N")})
    write = _auth(validator, "invoices:write")
    body = as_json.model_dump(mode="json", exclude={"invoice_id", "tenant_id", "received_at"})
    with validator.http() as http:
        r1 = http.post("/v1/invoices", json=body, headers=write)
        r2 = http.post("/v1/invoices", content=s.ubl_invoice(as_ubl), headers=write | XML)
        assert r1.status_code == 202, r1.text
        assert r2.status_code == 202, r2.text
        id1, id2 = r1.json()["invoice_id"], r2.json()["invoice_id"]
        read = _auth(validator, "invoices:read")
        got = [wait_for(lambda i=i: http.get(f"/v1/invoices/{i}/verdict", headers=read).status_code == 200 and
                        http.get(f"/v1/invoices/{i}/verdict", headers=read).json(), timeout=30) for i in (id1, id2)]
        assert http.get(f"/v1/invoices/{id1}/verdict", headers=_auth(validator, "invoices:read",
                                                                        tenant="t2")).status_code == 404
    v1, v2 = (InvoiceValidated.model_validate(g) for g in got)
    assert v1.status is VerdictStatus.REJECTED
    assert v1.reason_codes == ("PRICE_ABOVE_CONTRACT", "NOT_ON_RATE_CARD")
    assert _shape(v1) == _shape(v2)
    assert validator.verdict(id2).invoice_number == as_ubl.invoice_number  # also on the verdict topic


def test_reposting_the_same_invoice_keeps_one_invoice_id(validator: Running) -> None:
    c = s.contract(unique_name("C"), vendor=unique_name("V"))
    validator.produce(c)
    inv = s.invoice("x", contract_ref=c.contract_id, vendor=c.counterparty.erp_vendor_id or "",
                    number=unique_name("N"))
    with validator.http() as http:
        ids = {http.post("/v1/invoices", content=s.ubl_invoice(inv),
                         headers=_auth(validator, "invoices:write") | XML).json()["invoice_id"] for _ in range(2)}
    assert len(ids) == 1
    (invoice_id,) = ids
    assert validator.verdict(invoice_id).status is VerdictStatus.APPROVED


def test_bad_input_is_refused_naming_the_field(validator: Running) -> None:
    write = _auth(validator, "invoices:write")
    good = s.invoice().model_dump(mode="json", exclude={"invoice_id", "tenant_id", "received_at"})
    with validator.http() as http:
        bad_currency = http.post("/v1/invoices", json=good | {"currency": "EURO"}, headers=write)
        assert bad_currency.status_code == 422 and bad_currency.json()["detail"][0]["field"] == "currency"
        no_date = s.ubl_invoice(s.invoice()).replace(b"<cbc:IssueDate>2026-03-31</cbc:IssueDate>", b"")
        r = http.post("/v1/invoices", content=no_date, headers=write | XML)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "cbc:IssueDate"
        xxe = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
               b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">&x;</Invoice>')
        assert http.post("/v1/invoices", content=xxe, headers=write | XML).status_code == 422
        huge = b"<x>" + b"a" * 1_100_000 + b"</x>"
        assert http.post("/v1/invoices", content=huge, headers=write | XML).status_code == 413
        assert http.post("/v1/invoices", json=good, headers={}).status_code == 401
        assert http.post("/v1/invoices", json=good, headers=_auth(validator, "invoices:read")).status_code == 403
        missing = http.get("/v1/invoices/does-not-exist/verdict", headers=_auth(validator, "invoices:read"))
        assert missing.status_code == 404
        assert http.get("/healthz").status_code == 200
