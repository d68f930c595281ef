"""Registry request bodies of the workload's three kinds of contract."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Any


def contract_body(kind: str, tag: str, n: int, d: date, price: Decimal, vendor: str, owner: str,
                  rng: random.Random) -> dict[str, Any]:
    """POST /v1/contracts for a `services` (invoiced, two milestones), `renewal` (auto-renews, notice 60 days)
    or `sla` (monthly availability) contract starting 30 days before `d`."""

    def iso(days: int) -> str:
        return (d + timedelta(days=days)).isoformat()

    terms: dict[str, Any] = {"currency": "EUR", "effective_date": iso(-30), "notice_period_days": 60,
                             "payment_terms_days": 30}
    if kind == "services":
        terms |= {"total_value": str(price * 200), "end_date": iso(365),
                  "rate_card": [{"line_id": "L1", "item_code": "CONSULT", "unit": "HUR",
                                 "unit_price": str(price), "currency": "EUR"}],
                  "obligations": [
                      {"obligation_id": "M1", "kind": "milestone", "title": "Design sign-off",
                       "due_date": iso(rng.randint(5, 40)), "amount": "5000.00",
                       "owner": {"name": "Owner", "email": owner}},
                      {"obligation_id": "M2", "kind": "milestone", "title": "Go-live",
                       "due_date": iso(rng.randint(20, 90)), "amount": "8000.00",
                       "owner": {"name": "Owner", "email": owner}}]}
    elif kind == "renewal":
        terms |= {"total_value": "60000.00", "end_date": iso(rng.randint(130, 300)), "auto_renew": True,
                  "renewal_term_months": 12,
                  "rate_card": [{"line_id": "S1", "item_code": "SEAT", "unit": "EA", "unit_price": "100.00",
                                 "currency": "EUR"}]}
    else:
        terms |= {"total_value": "120000.00", "end_date": iso(365),
                  "rate_card": [{"line_id": "H1", "item_code": "HOSTING", "unit": "MON",
                                 "unit_price": "10000.00", "currency": "EUR"}],
                  "obligations": [{"obligation_id": "S1", "kind": "sla", "title": "Availability 99.9% monthly",
                                   "owner": {"name": "Owner", "email": owner},
                                   "sla": {"metric": "availability", "target": "99.9",
                                           "comparison": "at-least", "window": "monthly",
                                           "monthly_fee": "10000.00", "credit_percent_per_step": "5",
                                           "step": "0.1", "credit_cap_percent": "30"}}]}
    for rate in terms["rate_card"]:
        rate.update(valid_from=terms["effective_date"], valid_to=terms["end_date"])
    body = {"title": f"Chaos {kind} {tag}", "contract_type": kind, "direction": "buy-side", "timezone": "UTC",
            "counterparty": {"party_id": f"V-{tag}", "name": f"Vendor {tag}", "erp_vendor_id": vendor,
                             "crm_account_id": f"001C{n:05d}"},
            "owner": {"name": "Owner", "email": owner},
            "backup_owner": {"name": "Backup", "email": f"backup.{tag}@chaos.example.com"},
            "tags": ["chaos"], "terms": terms}
    return body
