"""The delivery barrier and the crash marker, without a broker (the kill tests of both Faust services
cover them end to end)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mesh_common.faust_delivery import CrashMarker, DeliveryBarrier


class FakeProducer:
    """Only what the barrier hooks: send_soon hands a future over, flush returns at once (like Faust's
    buffer flush giving up while records are still queued)."""

    def __init__(self) -> None:
        self.sent: list[asyncio.Future[Any]] = []

    def send_soon(self, fut: asyncio.Future[Any]) -> None:
        self.sent.append(fut)

    async def flush(self) -> None:
        return None


def test_flush_waits_until_every_record_sent_before_it_is_acknowledged() -> None:
    async def scenario() -> None:
        producer, barrier = FakeProducer(), DeliveryBarrier()
        barrier.install(producer)
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        producer.send_soon(first)
        producer.send_soon(second)
        flushing = asyncio.ensure_future(producer.flush())
        await asyncio.sleep(0)
        first.set_result("ack")
        await asyncio.sleep(0)
        assert not flushing.done() and barrier.pending == 1  # the commit still waits for the second
        second.set_result("ack")
        await flushing
        assert barrier.pending == 0

    asyncio.run(scenario())


def test_a_failed_send_fails_the_flush_so_nothing_is_committed() -> None:
    async def scenario() -> None:
        producer, barrier = FakeProducer(), DeliveryBarrier()
        barrier.install(producer)
        fut = asyncio.get_running_loop().create_future()
        producer.send_soon(fut)
        fut.set_exception(RuntimeError("broker gone"))
        with pytest.raises(RuntimeError):
            await producer.flush()

    asyncio.run(scenario())


def test_the_store_is_discarded_only_after_a_run_that_did_not_stop_cleanly(tmp_path: Path) -> None:
    tables = tmp_path / "v1" / "tables"
    tables.mkdir(parents=True)
    marker = CrashMarker(tmp_path, tables)
    assert marker.start() is False and tables.exists()  # first start
    marker.stopped_cleanly()
    assert marker.start() is False and tables.exists()  # after a clean stop: reused
    # killed: the marker is still there at the next start
    assert CrashMarker(tmp_path, tables).start() is True and not tables.exists()
