"""The obligation engine's service layer: what happens on each input, under a per-contract lock.

Every handler: load state -> pure decider (domain/engine) -> perform the effects and wait until Kafka
has them -> save state. A crash between effects and save makes the redelivered input recompute the
same effects with the same stable ce_ids, which consumers drop; a saved transition is never fired
again, because it is in the state.

HANDLERS (at the end) says what happens on each event type of the input topics; the topic's other
contract events need nothing (the snapshot that accompanies them carries the change). The internal
topics have one handler each: `on_tick` (a due-index tick, or the outcome of an ERP release round,
docs/adr/0012) and `on_scorecard_part` (a contract's scorecard, summed per counterparty).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from contract_schema import (
    ContractSnapshot,
    ContractTerminated,
    DecodeError,
    DeliverableAccepted,
    Envelope,
    MilestoneCompleted,
    ReleaseMilestoneBilling,
    Scorecard,
    SlaMeasurement,
    TopicSpec,
    decode,
)
from mesh_common.clock import Clock
from mesh_common.due_index import DueIndex
from mesh_common.faust_kafka import partition_for
from mesh_common.ops import PROCESSED
from mesh_common.tracing import consume_span

from .adapters.due_ticks import DueTicks
from .adapters.erp import ErpRelay, HeldRelease, RoundOutcome
from .adapters.faust_app import Output, RawRecord
from .domain import engine
from .domain.config import EngineConfig
from .domain.engine import CallErp, DeadLetter, Effect, Publish, ScorecardChanged
from .domain.model import ContractState, Parked, PendingRelease
from .domain.scorecard import contract_scorecard, counterparty_scorecard
from .settings import SERVICE

log = logging.getLogger(__name__)

Decider = Callable[[ContractState, Any], tuple[ContractState, list[Effect]]]


class ObligationService:
    """What the agents of one worker process share: the tables, the due index, the ERP relay."""

    def __init__(self, *, cfg: EngineConfig, clock: Clock, out: Output, contracts: Any, counterparties: Any,
                 ticks: DueTicks, inputs: Mapping[str, TopicSpec], parts_topic: str, partitions: int,
                 give_up: timedelta) -> None:
        self.cfg, self.clock, self.out, self.ticks = cfg, clock, out, ticks
        # contract id -> ContractState json (instances with their status = the fired markers, parked records)
        self.contracts = contracts
        # counterparty id -> {contract id: contract scorecard json}
        self.counterparties = counterparties
        self.inputs, self.parts_topic, self.partitions, self.give_up = inputs, parts_topic, partitions, give_up
        self.relay: ErpRelay | None = None
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # ------------------------------------------------------------------ input topics

    async def handle(self, rec: RawRecord) -> None:
        try:
            env = decode(rec.value, rec.headers)
        except DecodeError as exc:
            await self.out.dead_letter(rec, exc)
            return
        if (misplaced := self._misplaced(rec.topic, env)) is not None:
            await self.out.dead_letter(rec, misplaced)
            return
        with consume_span(SERVICE, rec.topic, rec.headers):
            try:
                if (handler := HANDLERS.get(type(env.event))) is not None:
                    await handler(self, env, rec)
            except Exception as exc:  # bad input is data, not a crash: dead-letter it and go on
                log.exception("handling %s from %s[%s]@%s failed", env.type, rec.topic, rec.partition, rec.offset)
                await self.out.dead_letter(rec, exc)
                return
        PROCESSED.labels(SERVICE, rec.topic).inc()

    def _misplaced(self, topic: str, env: Envelope) -> str | None:
        spec = self.inputs.get(topic)
        return None if spec is None else spec.misplaced(env.event)

    async def on_snapshot(self, env: Envelope, rec: RawRecord) -> None:
        ev = env.event
        assert isinstance(ev, ContractSnapshot)
        state = await self._update(ev.contract_id, rec, lambda s, now: engine.apply_snapshot(s, ev, now, self.cfg))
        for parked in state.parked:  # the contract (or a new obligation) may be what they waited for
            await self._retry_parked(parked)

    async def on_termination(self, env: Envelope, rec: RawRecord) -> None:
        ev = env.event
        assert isinstance(ev, ContractTerminated)
        await self._update(ev.contract_id, rec,
                           lambda s, now: engine.apply_termination(s, ev.terminated_on, now, self.cfg))

    async def on_performance(self, env: Envelope, rec: RawRecord) -> None:
        ev = env.event
        assert isinstance(ev, MilestoneCompleted | DeliverableAccepted | SlaMeasurement)
        cfg = self.cfg

        def decide(state: ContractState, now: Any) -> tuple[ContractState, list[Effect]]:
            if isinstance(ev, SlaMeasurement):
                new, effects = engine.apply_measurement(state, event_id=env.id, m=ev, now=now, cfg=cfg)
            else:
                done_at = ev.completed_at if isinstance(ev, MilestoneCompleted) else ev.accepted_at
                new, effects = engine.apply_completion(
                    state, event_id=env.id, obligation_id=ev.obligation_id, completed_at=done_at, origin=ev.origin,
                    source_system=ev.source_system, evidence_ref=ev.evidence_ref, now=now, cfg=cfg)
            return _unpark(new, env.id), effects

        try:
            await self._update(ev.contract_id, rec, decide, trigger=rec)
        except engine.Park as p:
            log.info("parking %s: %s", env.id, p.reason)
            parked = Parked(env.id, rec.topic, rec.partition, rec.offset, rec.key, rec.value, tuple(rec.headers),
                            self.clock.now(), p.reason)
            await self._update(ev.contract_id, rec, lambda s, now: (engine.park(s, parked), []))
        except engine.Reject as r:
            await self._update(ev.contract_id, rec, lambda s, now: (_unpark(s, env.id), []))
            await self.out.dead_letter(rec, r.reason)

    async def _retry_parked(self, p: Parked) -> None:
        rec = RawRecord.parked(p)
        await self.on_performance(decode(rec.value, rec.headers), rec)

    # ------------------------------------------------------------------ internal topics

    async def on_tick(self, rec: RawRecord) -> None:
        doc = json.loads(rec.value)
        cid = doc["contract_id"]
        log.info("tick for %s from %s[%s]@%s", cid, rec.topic, rec.partition, rec.offset)
        if self.contracts.get(cid) is None:
            log.warning("tick for %s on %s[%s]: no state here", cid, rec.topic, rec.partition)
        elif "erp" in doc:
            await self._record_round(cid, rec, doc["erp"])
        else:
            await self._advance(cid, rec)

    async def _advance(self, cid: str, rec: RawRecord) -> None:
        raw = self.contracts.get(cid)
        expire = True
        if raw is not None and engine.parked_expired(ContractState.from_json(raw), self.clock.now(), self.cfg):
            # A parked record is dead-lettered as unknown only once the contract-state partition has been
            # read up to its end: after a kill or a rebalance the snapshot it waits for can still be in
            # the backlog of the inputs agent, which runs apart from this one (docs/adr/0009).
            expire = await self.ticks.state_read_to_end(cid, rec.partition)
        await self._update(cid, rec, lambda s, now: engine.advance(s, now, self.cfg, expire_parked=expire))
        if not expire:
            log.info("parked records of %s expired, but %s[%s] is not read to its end yet: checked again in 1 s",
                     cid, self.ticks.state_topic, rec.partition)
            self.ticks.check_again((cid, engine.PARK_KEY), 1.0)

    async def _record_round(self, cid: str, rec: RawRecord, erp: dict[str, Any]) -> None:
        """The outcome of one ERP delivery round, reported by the relay through the contract's partition."""
        at = datetime.fromisoformat(erp["at"])

        def decide(s: ContractState, now: datetime) -> tuple[ContractState, list[Effect]]:
            return engine.release_outcome(s, erp["command_id"], ok=erp["ok"], permanent=erp["permanent"],
                                          error=erp.get("error"), at=at, give_up=self.give_up, now=now,
                                          counted=erp.get("counted", True))

        state = await self._update(cid, rec, decide)
        if self.relay is not None:
            self.relay.keep_only(cid, {r.command_id for r in state.releases})

    async def report_round(self, o: RoundOutcome) -> None:
        """The relay's report of one round, sent to the contract's partition of the ticks topic."""
        value = json.dumps({"contract_id": o.contract_id,
                            "erp": {"command_id": o.command_id, "ok": o.ok, "permanent": o.permanent,
                                    "error": o.error, "at": o.at.isoformat(), "counted": o.counted}}).encode()
        await (await self.out.send(self.ticks.ticks_topic, o.contract_id.encode(), value, o.partition))

    async def on_scorecard_part(self, rec: RawRecord) -> None:
        card = Scorecard.model_validate_json(rec.value)
        cp = card.counterparty_id
        parts = json.loads(self.counterparties.get(cp) or b"{}")
        parts[card.contract_id or ""] = card.model_dump(mode="json")
        total = counterparty_scorecard(cp, [Scorecard.model_validate(v) for v in parts.values()], self.clock.now())
        await asyncio.gather(await self.out.send_event(total, _scorecard_id(total)))
        self.counterparties[cp] = json.dumps(parts).encode()

    # ------------------------------------------------------------------ state

    async def _update(self, cid: str, rec: RawRecord, decide: Decider,
                      trigger: RawRecord | None = None) -> ContractState:
        async with self._locks[cid]:
            raw = self.contracts.get(cid)
            old = ContractState.from_json(raw) if raw is not None else ContractState(cid, rec.partition)
            new, effects = decide(old, self.clock.now())
            if new is old and not effects:
                return old
            new.partition = rec.partition
            await self._perform(new, effects)  # in Kafka before the state that says "done" is saved
            calls = [e for e in effects if isinstance(e, CallErp)]
            if calls and self.relay is None:
                log.warning("OBLIGATION_ERP_BASE_URL not set: release %s only published",
                            [e.event_id for e in calls])
            elif calls:  # held in the state first, then sent by the relay, outside this agent
                held = None if trigger is None else Parked(
                    trigger.topic + f"[{trigger.partition}]@{trigger.offset}", trigger.topic, trigger.partition,
                    trigger.offset, trigger.key, trigger.value, tuple(trigger.headers), self.clock.now(),
                    "completed the milestone whose ERP release is pending")
                for e in calls:
                    new = engine.hold_release(new, e.event_id, e.command, held)
            self.contracts[cid] = new.to_json()
            self.ticks.reindex(old, new)
            if self.relay is not None:
                for r in new.releases:
                    if r.command_id not in self.relay.held and all(o.command_id != r.command_id for o in old.releases):
                        self.relay.hold(_held(new, r))
            return new

    async def rebuild_index(self) -> None:
        """After every rebalance: index exactly what this worker's assigned partitions hold."""
        assigned = self.ticks.assigned()
        index: DueIndex[tuple[str, str]] = DueIndex()
        where: dict[str, int] = {}
        releases: list[HeldRelease] = []
        for cid, raw in list(self.contracts.items()):
            state = ContractState.from_json(raw)
            if state.partition not in assigned:
                continue
            where[cid] = state.partition
            releases += [_held(state, r) for r in state.releases]
            for key, when in engine.wakeups(state, self.cfg).items():
                index.schedule((cid, key), when)
        if self.relay is not None:  # the releases of these partitions not accepted yet: all due now
            self.relay.replace(releases)
        self.ticks.replace(index, where)
        log.info("due index rebuilt: %d entries for %d contracts on partitions %s (all assigned: %s)", len(index),
                 len(where), sorted(assigned), self.ticks.all_assigned())

    # ------------------------------------------------------------------ effects

    async def _perform(self, state: ContractState, effects: list[Effect]) -> None:
        pending = [await self.out.send_event(e.event, e.event_id) for e in effects if isinstance(e, Publish)]
        await asyncio.gather(*pending)  # in Kafka before the state that says "done" is saved
        for e in effects:
            if isinstance(e, DeadLetter):
                await self.out.dead_letter(RawRecord.parked(e.parked), e.reason)
        if any(isinstance(e, ScorecardChanged) for e in effects):
            card = contract_scorecard(state, self.clock.now())
            if card is not None:
                part = card.model_dump_json().encode()
                key = card.counterparty_id.encode()
                await asyncio.gather(
                    await self.out.send_event(card, _scorecard_id(card)),
                    await self.out.send(self.parts_topic, key, part, partition_for(key, self.partitions)))


