"""The state fence (an invoice waits for the contract state that was on the topic when it was sent) and
the snapshot order (an older snapshot never replaces a newer one in the contracts table)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from faust.types import TP
from invoice_validator import samples as s
from invoice_validator.adapters.contracts import is_older, table_value
from invoice_validator.adapters.state_fence import StateFence

STATE, INVOICES = "state", "invoices"


class Broker:
    """End offsets as the broker answers them, and the order in which they were asked for."""

    def __init__(self, ends: dict[str, int]) -> None:
        self.ends, self.asked = ends, list[str]()

    async def end_offset(self, tp: TP) -> int:
        self.asked.append(tp.topic)
        return self.ends[tp.topic]


def fence(broker: Broker, committed: int | None = None, assigned: bool = True) -> StateFence:
    return StateFence(STATE, broker.end_offset, lambda tp: committed,
                      lambda: {TP(STATE, 0)} if assigned else set(), poll_seconds=0.01)


async def test_an_invoice_waits_until_the_state_partition_reached_its_end_offset() -> None:
    broker = Broker({INVOICES: 11, STATE: 5})
    f = fence(broker)
    waiter = asyncio.create_task(f.wait(INVOICES, 0, 10))
    for offset in range(4):
        f.processed(0, offset)
        await asyncio.sleep(0.02)
        assert not waiter.done()  # offsets 0-3 processed, 4 still ahead
    f.processed(0, 4)
    assert await asyncio.wait_for(waiter, 1) is True
    assert broker.asked == [INVOICES, STATE]  # the invoice's partition first, then the state's


async def test_one_end_offset_read_covers_the_backlog_below_it_and_a_newer_invoice_reads_again() -> None:
    broker = Broker({INVOICES: 100, STATE: 3})
    f = fence(broker, committed=3)  # everything below 3 was processed and committed before
    for offset in range(100):
        assert await f.wait(INVOICES, 0, offset) is True
    assert broker.asked == [INVOICES, STATE]
    broker.ends = {INVOICES: 101, STATE: 4}
    waiter = asyncio.create_task(f.wait(INVOICES, 0, 100))
    await asyncio.sleep(0.05)
    assert not waiter.done() and broker.asked[2:] == [INVOICES, STATE]
    f.processed(0, 3)
    assert await asyncio.wait_for(waiter, 1) is True


async def test_a_revoked_partition_stops_the_wait_and_positions_are_forgotten() -> None:
    f = fence(Broker({INVOICES: 1, STATE: 9}), assigned=False)
    f.processed(0, 2)
    assert await asyncio.wait_for(f.wait(INVOICES, 0, 0), 1) is False
    f.reset()
    assert f.position(0) == 0


def test_an_older_snapshot_is_older_than_the_stored_one_and_a_redelivered_one_is_not() -> None:
    v1 = s.contract("C-1", versions=(s.terms(),))
    amendment = s.terms(version=2, effective_from=date(2026, 2, 1))
    v2 = s.contract("C-1", versions=(s.terms(), amendment), updated_at=s.T0 + timedelta(hours=1))
    assert is_older(v1, table_value(v2)) and not is_older(v2, table_value(v1))
    assert not is_older(v2, table_value(v2)) and not is_older(v1, None)
    # Same version, later change (activation, termination): ordered by updated_at.
    activated = v2.model_copy(update={"updated_at": v2.updated_at + timedelta(minutes=1)})
    assert is_older(v2, table_value(activated))
    # Entries written before the revision was stored are read from their JSON.
    legacy = {k: v for k, v in table_value(v2).items() if k != "revision"}
    assert is_older(v1, legacy) and not is_older(activated, legacy)


async def test_a_failed_end_offset_read_is_retried_and_never_skips_the_wait() -> None:
    broker = Broker({INVOICES: 1, STATE: 1})
    calls = [0]
    real = broker.end_offset

    async def flaky(tp: TP) -> int:
        calls[0] += 1
        if calls[0] == 1:
            raise ConnectionError("leader moved")
        return await real(tp)

    f = StateFence(STATE, flaky, lambda tp: None, lambda: {TP(STATE, 0)}, poll_seconds=0.01)
    waiter = asyncio.create_task(f.wait(INVOICES, 0, 0))
    await asyncio.sleep(0.05)
    assert not waiter.done()  # read on the second try; the state record at offset 0 is still ahead
    f.processed(0, 0)
    assert await asyncio.wait_for(waiter, 1) is True
