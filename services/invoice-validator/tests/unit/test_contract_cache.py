"""The parsed-contract cache and its vendor index over a table-like mapping."""

from __future__ import annotations

from typing import Any

from invoice_validator import samples as s
from invoice_validator.adapters.contracts import ContractCache, table_value


def test_vendor_index_is_rebuilt_from_the_table_and_follows_vendor_changes() -> None:
    table: dict[str, Any] = {c.contract_id: table_value(c) for c in (s.contract("C-1", vendor="V-1"),
                                                                       s.contract("C-2", vendor="V-2"))}
    cache = ContractCache(table, lambda: list(table.items()))
    assert [c.contract_id for c in cache.for_vendor("V-1")] == ["C-1"]
    moved = s.contract("C-1", vendor="V-2")
    table["C-1"] = table_value(moved)
    cache.put(moved, previous_vendor="V-1")
    assert cache.for_vendor("V-1") == []
    assert [c.contract_id for c in cache.for_vendor("V-2")] == ["C-1", "C-2"]
    cache.invalidate()  # after recovery: parsed again from the table
    assert cache.get("C-2") == table_value_roundtrip(table["C-2"])
    assert cache.get("C-404") is None


def table_value_roundtrip(value: dict[str, Any]) -> Any:
    from contract_schema import ContractSnapshot

    return ContractSnapshot.model_validate_json(value["snapshot"])
