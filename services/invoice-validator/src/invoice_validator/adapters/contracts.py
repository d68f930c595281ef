"""Parsed contracts in front of the Faust tables that hold them as JSON.

The tables hold what survives a restart (rebuilt from their changelogs); this cache keeps parsed
snapshots so a hot contract is not re-validated by pydantic on every invoice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from contract_schema import ContractSnapshot


def table_value(snapshot: ContractSnapshot, raw_json: bytes | None = None) -> dict[str, Any]:
    """What the `contracts` table keeps; `raw_json` (the record value it was decoded from) saves a re-dump."""
    text = raw_json.decode() if raw_json is not None else snapshot.model_dump_json()
    return {"vendor": snapshot.counterparty.erp_vendor_id, "snapshot": text, "revision": list(revision(snapshot))}


def revision(snapshot: ContractSnapshot) -> tuple[int, int]:
    """Orders snapshots of one contract: its latest version, then when the registry last changed it (µs)."""
    return snapshot.current.version, _micros(snapshot.updated_at)


def stored_revision(value: Mapping[str, Any] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    if "revision" in value:
        version, updated = value["revision"]
        return int(version), int(updated)
    raw = json.loads(value["snapshot"])  # written before revisions were stored: read them from the JSON
    return int(raw["versions"][-1]["version"]), _micros(datetime.fromisoformat(raw["updated_at"]))


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def is_older(snapshot: ContractSnapshot, stored: Mapping[str, Any] | None) -> bool:
    """True if the table already holds a newer snapshot of the contract: a redelivered (or replayed after a
    kill) record must not put an older version back in front of the invoices."""
    known = stored_revision(stored)
    return known is not None and revision(snapshot) < known


class ContractCache:
    def __init__(self, contracts: Mapping[str, Any], vendors: Mapping[str, Any]) -> None:
        self._contracts = contracts  # contract id -> table_value(...)
        self._vendors = vendors  # vendor id -> {contract id: snapshot JSON}
        self._parsed: dict[str, tuple[str, ContractSnapshot]] = {}

    def invalidate(self) -> None:
        """Called after table recovery or a rebalance: the tables may hold other contracts now."""
        self._parsed.clear()

    def put(self, snapshot: ContractSnapshot, text: str) -> None:
        self._parsed[snapshot.contract_id] = (text, snapshot)

    def parse(self, contract_id: str, text: str) -> ContractSnapshot:
        cached = self._parsed.get(contract_id)
        if cached is not None and cached[0] == text:
            return cached[1]
        snapshot = ContractSnapshot.model_validate_json(text)
        self._parsed[contract_id] = (text, snapshot)
        return snapshot

    def get(self, contract_id: str) -> ContractSnapshot | None:
        raw = self._contracts.get(contract_id)
        return None if raw is None else self.parse(contract_id, raw["snapshot"])

    def for_vendor(self, vendor_id: str) -> list[ContractSnapshot]:
        entries = self._vendors.get(vendor_id) or {}
        return [self.parse(cid, text) for cid, text in sorted(entries.items())]
