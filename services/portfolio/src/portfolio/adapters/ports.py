"""The small interfaces the service layer depends on: the read model, written one transaction per batch
and read per tenant."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Protocol, Self

from ..domain.projections import Row
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


class ReadModelWriter(Protocol):
    """One transaction: `with writer: ...; writer.commit()`; leaving the block without commit rolls back."""

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def record(self, entries: Sequence[EventEntry]) -> set[tuple[str, str]]:
        """Keep the events; returns the (source, id) of those not kept before (the others are redeliveries)."""
        ...

    def get(self, table: str, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], Row]:
        """The rows held under these (tenant, key)s."""
        ...

    def put(self, table: str, rows: Mapping[tuple[str, str], Row]) -> None: ...

    def changed(self) -> None:
        """Bump the read model's version (the page's live stream watches it)."""
        ...

    def commit(self) -> None: ...


class ReadModelReader(Protocol):
    def contracts(self, tenant: str) -> list[ContractRow]: ...

    def renewals(self, tenant: str) -> list[RenewalRow]: ...

    def decisions(self, tenant: str) -> list[DecisionRow]: ...

    def obligations(self, tenant: str) -> list[ObligationRow]: ...

    def invoices(self, tenant: str) -> list[InvoiceRow]: ...

    def alerts(self, tenant: str) -> list[AlertRow]: ...

    def deliveries(self, tenant: str) -> list[DeliveryRow]:
        """The deliveries of the tenant's alerts (notifications carry no tenant)."""
        ...

    def scorecards(self, tenant: str) -> list[ScorecardRow]:
        """The scorecards of the tenant's contracts (scorecards carry no tenant)."""
        ...

    def contract(self, tenant: str, contract_id: str) -> ContractRow | None: ...

    def events_of(self, tenant: str, contract_id: str) -> list[EventEntry]: ...

    def version(self) -> int: ...