def _held(state: ContractState, r: PendingRelease) -> HeldRelease:
    return HeldRelease(state.contract_id, state.partition, r.command_id,
                       ReleaseMilestoneBilling.model_validate_json(r.command), r.attempts)


def _unpark(state: ContractState, event_id: str) -> ContractState:
    if not any(p.event_id == event_id for p in state.parked):
        return state
    new = state.copy()
    new.parked = tuple(p for p in new.parked if p.event_id != event_id)
    return new


def _scorecard_id(card: Scorecard) -> str:
    """Same figures, same id: a re-sent scorecard is recognisably the same one."""
    figures = card.model_dump_json(exclude={"updated_at", "window_start", "window_end"})
    return f"scorecard/{card.scorecard_id}/{card.window_end}/{hashlib.sha1(figures.encode()).hexdigest()[:16]}"


Handler = Callable[[ObligationService, Envelope, RawRecord], Awaitable[None]]

HANDLERS: Mapping[type, Handler] = {
    ContractSnapshot: ObligationService.on_snapshot,  # replan; then retry what was parked for it
    ContractTerminated: ObligationService.on_termination,  # cancel what falls after the termination date
    MilestoneCompleted: ObligationService.on_performance,  # complete; a contract-side milestone releases billing
    DeliverableAccepted: ObligationService.on_performance,
    SlaMeasurement: ObligationService.on_performance,  # measure the window; a breach earns a credit
}
