"""Example request bodies (valid), shared by tests, the benchmark and the README."""

from __future__ import annotations

import copy
from typing import Any

BASE_TERMS: dict[str, Any] = {
    "currency": "EUR",
    "total_value": "120000.00",
    "signed_date": "2026-01-10",
    "effective_date": "2026-02-01",
    "end_date": "2027-01-31",
    "auto_renew": True,
    "renewal_term_months": 12,
    "notice_period_days": 90,
    "payment_terms_days": 30,
    "rate_card": [
        {"line_id": "L1", "item_code": "CONSULT-SR", "description": "Senior consultant", "unit": "HUR",
         "unit_price": "150.00", "currency": "EUR", "valid_from": "2026-02-01", "valid_to": "2026-07-31",
         "tiers": [{"from_quantity": "0", "to_quantity": "100", "unit_price": "150.00"},
                   {"from_quantity": "100", "unit_price": "140.00"}]},
        {"line_id": "L2", "item_code": "CONSULT-SR", "unit": "HUR", "unit_price": "155.00", "currency": "EUR",
         "valid_from": "2026-08-01", "valid_to": "2027-01-31"},
    ],
    "obligations": [
        {"obligation_id": "M1", "kind": "milestone", "title": "Go-live", "due_date": "2026-06-30",
         "amount": "20000.00"},
        {"obligation_id": "R1", "kind": "deliverable", "title": "Monthly report",
         "recurrence": "FREQ=MONTHLY;BYMONTHDAY=1"},
    ],
}

BASE_DRAFT: dict[str, Any] = {
    "title": "Consulting framework 2026",
    "counterparty": {"party_id": "V-100", "name": "Acme Consulting", "erp_vendor_id": "ERP-100"},
    "direction": "buy-side",
    "contract_type": "services",
    "business_unit": "IT",
    "owner": {"name": "Olga Owner", "email": "olga@example.com"},
    "backup_owner": {"name": "Bob Backup", "email": "bob@example.com"},
    "timezone": "Europe/Berlin",
    "tags": ["it", "consulting"],
    "terms": BASE_TERMS,
}


def draft(**overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE_DRAFT)
    body.update(overrides)
    return body


def terms(**overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE_TERMS)
    body.update(overrides)
    return body
