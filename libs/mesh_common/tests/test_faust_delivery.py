"""The delivery barrier, the crash marker and the rewind of never-committed partitions, without a
broker (the kill tests of the Faust services cover them end to end)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from mesh_common.faust_delivery import CrashMarker, DeliveryBarrier, seek_safely_after_rebalance


class TopicPartition(NamedTuple):  # the shape of aiokafka's
    topic: str
    partition: int


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


class FakeConsumerThread:
    """The two calls of Faust's consumer thread the rewind uses, over fixed committed offsets."""

    def __init__(self, committed: dict[TopicPartition, int | None]) -> None:
        self.committed = committed
        self.rewound: list[TopicPartition] = []

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        return self.committed

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.rewound += partitions


class FakeConsumer:
    """Faust's consumer as its fetch loop sees it: `getmany` hands out a fetched batch record by record
    (yielding to the loop between them, as Faust's delivery does), `perform_seek` moves the position."""

    def __init__(self, thread: FakeConsumerThread, batch: list[int]) -> None:
        self._thread, self.batch, self.sought = thread, batch, asyncio.Event()
        self.resumed: list[TopicPartition] = []

    def resume_partitions(self, tps: list[TopicPartition]) -> None:
        self.resumed += tps

    async def perform_seek(self) -> None:
        await asyncio.sleep(0.01)  # the seek goes to the consumer thread and back
        self.sought.set()

    async def getmany(self, timeout: float) -> Any:
        for offset in self.batch:
            await asyncio.sleep(0)
            yield TopicPartition("in", 0), offset


def test_no_record_fetched_before_a_seek_reaches_the_agents() -> None:
    """A batch from the old position is cut off when the seek starts, and nothing is handed out while
    it runs: the seek's position fetches those records again, in order."""
    consumer = FakeConsumer(FakeConsumerThread({}), [131, 132, 133, 134])
    seek_safely_after_rebalance(consumer, {"in"})

    async def scenario() -> tuple[list[int], list[int]]:
        before: list[int] = []
        async for _, offset in consumer.getmany(1.0):
            before.append(offset)
            if offset == 132:
                seek = asyncio.ensure_future(consumer.perform_seek())
                await asyncio.sleep(0)  # the seek has started
        during = [offset async for _, offset in consumer.getmany(1.0)]
        await seek
        return before, during

    before, during = asyncio.run(scenario())
    assert before == [131, 132] and during == []
    consumer.batch = [0, 1]
    assert asyncio.run(_drain(consumer)) == [0, 1]  # after the seek, records flow again


def test_nothing_is_handed_out_between_resuming_the_stream_partitions_and_seeking_them() -> None:
    """Faust resumes the stream partitions and only then seeks them; what the fetch loop would hand
    out in between comes from the old position."""
    consumer = FakeConsumer(FakeConsumerThread({}), [131, 132])
    seek_safely_after_rebalance(consumer, {"in"})
    consumer.resume_partitions([TopicPartition("app-contracts-changelog", 0)])  # a changelog: no hold
    assert asyncio.run(_drain(consumer)) == [131, 132]
    consumer.resume_partitions([TopicPartition("in", 0)])
    assert asyncio.run(_drain(consumer)) == [] and consumer.resumed[-1] == TopicPartition("in", 0)
    asyncio.run(consumer.perform_seek())
    consumer.batch = [0, 1]
    assert asyncio.run(_drain(consumer)) == [0, 1]


async def _drain(consumer: FakeConsumer) -> list[int]:
    return [offset async for _, offset in consumer.getmany(1.0)]


def test_partitions_of_the_given_topics_without_a_committed_offset_are_read_from_the_beginning() -> None:
    committed: dict[TopicPartition, int | None] = {
        TopicPartition("in", 0): None, TopicPartition("in", 1): 12, TopicPartition("in", 2): 0,
        TopicPartition("ticks", 0): None, TopicPartition("app-contracts-changelog", 0): None}
    thread = FakeConsumerThread(committed)
    consumer = FakeConsumer(thread, [])
    seek_safely_after_rebalance(consumer, {"in", "ticks"})
    assert asyncio.run(thread.seek_to_committed()) == committed  # Faust still gets what was committed
    # partition 1 stays at its committed offset; a changelog is not a stream partition
    assert sorted(thread.rewound) == [TopicPartition("in", 0), TopicPartition("in", 2), TopicPartition("ticks", 0)]
