"""What makes a crash of a Faust worker unable to lose an effect, a table write or an input: no
offset is committed before the broker has acknowledged every record produced so far, a RocksDB
store that may be ahead of its changelog after a crash is discarded and rebuilt from the changelog
(docs/adr/0005), and after every rebalance each stream partition is read from where it must be, in
order (a partition with no committed offset from its beginning; docs/adr/0009). A worker whose input
waits while nothing moves says why in its log (`StallWatch`). Used by both Faust services
(invoice-validator, obligation-engine)."""

from __future__ import annotations

import asyncio
import gc
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


def seek_safely_after_rebalance(consumer: Any, topics: Collection[str]) -> None:
    """Make the seek Faust does after every rebalance put each stream partition where it must be, and
    keep every record fetched from anywhere else away from the agents (docs/adr/0005, 0009).

    Faust (0.15.3) lets the consumer fetch while it recovers the tables, drops what it fetched for
    the stream partitions then, and rewinds them with "seek to committed offsets". Two things go
    wrong there, and this hook mends both:

    - aiokafka's `seek_to_committed` only moves partitions whose committed offset is above 0, so a
      partition nobody has committed yet (a worker killed before its first commit, a new group) stays
      past the dropped records. Such partitions are sought to their beginning, which is what
      `consumer_auto_offset_reset="earliest"` means for them.
    - Faust resumes the stream partitions just *before* it seeks them, and its fetch loop goes on
      handing out what it fetched from the old position: later records before earlier ones, then the
      earlier ones dropped as "already read" and their offsets committed as a gap. Seen under kills
      as invoices decided out of order (wrong cumulative amounts) and as invoices never decided.
      Fetches and seeks take turns (the consumer thread would run them side by side), each batch is
      tagged with the number of seeks done before it was fetched, from the resume until the seek is
      done nothing of the stream topics is handed out, and a stream record fetched before the last
      seek is left out: that seek moved the position back, so it is fetched again, in order. Other
      records (table changelogs) pass untouched.
    """
    thread = consumer._thread  # the thread that owns the aiokafka consumer (ThreadDelegateConsumer)
    seek_to_committed = thread.seek_to_committed
    wanted = frozenset(topics)
    state = {"seeks_done": 0, "batch_after": 0, "pending": False}

    # The consumer thread runs two calls at a time: a fetch running beside the seek could come back with
    # records of either position. Fetches and seeks take turns, so a batch is from before or after a seek.
    turns = asyncio.Lock()

    async def seek_to_committed_or_beginning() -> Mapping[Any, int | None]:
        async with turns:
            try:
                committed: Mapping[Any, int | None] = await seek_to_committed()
                fresh = sorted((tp for tp, offset in committed.items() if not offset and tp.topic in wanted),
                               key=lambda tp: (tp.topic, tp.partition))
                if fresh:
                    log.debug("no committed offset for %s: reading them from the beginning",
                              ", ".join(f"{tp.topic}[{tp.partition}]" for tp in fresh))
                    await thread.seek_to_beginning(*fresh)
                return committed
            finally:
                state["seeks_done"] += 1  # whatever was fetched before this may be from the old position

    thread.seek_to_committed = seek_to_committed_or_beginning

    perform_seek, getmany, fetch = consumer.perform_seek, consumer.getmany, consumer._getmany
    resume_partitions = consumer.resume_partitions

    def resume_then_hold(tps: Any) -> None:
        tps = list(tps)
        if any(tp.topic in wanted for tp in tps):
            state["pending"] = True  # the seek comes next
        resume_partitions(tps)

    async def seek_then_release() -> None:
        state["pending"] = True
        try:
            await perform_seek()
        finally:
            state["pending"] = False

    async def tagged_fetch(*args: Any, **kwargs: Any) -> Any:
        async with turns:
            records = await fetch(*args, **kwargs)
            state["batch_after"] = state["seeks_done"]
        return records

    async def in_order_getmany(timeout: float) -> Any:
        async for tp, message in getmany(timeout):
            if tp.topic in wanted:
                for _ in range(600):  # a resume is followed by its seek; never wait for one forever
                    if not state["pending"]:
                        break
                    await asyncio.sleep(0.05)
                if state["batch_after"] != state["seeks_done"]:
                    continue  # fetched before the last seek, which fetches it again from where it must be
            yield tp, message

    # Faust's fetch loop looks these up on the instance, so these take their place.
    consumer.resume_partitions = resume_then_hold
    consumer.perform_seek = seek_then_release
    consumer._getmany = tagged_fetch
    consumer.getmany = in_order_getmany


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


class StallWatch:
    """Says, in one log line, why a Faust worker that has input waiting is not moving.

    Called on a timer: when records were waiting at the last call and none was processed since, it
    logs the consumer's own view (which partitions are active, paused or buffered, the flow and
    recovery flags, read and committed offsets against the highwater) and what the producer still
    holds, so the operator (and a failing test) sees where the work stopped.
    """

    def __init__(self, app: Any, barrier: DeliveryBarrier, topics: Collection[str]) -> None:
        self.app, self.barrier, self.topics = app, barrier, frozenset(topics)
        self.handled = 0  # records the agents finished; the service counts them
        self._last = -1

    def lagging(self) -> dict[Any, tuple[int | None, int | None, int]]:
        consumer = self.app.consumer
        out = {}
        for tp in consumer.assignment():
            if tp.topic not in self.topics:
                continue
            high = consumer.highwater(tp)
            read, committed = consumer._read_offset.get(tp), consumer._committed_offset.get(tp)
            if high is not None and high > (committed or 0):
                out[tp] = (read, committed, high)
        return out

    def check(self) -> str | None:
        """The report when input waits and nothing was handled since the last check, else None."""
        lagging = self.lagging()
        stalled = bool(lagging) and self.handled == self._last
        self._last = self.handled
        if not stalled:
            return None
        consumer = self.app.consumer
        active = consumer._active_partitions
        parts = ", ".join(
            f"{tp.topic}[{tp.partition}] read={r} committed={c} high={h}"
            f"{' paused' if tp in consumer._paused_partitions else ''}"
            f"{' buffered' if tp in consumer._buffered_partitions else ''}"
            f"{' inactive' if active is not None and tp not in active else ''}"
            for tp, (r, c, h) in sorted(lagging.items(), key=lambda i: (i[0].topic, i[0].partition)))
        return (f"no record handled since the last check while input waits: flow_active={consumer.flow_active} "
                f"in_recovery={self.app.in_recovery} producer_buffer={self.app.producer.buffer.size} "
                f"unacked_sends={self.barrier.pending} handled={self.handled}; {parts}; agents at: "
                + " | ".join(awaiting(t) for t in asyncio.all_tasks() if "agent" in repr(t.get_coro()).lower()))


def awaiting(task: asyncio.Task[Any]) -> str:
    """Where a task is suspended: the chain of coroutines it awaits, innermost last."""
    chain: list[str] = []
    obj: Any = task.get_coro()
    while obj is not None and len(chain) < 30:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None) or getattr(obj, "gi_frame", None)
        if frame is None and type(obj).__name__ in ("coroutine_wrapper", "async_generator_asend"):
            inner = [r for r in gc.get_referents(obj) if hasattr(r, "cr_frame") or hasattr(r, "ag_frame")]
            if inner:  # what `await` reached through a wrapper without a public handle
                obj = inner[0]
                continue
        if frame is None:
            chain.append(type(obj).__name__)
            break
        chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        obj = getattr(obj, "cr_await", None) or getattr(obj, "ag_await", None) or getattr(obj, "gi_yieldfrom", None)
    return " > ".join(chain)
