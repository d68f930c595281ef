"""In-memory read model for the service-layer tests, type-checked against adapters/ports.py."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from ..domain.projections import NO_TENANT, Row
from ..domain.rows import (
    AlertRow,
    ContractRow,
    DecisionRow,
    DeliveryRow,
    EventEntry,
    InvoiceRow,
    ObligationRow,
    RenewalRow,
    ScorecardRow,
)
from .ports import ReadModelReader, ReadModelWriter


@dataclass
class MemoryModel:
    events: dict[tuple[str, str], EventEntry] = field(default_factory=dict)
    rows: dict[tuple[str, str, str], Row] = field(default_factory=dict)
    version: int = 0
    commits: int = 0


class FakeWriter:
    def __init__(self, model: MemoryModel) -> None:
        self.model = model

    def __enter__(self) -> Self:
        self.events: dict[tuple[str, str], EventEntry] = {}
        self.rows: dict[tuple[str, str, str], Row] = {}
        self.bumps = 0
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.events, self.rows, self.bumps = {}, {}, 0  # uncommitted work is dropped

    def record(self, entries: Sequence[EventEntry]) -> set[tuple[str, str]]:
        new = set()
        for entry in entries:
            key = (entry.source, entry.id)
            if key not in self.model.events and key not in self.events:
                self.events[key] = entry
                new.add(key)
        return new

    def get(self, table: str, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], Row]:
        out = {}
        for tenant, key in keys:
            k = (table, tenant, key)
            if (row := self.rows.get(k, self.model.rows.get(k))) is not None:
                out[(tenant, key)] = row
        return out

    def put(self, table: str, rows: Mapping[tuple[str, str], Row]) -> None:
        for (tenant, key), row in rows.items():
            self.rows[(table, tenant, key)] = row

    def changed(self) -> None:
        self.bumps += 1

    def commit(self) -> None:
        self.model.events.update(self.events)
        self.model.rows.update(self.rows)
        self.model.version += self.bumps
        self.model.commits += 1
        self.events, self.rows, self.bumps = {}, {}, 0


class FakeReader:
    def __init__(self, model: MemoryModel) -> None:
        self.model = model

    def _of(self, table: str, tenant: str) -> list[Row]:
        return [r for (t, ten, _), r in sorted(self.model.rows.items(), key=lambda kv: kv[0])
                if t == table and ten == tenant]

    def contracts(self, tenant: str) -> list[ContractRow]:
        return [r for r in self._of("contracts", tenant) if isinstance(r, ContractRow)]

    def renewals(self, tenant: str) -> list[RenewalRow]:
        return [r for r in self._of("renewals", tenant) if isinstance(r, RenewalRow)]

    def decisions(self, tenant: str) -> list[DecisionRow]:
        return [r for r in self._of("decisions", tenant) if isinstance(r, DecisionRow)]

    def obligations(self, tenant: str) -> list[ObligationRow]:
        return [r for r in self._of("obligations", tenant) if isinstance(r, ObligationRow)]

    def invoices(self, tenant: str) -> list[InvoiceRow]:
        return [r for r in self._of("invoices", tenant) if isinstance(r, InvoiceRow)]

    def alerts(self, tenant: str) -> list[AlertRow]:
        return [r for r in self._of("alerts", tenant) if isinstance(r, AlertRow)]

    def deliveries(self, tenant: str) -> list[DeliveryRow]:
        mine = {a.alert_id for a in self.alerts(tenant)}
        return [r for r in self._of("deliveries", NO_TENANT) if isinstance(r, DeliveryRow) and r.alert_id in mine]

    def scorecards(self, tenant: str) -> list[ScorecardRow]:
        mine = {c.contract_id for c in self.contracts(tenant)}
        return [r for r in self._of("scorecards", NO_TENANT) if isinstance(r, ScorecardRow) and r.contract_id in mine]

    def contract(self, tenant: str, contract_id: str) -> ContractRow | None:
        row = self.model.rows.get(("contracts", tenant, contract_id))
        return row if isinstance(row, ContractRow) else None

    def events_of(self, tenant: str, contract_id: str) -> list[EventEntry]:
        mine = {a.alert_id for a in self.alerts(tenant)}
        return sorted((e for e in self.model.events.values() if e.contract_id == contract_id and (
                       e.tenant_id == tenant or (e.tenant_id is None and e.payload.get("alert_id") in mine))),
                      key=lambda e: e.occurred_at)

    def version(self) -> int:
        return self.model.version


def _typecheck(model: MemoryModel) -> tuple[ReadModelWriter, ReadModelReader]:
    return FakeWriter(model), FakeReader(model)  # mypy: the fakes implement the ports
