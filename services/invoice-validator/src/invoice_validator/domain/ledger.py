"""Cumulative billing per contract and the first invoice per duplicate key, derived from the verdicts.

Each stored verdict carries what its invoice added to its contract's billing and, for the first
invoice with a number, its duplicate key. One invoice's effects are therefore one table record:
after a crash either all of them are in the changelog or none is, and the cumulative amounts
rebuilt from the verdicts can neither count an invoice twice nor miss one that has a verdict.
Pure: no Faust, no Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .model import BillingState


class Ledger:
    def __init__(self) -> None:
        self._billing: dict[str, BillingState] = {}
        self._first: dict[str, str] = {}

    def billing(self, contract_id: str) -> BillingState:
        return self._billing.get(contract_id) or BillingState()

    def first_invoice(self, duplicate_key: str) -> str | None:
        return self._first.get(duplicate_key)

    def record(self, invoice_id: str, entry: Mapping[str, Any]) -> None:
        """Count one stored verdict (call once per verdict: at decision time, or when rebuilding)."""
        contract_id, billed = entry.get("contract_id"), entry.get("billed")
        if contract_id and billed:
            self._billing[contract_id] = self.billing(contract_id).plus(BillingState.from_json(billed))
        key = entry.get("seen_key")
        if key:
            self._first.setdefault(key, invoice_id)

    @classmethod
    def rebuild(cls, verdicts: Iterable[tuple[str, Mapping[str, Any] | None]]) -> Ledger:
        ledger = cls()
        for invoice_id, entry in verdicts:
            if entry:
                ledger.record(invoice_id, entry)
        return ledger
