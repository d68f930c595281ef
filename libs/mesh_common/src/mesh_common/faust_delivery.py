"""What makes a crash of a Faust worker unable to lose an effect, a table write or an input: no
offset is committed before the broker has acknowledged every record produced so far, a RocksDB
store that may be ahead of its changelog after a crash is discarded and rebuilt from the changelog
(docs/adr/0005), and a partition with no committed offset is read from its beginning after every
rebalance (docs/adr/0009). Used by both Faust services (invoice-validator, obligation-engine)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class DeliveryBarrier:
    """Tracks every record handed to the Faust producer until the broker acknowledged it.

    Faust flushes its producer before it commits offsets, but its buffer's flush returns as soon as
    no record left the buffer for 0.1 s (faust.transport.producer.ProducerBuffer.flush_atmost), which
    under load ("producer buffer full") is while effects and changelog records are still queued:
    the offsets of records whose effects were never sent got committed. Hooked into the producer's
    `flush`, `wait()` holds the commit until everything sent before it is acknowledged, and raises
    (so nothing is committed) when a send failed.
    """

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[Any]] = set()

    def install(self, producer: Any) -> None:
        send_soon, flush = producer.send_soon, producer.flush

        def tracked_send_soon(fut: asyncio.Future[Any]) -> None:
            self._pending.add(fut)
            fut.add_done_callback(self._pending.discard)
            send_soon(fut)

        async def flush_and_wait() -> None:
            await flush()
            await self.wait()

        producer.send_soon = tracked_send_soon
        producer.flush = flush_and_wait

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def wait(self) -> None:
        """Until every record sent so far is acknowledged (records sent meanwhile are not waited for)."""
        pending = list(self._pending)
        if pending:
            await asyncio.gather(*pending)


def rewind_uncommitted(consumer: Any, topics: Collection[str]) -> None:
    """After every rebalance, read a partition of `topics` that has no committed offset from its start.

    Faust (0.15.3) lets the consumer fetch while it recovers the tables, drops what it fetched for
    the stream partitions then, and rewinds them with "seek to committed offsets". aiokafka's
    `seek_to_committed` only moves partitions whose committed offset is above 0, so a partition
    nobody has committed yet (a worker killed before its first commit, a new group) stays past the
    dropped records: the agent never sees them and waits for new ones. Hooked into the consumer
    thread's `seek_to_committed`, this seeks those partitions to the beginning, which is what
    `consumer_auto_offset_reset="earliest"` means for them.
    """
    thread = consumer._thread  # the thread that owns the aiokafka consumer (ThreadDelegateConsumer)
    seek_to_committed = thread.seek_to_committed
    wanted = frozenset(topics)

    async def seek_to_committed_or_beginning() -> Mapping[Any, int | None]:
        committed: Mapping[Any, int | None] = await seek_to_committed()
        fresh = sorted((tp for tp, offset in committed.items() if not offset and tp.topic in wanted),
                       key=lambda tp: (tp.topic, tp.partition))
        if fresh:
            log.debug("no committed offset for %s: reading them from the beginning",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in fresh))
            await thread.seek_to_beginning(*fresh)
        return committed

    thread.seek_to_committed = seek_to_committed_or_beginning


class CrashMarker:
    """A file that exists while the worker runs and is removed after a clean stop.

    Found at start, it means the last run was killed: its RocksDB store may hold table writes whose
    changelog records never reached the broker (the store is written first), so a redelivered input
    would look handled while its effects were never sent. The store is then deleted, and Faust
    rebuilds it from the changelog topics, like Kafka Streams wipes its state after an unclean
    shutdown. A memory store needs no marker: it is rebuilt from the changelogs at every start.
    """

    def __init__(self, data_dir: Path, table_dir: Path) -> None:
        self.path = data_dir / "worker-running"
        self.table_dir = table_dir

    def start(self) -> bool:
        """Discard the local store when the last run did not stop cleanly; True if it did."""
        crashed = self.path.exists()
        if crashed and self.table_dir.exists():
            log.warning("the last run did not stop cleanly: rebuilding the local table store from the changelogs")
            shutil.rmtree(self.table_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("running\n")
        return crashed

    def stopped_cleanly(self) -> None:
        self.path.unlink(missing_ok=True)
