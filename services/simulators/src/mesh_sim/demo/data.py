"""The demo's data: three contracts and the invoice lines, fresh for every run."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any


def person(name: str, role: str, run: str) -> dict[str, str]:
    return {"name": name, "email": f"{role}.{run}@demo.example.com"}


def contract_bodies(run: str, today: date) -> dict[str, dict[str, Any]]:
    def d(days: int) -> str:
        return (today + timedelta(days=days)).isoformat()

    common = {"direction": "buy-side", "timezone": "UTC", "tags": ["demo", run]}
    return {
        "milestone": {
            **common, "title": f"Consulting: ERP rollout ({run})", "contract_type": "services",
            "counterparty": {"party_id": f"V-{run}-1", "name": "Acme Consulting", "erp_vendor_id": f"ERP-{run}-1"},
            "owner": person("Olga Owner", "olga", run), "backup_owner": person("Bob Backup", "bob", run),
            "terms": {"currency": "EUR", "total_value": "100000.00", "effective_date": d(-30), "end_date": d(335),
                      "notice_period_days": 30, "payment_terms_days": 30,
                      "rate_card": [{"line_id": "L1", "item_code": "CONSULT-SR", "description": "Senior consultant",
                                     "unit": "HUR", "unit_price": "150.00", "currency": "EUR",
                                     "valid_from": d(-30), "valid_to": d(335)}],
                      "obligations": [
                          {"obligation_id": "M1", "kind": "milestone", "title": "Design sign-off",
                           "due_date": d(10), "amount": "5000.00", "owner": person("Olga Owner", "olga", run)},
                          {"obligation_id": "M2", "kind": "milestone", "title": "Go-live", "due_date": d(60),
                           "amount": "8000.00", "owner": person("Olga Owner", "olga", run)}]},
        },
        "sla": {
            **common, "title": f"Hosting with 99.9% availability ({run})", "contract_type": "hosting",
            "counterparty": {"party_id": f"V-{run}-2", "name": "Cloudy Hosting", "erp_vendor_id": f"ERP-{run}-2"},
            "owner": person("Sam Service", "sam", run), "backup_owner": person("Sue Standby", "sue", run),
            "terms": {"currency": "EUR", "total_value": "120000.00", "effective_date": d(-90), "end_date": d(275),
                      "notice_period_days": 30, "payment_terms_days": 30,
                      "rate_card": [{"line_id": "H1", "item_code": "HOSTING", "unit": "MON", "unit_price": "10000.00",
                                     "currency": "EUR", "valid_from": d(-90), "valid_to": d(275)}],
                      "obligations": [
                          {"obligation_id": "S1", "kind": "sla", "title": "Availability 99.9% monthly",
                           "owner": person("Sam Service", "sam", run),
                           "sla": {"metric": "availability", "target": "99.9", "comparison": "at-least",
                                   "window": "monthly", "monthly_fee": "10000.00", "credit_percent_per_step": "5",
                                   "step": "0.1", "credit_cap_percent": "30"}}]},
        },
        "auto-renew": {
            **common, "title": f"Design software subscription ({run})", "contract_type": "software",
            "counterparty": {"party_id": f"V-{run}-3", "name": "Pixel Tools", "erp_vendor_id": f"ERP-{run}-3",
                             "crm_account_id": f"001{run.upper()}"},
            "owner": person("Rita Renewal", "rita", run), "backup_owner": person("Ben Backup", "ben", run),
            # Notice deadline = end - 60 days = day 140: stages at days 20 (120d), 50, 80 and 110 (30d).
            "terms": {"currency": "EUR", "total_value": "60000.00", "effective_date": d(-165), "end_date": d(200),
                      "auto_renew": True, "renewal_term_months": 12, "notice_period_days": 60,
                      "payment_terms_days": 30,
                      "rate_card": [{"line_id": "S1", "item_code": "SEAT", "unit": "EA", "unit_price": "100.00",
                                     "currency": "EUR", "valid_from": d(-165), "valid_to": d(200)}]},
        },
    }


def consulting_line(today: date, hours: int, price: str) -> dict[str, Any]:
    amount = (Decimal(price) * hours).quantize(Decimal("0.01"))
    return {"line_no": 1, "item_code": "CONSULT-SR", "description": "Senior consultant", "quantity": str(hours),
            "unit": "HUR", "unit_price": price, "amount": str(amount),
            "service_date": (today - timedelta(days=5)).isoformat()}


def milestone_line(today: date) -> dict[str, Any]:
    return {"line_no": 1, "item_code": "MILESTONE", "description": "Design sign-off", "quantity": "1", "unit": "EA",
            "unit_price": "5000.00", "amount": "5000.00", "service_date": today.isoformat(), "milestone_ref": "M1"}
