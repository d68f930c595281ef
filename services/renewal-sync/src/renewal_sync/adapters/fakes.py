"""An in-memory store for service-layer tests: what the worker saved, and its outbox, without PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from contract_schema.renewal import SlaRecord
from renewal_sync.adapters.ports import OutboxRow
from renewal_sync.domain.renewal import RenewalState


class FakeStore:
    def __init__(self) -> None:
        self.states: dict[str, tuple[RenewalState, int]] = {}
        self.scorecard_rows: dict[str, SlaRecord] = {}
        self.outbox: list[OutboxRow] = []
        self.saves = 0  # transactions

    def load_states(self, partitions: Sequence[int] | None = None) -> Iterator[tuple[RenewalState, int]]:
        for state, partition in list(self.states.values()):
            if partitions is None or partition in partitions:
                yield state, partition

    def scorecards(self, counterparty_ids: Sequence[str]) -> dict[str, SlaRecord]:
        return {c: self.scorecard_rows[c] for c in counterparty_ids if c in self.scorecard_rows}

    def scorecard(self, counterparty_id: str) -> SlaRecord | None:
        return self.scorecard_rows.get(counterparty_id)

    def save(self, states: Iterable[tuple[RenewalState, int]], scorecards: dict[str, SlaRecord],
             outbox: Sequence[OutboxRow]) -> None:
        for state, partition in states:
            self.states[state.contract_id] = (state, partition)
        self.scorecard_rows.update(scorecards)
        # Stable event ids are unique in the real outbox: a repeat is dropped there too.
        seen = {(r.target, r.event_id) for r in self.outbox}
        self.outbox.extend(r for r in outbox if (r.target, r.event_id) not in seen)
        self.saves += 1
