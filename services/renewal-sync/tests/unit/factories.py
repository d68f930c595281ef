from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from contract_schema.contract import ContractSnapshot

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def snapshot(contract_id: str = "C-1", *, end_date: date | None = date(2026, 12, 31), notice: int = 30,
             auto_renew: bool = True, status: str = "active", tz: str = "UTC", version: int = 1,
             total_value: str = "120000.00", effective_date: date = date(2026, 1, 1), **extra: Any) -> ContractSnapshot:
    data: dict[str, Any] = {
        "contract_id": contract_id, "tenant_id": "t1", "title": f"Hosting {contract_id}",
        "counterparty": {"party_id": "P-1", "name": "Acme", "crm_account_id": "ACC-1"},
        "direction": "sell-side", "contract_type": "msa",
        "owner": {"name": "Olga Owner", "email": "olga@example.com"},
        "backup_owner": {"name": "Bert Backup", "email": "bert@example.com"},
        "timezone": tz, "status": status,
        "versions": [{"version": version, "effective_from": effective_date.isoformat(), "currency": "EUR",
                      "total_value": total_value, "effective_date": effective_date.isoformat(),
                      "end_date": end_date.isoformat() if end_date else None, "auto_renew": auto_renew,
                      "notice_period_days": notice}],
        "updated_at": NOW.isoformat(),
    }
    data.update(extra)
    return ContractSnapshot.model_validate(data)


def at(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


__all__ = ["NOW", "Decimal", "at", "snapshot"]
