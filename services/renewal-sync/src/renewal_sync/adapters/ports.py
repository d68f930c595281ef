"""What the service layer needs of its storage: PostgreSQL (adapters/store.py) in production, an
in-memory fake (adapters/fakes.py) in the service-layer tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from contract_schema.renewal import SlaRecord
from renewal_sync.domain.renewal import RenewalState

KAFKA, CRM = "kafka", "crm"


@dataclass(frozen=True)
class OutboxRow:
    target: str  # KAFKA or CRM
    contract_id: str
    event_id: str
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class RenewalStore(Protocol):
    def load_states(self, partitions: Sequence[int] | None = None) -> Iterator[tuple[RenewalState, int]]:
        """(state, partition) of every contract, or of those on the given partitions."""
        ...

    def scorecards(self, counterparty_ids: Sequence[str]) -> dict[str, SlaRecord]: ...

    def scorecard(self, counterparty_id: str) -> SlaRecord | None: ...

    def save(self, states: Iterable[tuple[RenewalState, int]], scorecards: dict[str, SlaRecord],
             outbox: Sequence[OutboxRow]) -> None:
        """One transaction: state changes and everything they cause."""
        ...
