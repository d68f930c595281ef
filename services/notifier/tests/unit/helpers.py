from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from contract_schema.alert import Alert, Tier
from contract_schema.base import Link, Person

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def make_alert(alert_type: str = "sla.breached", *, tier: Tier = Tier.YELLOW, alert_id: str = "a-1",
               contract_id: str = "C-1", stage: str = "s", deadline: datetime | None = None,
               **extra: Any) -> Alert:
    fields: dict[str, Any] = dict(
        alert_id=alert_id, tenant_id="t1", contract_id=contract_id, alert_type=alert_type, tier=tier,
        title=f"{alert_type} on {contract_id}", what="Something needs attention", why="Because",
        deadline=deadline if deadline is not None else T0 + timedelta(days=3),
        owner=Person(name="Olivia Owner", email="olivia@example.com", timezone="Europe/Berlin"),
        backup_owner=Person(name="Bob Backup", email="bob@example.com"),
        amount_at_stake=Decimal("12500.50"), currency="EUR",
        links=(Link(title="Contract", url=f"https://clm.example/contracts/{contract_id}"),),
        dedup_key=f"{alert_type}:{contract_id}:{stage}", source_service="test", raised_at=T0)
    fields.update(extra)
    return Alert(**fields)
