"""Decide an invoice only with the contract state that was on the state topic when it was sent.

The invoice and the contract-state agents are two streams with no order between them: after a kill or a
rebalance the state agent replays from its committed offset while the invoice agent already runs, and
even without faults it may simply be behind. An invoice read from partition p of its topic at offset o
therefore waits until the state agent has processed state partition p up to an end offset read *after*
the invoice's own partition was seen to hold offset o (docs/adr/0011). Both end offsets are read in that
order, so every state record appended before the invoice was sent lies below the state end offset; one
read covers every invoice below the invoice end offset it returned (a backlog costs one round trip).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from faust.types import TP
from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

FENCE_WAITS = Histogram("invoice_validator_state_fence_wait_seconds",
                        "How long an invoice waited for its contract-state partition to catch up")
FENCE_GAVE_UP = Counter("invoice_validator_state_fence_abandoned_total",
                        "Invoices left undecided because their partition moved away while waiting", ["reason"])

EndOffsets = Callable[[TP], Awaitable[int]]


class StateFence:
    def __init__(self, state_topic: str, end_offset: EndOffsets, committed: Callable[[TP], int | None],
                 assignment: Callable[[], Collection[TP]], poll_seconds: float = 0.5,
                 request_timeout: float = 10.0) -> None:
        self.state_topic = state_topic
        self._end_offset = end_offset  # the broker's end offset (next offset to be written) of a partition
        self._committed = committed  # the group's committed offset of a partition, as the consumer knows it
        self._assignment = assignment
        self._poll = poll_seconds
        self._request_timeout = request_timeout
        self._processed: dict[int, int] = {}  # state partition -> offset after the last one the state agent handled
        self._fences: dict[tuple[str, int], tuple[int, int]] = {}  # (topic, partition) -> (its end, state end)
        self._moved = asyncio.Event()

    def processed(self, partition: int, offset: int) -> None:
        """The state agent finished the record at `offset` (decided, skipped or dead-lettered)."""
        if offset + 1 > self._processed.get(partition, -1):
            self._processed[partition] = offset + 1
            self._moved.set()

    def reset(self) -> None:
        """Partitions were revoked: what this process handled before may no longer be what its tables hold."""
        self._processed.clear()
        self._fences.clear()
        self._moved.set()

    def position(self, partition: int) -> int:
        committed = self._committed(TP(self.state_topic, partition))
        return max(self._processed.get(partition, 0), committed or 0)

    async def required(self, topic: str, partition: int, offset: int) -> int:
        """The state offset partition `partition` must be processed to before the record at `offset` of
        `topic` (same partition number: the topics are co-partitioned) may be decided."""
        fence = self._fences.get((topic, partition))
        if fence is None or offset >= fence[0]:
            source_end = await self._end_offset(TP(topic, partition))  # first the invoice's partition ...
            state_end = await self._end_offset(TP(self.state_topic, partition))  # ... then the state's
            fence = self._fences[(topic, partition)] = (source_end, state_end)
        return fence[1]

    async def wait(self, topic: str, partition: int, offset: int) -> bool:
        """Wait until the state agent caught up for this record; False if the partition went elsewhere
        meanwhile (its new owner reads the record again from the committed offset)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            try:
                # Bounded: an end-offset request lost in a rebalance would otherwise hang the agent for good.
                need = await asyncio.wait_for(self.required(topic, partition, offset), self._request_timeout)
                break
            except Exception:  # broker failing over, consumer rebalancing: ask again, never decide blind
                log.warning("end offsets for %s[%s] not read; retrying", topic, partition, exc_info=True)
                if TP(self.state_topic, partition) not in self._assignment():
                    FENCE_GAVE_UP.labels("revoked").inc()
                    return False
                await asyncio.sleep(self._poll)
        if self.position(partition) >= need:
            return True
        reported = started
        while self.position(partition) < need:
            if loop.time() - reported > 30:  # say so while it waits, not only after
                reported = loop.time()
                log.warning("%s[%s]@%s still waiting (%.0f s) for %s[%s] to reach offset %s (at %s)", topic,
                            partition, offset, reported - started, self.state_topic, partition, need,
                            self.position(partition))
            if TP(self.state_topic, partition) not in self._assignment():
                FENCE_GAVE_UP.labels("revoked").inc()
                log.warning("%s[%s]@%s not decided: its state partition was revoked while it waited",
                            topic, partition, offset)
                return False
            self._moved.clear()
            try:
                await asyncio.wait_for(self._moved.wait(), self._poll)
            except TimeoutError:
                pass
        FENCE_WAITS.observe(loop.time() - started)
        log.info("%s[%s]@%s waited %.2f s for %s[%s] to reach offset %s", topic, partition, offset,
                 loop.time() - started, self.state_topic, partition, need)
        return True


def faust_fence(app: Any, state_topic: str) -> StateFence:
    """A fence over the Faust app's own consumer (its end offsets, committed offsets and assignment)."""

    async def end_offset(tp: TP) -> int:
        ends: Mapping[TP, int] = await app.consumer.highwaters(tp)
        return int(ends.get(tp) or 0)

    def committed(tp: TP) -> int | None:
        value = app.consumer._committed_offset.get(tp)  # Faust keeps no public accessor for it
        return None if value is None else int(value)

    return StateFence(state_topic, end_offset, committed, lambda: app.consumer.assignment())
