"""What the workload's tenant has and has done: its contracts as the workload last changed them, and every
operation it performed, as the checker reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass
class ContractModel:
    n: int
    kind: str  # "services" (invoiced), "renewal" (auto-renews), "sla"
    contract_id: str
    vendor: str
    by_vendor: bool  # its invoices carry no contract reference
    owner: str
    price: Decimal
    version: int = 1  # latest committed version
    status: str = "draft"
    etag: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    completed: set[str] = field(default_factory=set)
    invoices: list[str] = field(default_factory=list)  # invoice numbers used
    sla_windows: dict[str, str] = field(default_factory=dict)  # window start -> value measured


@dataclass
class Sent:
    """One operation the workload performed, as the checker reads it."""

    op: str
    at: float
    data: dict[str, Any]
