"""Time for one worker: a DueIndex of what its assigned partitions hold (rebuilt after every rebalance,
kept current by the service on every saved state), popped by a Faust timer into ticks on the contract's
own partition of the internal ticks topic; the tick agent, which owns that partition, applies every
transition due by now. Ticks go through a topic so every table write happens in the agent that owns
the partition. Also what this worker has read of the contract-state partitions (docs/adr/0009)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from datetime import datetime
from typing import Any

import faust
from faust.types import TP

from mesh_common.clock import Clock
from mesh_common.due_index import DueIndex

from ..domain import engine
from ..domain.config import EngineConfig
from ..domain.model import ContractState
from .faust_app import Output, RawRecord

log = logging.getLogger(__name__)


class DueTicks:
    def __init__(self, app: faust.App, out: Output, clock: Clock, cfg: EngineConfig, *, state_topic: str,
                 ticks_topic: str) -> None:
        self.app, self.out, self.clock, self.cfg = app, out, clock, cfg
        self.state_topic, self.ticks_topic = state_topic, ticks_topic
        self.index: DueIndex[tuple[str, str]] = DueIndex()
        self.where: dict[str, int] = {}  # contract id -> partition (of the contracts this worker holds)
        self.ready = False
        self._state_read: dict[int, int] = {}  # contract-state partition -> offset after the last one handled
        self._park_fences: dict[str, int] = {}  # contract -> state end offset to read before parked records expire
        self._loop: asyncio.AbstractEventLoop | None = None

    def reindex(self, old: ContractState, new: ContractState) -> None:
        self.where[new.contract_id] = new.partition
        before, after = engine.wakeups(old, self.cfg), engine.wakeups(new, self.cfg)
        for key in before.keys() - after.keys():
            self.index.cancel((new.contract_id, key))
        for key, when in after.items():
            self.index.schedule((new.contract_id, key), when)

    def replace(self, index: DueIndex[tuple[str, str]], where: dict[str, int]) -> None:
        self.index, self.where, self.ready = index, where, True

    def assigned(self) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.state_topic}

    def all_assigned(self) -> list[str]:
        return sorted(f"{tp.topic}[{tp.partition}]" for tp in self.app.assignor.assigned_actives())

    def handled(self, rec: RawRecord) -> None:
        """The inputs agent handled `rec`: a contract-state record moves what this worker has read."""
        if rec.topic == self.state_topic:
            self._state_read[rec.partition] = max(self._state_read.get(rec.partition, 0), rec.offset + 1)

    async def on_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self.ready = False  # the index is stale until it is rebuilt after recovery
        self._state_read.clear()  # a partition may come back with records this worker did not handle
        self._park_fences.clear()

    async def state_read_to_end(self, cid: str, partition: int) -> bool:
        """Whether this worker has handled every record that was on the contract-state partition when the
        contract's parked records first expired (the end offset is read once, so steady traffic on the
        partition cannot hold the expiry back for ever)."""
        tp = TP(self.state_topic, partition)
        if (need := self._park_fences.get(cid)) is None:
            try:
                ends = await asyncio.wait_for(self.app.consumer.highwaters(tp), 10)
            except Exception:  # broker failing over, consumer rebalancing: not known, so not read
                log.warning("end offset of %s not read", tp, exc_info=True)
                return False
            need = self._park_fences[cid] = int(ends.get(tp) or 0)
        consumer: Any = self.app.consumer
        committed = consumer._committed_offset.get(tp)  # the next offset to read; Faust has no accessor for it
        if max(self._state_read.get(partition, 0), int(committed or 0)) < need:
            return False
        self._park_fences.pop(cid, None)
        return True

    def check_again(self, key: tuple[str, str], delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, lambda: self.index.schedule(key, self.clock.now()))

    async def remember_loop(self) -> None:
        self._loop = asyncio.get_running_loop()

    def wake(self, _now: object = None) -> None:
        """Called from the clock follower's thread when the clock moves: check the index now, not at the next tick."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.fire_due()))

    async def fire_due(self) -> None:
        # Not while Faust is still rebalancing (it resumes and seeks the partitions after the index is
        # rebuilt): ticks sent in that window were seen to stall a partition of the ticks topic.
        if not self.ready or self.app.rebalancing:
            return
        now = self.clock.now()
        popped = list(self.index.pop_due(now))
        if not popped:
            return
        assigned = self.assigned()
        due: dict[str, list[tuple[tuple[str, str], datetime]]] = defaultdict(list)
        for key, when in popped:
            due[key[0]].append((key, when))
        sent, unsent = [], []
        try:
            for cid in sorted(due):
                partition = self.where.get(cid)
                if partition is None or partition not in assigned or not self.ready:
                    # Not (or no longer) ours: a rebalance is under way and the rebuild that follows
                    # replaces the index; keep the entries until then rather than lose them.
                    unsent += due[cid]
                    continue
                value = json.dumps({"contract_id": cid, "at": now.isoformat()}).encode()
                sent.append(await self.out.send(self.ticks_topic, cid.encode(), value, partition))
            await asyncio.gather(*sent)
        except Exception:
            log.exception("sending ticks failed; the due entries stay in the index")
            unsent = popped
        for key, when in unsent:
            if key not in self.index:
                self.index.schedule(key, when)
        log.info("ticks sent for %d of %d due contracts at %s", len(sent), len(due), now.isoformat())
