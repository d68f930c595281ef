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
    """Faust's consumer as its fetch loop sees it: `getmany` fetches a batch through `_getmany` (the
    consumer thread) and hands it out record by record, yielding to the loop between them as Faust's
    delivery does; `perform_seek` goes through the thread's `seek_to_committed`."""

    def __init__(self, thread: FakeConsumerThread, batch: list[tuple[str, int]]) -> None:
        self._thread, self.batch = thread, batch
        self.resumed: list[TopicPartition] = []

    def resume_partitions(self, tps: list[TopicPartition]) -> None:
        self.resumed += tps

    async def perform_seek(self) -> None:
        await self._thread.seek_to_committed()

    async def _getmany(self, active: object, timeout: float) -> list[tuple[str, int]]:
        await asyncio.sleep(0)
        return list(self.batch)

    async def getmany(self, timeout: float) -> Any:
        for topic, offset in await self._getmany(None, timeout):
            await asyncio.sleep(0)
            yield TopicPartition(topic, 0), offset


async def _drain(consumer: FakeConsumer) -> list[tuple[str, int]]:
    return [(tp.topic, offset) async for tp, offset in consumer.getmany(1.0)]


def test_stream_records_fetched_before_a_seek_never_reach_the_agents() -> None:
    """A batch fetched from the old position is left out from the seek on (the seek fetches it again,
    in order); a changelog record in it passes; a batch fetched after the seek is handed out whole."""
    consumer = FakeConsumer(FakeConsumerThread({}), [("in", 131), ("in", 132), ("app-t-changelog", 7), ("in", 133)])
    seek_safely_after_rebalance(consumer, {"in"})

    async def scenario() -> list[tuple[str, int]]:
        out = []
        async for tp, offset in consumer.getmany(1.0):
            out.append((tp.topic, offset))
            if offset == 131:
                await consumer.perform_seek()
        return out

    assert asyncio.run(scenario()) == [("in", 131), ("app-t-changelog", 7)]
    consumer.batch = [("in", 0), ("in", 1)]
    assert asyncio.run(_drain(consumer)) == [("in", 0), ("in", 1)]


def test_nothing_of_the_stream_topics_is_handed_out_between_their_resume_and_their_seek() -> None:
    """Faust resumes the stream partitions and only then seeks them: what is fetched in between comes
    from the old position and waits for the seek, which leaves it out."""
    consumer = FakeConsumer(FakeConsumerThread({}), [("in", 131), ("in", 132)])
    seek_safely_after_rebalance(consumer, {"in"})
    consumer.resume_partitions([TopicPartition("app-t-changelog", 0)])  # a changelog: nothing held
    assert asyncio.run(_drain(consumer)) == [("in", 131), ("in", 132)]

    async def resume_fetch_then_seek() -> list[tuple[str, int]]:
        consumer.resume_partitions([TopicPartition("in", 0)])
        drained = asyncio.ensure_future(_drain(consumer))
        await asyncio.sleep(0.1)
        assert not drained.done()  # held until the seek is done
        await consumer.perform_seek()
        return await drained

    assert asyncio.run(resume_fetch_then_seek()) == []
    assert consumer.resumed[-1] == TopicPartition("in", 0)
    consumer.batch = [("in", 0), ("in", 1)]
    assert asyncio.run(_drain(consumer)) == [("in", 0), ("in", 1)]


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
