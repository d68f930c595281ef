"""Parsed contracts in front of the Faust `contracts` table, with a vendor -> contracts index.

The table holds what survives a restart (JSON, rebuilt from its changelog); this cache keeps
parsed snapshots so a hot contract is not re-validated by pydantic on every invoice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from contract_schema import ContractSnapshot


def table_value(snapshot: ContractSnapshot, raw_json: bytes | None = None) -> dict[str, Any]:
    """What the table keeps; `raw_json` (the record value the snapshot was decoded from) saves a re-dump."""
    text = raw_json.decode() if raw_json is not None else snapshot.model_dump_json()
    return {"vendor": snapshot.counterparty.erp_vendor_id, "snapshot": text}


class ContractCache:
    def __init__(self, table: Mapping[str, Any], items: Callable[[], Iterable[tuple[str, Any]]]) -> None:
        self._table = table
        self._items = items
        self._parsed: dict[str, ContractSnapshot] = {}
        self._by_vendor: dict[str, set[str]] | None = None  # None: rebuild on next use

    def invalidate(self) -> None:
        """Called after table recovery or a rebalance: the table may hold other contracts now."""
        self._parsed.clear()
        self._by_vendor = None

    def put(self, snapshot: ContractSnapshot, previous_vendor: str | None) -> None:
        self._parsed[snapshot.contract_id] = snapshot
        if self._by_vendor is not None:
            if previous_vendor and previous_vendor != snapshot.counterparty.erp_vendor_id:
                self._by_vendor.get(previous_vendor, set()).discard(snapshot.contract_id)
            if snapshot.counterparty.erp_vendor_id:
                self._by_vendor.setdefault(snapshot.counterparty.erp_vendor_id, set()).add(snapshot.contract_id)

    def get(self, contract_id: str) -> ContractSnapshot | None:
        found = self._parsed.get(contract_id)
        if found is not None:
            return found
        raw = self._table.get(contract_id)
        if raw is None:
            return None
        snapshot = ContractSnapshot.model_validate_json(raw["snapshot"])
        self._parsed[contract_id] = snapshot
        return snapshot

    def for_vendor(self, vendor_id: str) -> list[ContractSnapshot]:
        if self._by_vendor is None:
            index: dict[str, set[str]] = {}
            for contract_id, raw in self._items():
                if raw and raw.get("vendor"):
                    index.setdefault(raw["vendor"], set()).add(contract_id)
            self._by_vendor = index
        found = (self.get(cid) for cid in sorted(self._by_vendor.get(vendor_id, ())))
        return [c for c in found if c is not None]
