"""The Faust worker: agents on contract state, contract events, ERP performance and internal ticks;
a timer driving a per-worker due-date index; tables so state moves with partitions.

Guarantee: at-least-once (never Faust's exactly_once: docs/adr/0001).
Every handler runs under a per-contract lock: load state -> pure decider -> perform the
effects and wait until Kafka has them -> save state. A crash between effects and save makes
the redelivered input recompute the same effects with the same stable ce_ids, which
consumers drop; a saved transition is never fired again, because it is in the state.

Time: the timer pops what is due from the DueIndex (holding only this worker's assigned
partitions, rebuilt after every rebalance from the `contracts` table) and sends a tick to
the contract's own partition of an internal topic; the tick agent, which owns that partition,
applies every transition due by now. Ticks go through a topic so every table write happens
in the agent that owns the partition.

ERP: a milestone billing release is saved in the contract's state and sent by `ErpRelay`, a task
outside the agents, until ERP accepts it or the give-up time has passed; the outcome of each round
comes back through the ticks topic to the agent that owns the contract (docs/adr/0012).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import faust
from confluent_kafka.admin import AdminClient
from faust.types import TP

from contract_schema import (
    ContractSnapshot,
    ContractTerminated,
    DecodeError,
    DeliverableAccepted,
    Envelope,
    Event,
    MilestoneCompleted,
    ReleaseMilestoneBilling,
    Scorecard,
    SlaMeasurement,
    decode,
    encode,
)
from contract_schema.topics import (
    CONTRACT_STATE,
    topic_for,
)
from mesh_common.clock import Clock
from mesh_common.delivery import CircuitBreaker, RetryPolicy
from mesh_common.dlq import dead_letter_record
from mesh_common.due_index import DueIndex
from mesh_common.faust_delivery import DeliveryBarrier, seek_safely_after_rebalance
from mesh_common.faust_kafka import faust_broker, faust_credentials, partition_for
from mesh_common.ops import DEAD_LETTERED, PROCESSED
from mesh_common.provision import provision
from mesh_common.settings import KafkaSettings, ServiceSettings
from mesh_common.tracing import consume_span, current_traceparent, setup_tracing_from_env

from ..adapters.erp import ErpClient, ErpRelay, HeldRelease, RoundOutcome
from ..domain import engine
from ..domain.engine import CallErp, DeadLetter, Effect, Publish, ScorecardChanged
from ..domain.model import ContractState, Parked, PendingRelease
from ..domain.scorecard import contract_scorecard, counterparty_scorecard
from ..settings import SERVICE, SOURCE, EngineSettings
from .wiring import (
    INPUTS,
    OUTPUTS,
    TABLES,
    check_copartitioning,
    internal_topics,
    make_clock,
    serve_ops,
    topics_to_provision,
)

log = logging.getLogger(__name__)

Decider = Callable[[ContractState, Any], tuple[ContractState, list[Effect]]]


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def _headers(raw: Any) -> list[tuple[str, bytes]]:
    items = raw.items() if isinstance(raw, Mapping) else (raw or ())
    return [(str(k), v if isinstance(v, bytes) else str(v or "").encode()) for k, v in items]


class Engine:
    """Builds the Faust app and holds what the agents of one worker process share."""

    def __init__(self, settings: EngineSettings, kafka: KafkaSettings, clock: Clock) -> None:
        self.settings, self.kafka, self.clock = settings, kafka, clock
        self.cfg = settings.engine_config()
        n = settings.topic_partitions
        app = faust.App(
            settings.app_id, broker=faust_broker(kafka), broker_credentials=faust_credentials(kafka),
            store="memory://",
            datadir=Path(settings.data_dir or tempfile.mkdtemp(prefix=f"{settings.app_id}-")),
            processing_guarantee="at_least_once", topic_partitions=n,
            topic_replication_factor=settings.replication_factor, topic_allow_declare=True,
            table_standby_replicas=0, consumer_auto_offset_reset="earliest", web_enabled=False,
            stream_wait_empty=False, broker_session_timeout=settings.session_timeout,
            broker_heartbeat_interval=min(3.0, settings.session_timeout / 4),
            broker_commit_interval=settings.commit_interval,
        )
        self.app = app
        # Offsets are committed only once every effect and changelog record sent before is acked:
        # Faust's own flush gives up after 0.1 s without progress (docs/adr/0005).
        self.delivery = DeliveryBarrier()
        self.delivery.install(app.producer)
        # contract id -> ContractState json (instances with their status = the fired markers, parked records)
        self.contracts = app.Table(TABLES[0], default=None, partitions=n, key_type=str, value_type=bytes)
        # counterparty id -> {contract id: contract scorecard json}
        self.counterparties = app.Table(TABLES[1], default=None, partitions=n, key_type=str,
                                        value_type=bytes)

        def raw_topic(name: str, internal: bool = False) -> Any:
            return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                             partitions=n if internal else None, internal=internal)

        self.state_topic_name = settings.topic(CONTRACT_STATE.name)
        self._inputs_by_name = {settings.topic(t.name): t for t in INPUTS}
        self.ticks_topic_name = f"{settings.topic_prefix}{settings.app_id}-ticks"
        self.parts_topic_name = f"{settings.topic_prefix}{settings.app_id}-scorecard-parts"
        inputs = app.topic(*[settings.topic(t.name) for t in INPUTS], key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")
        app.agent(inputs, name="inputs")(self._inputs_agent)
        app.agent(raw_topic(self.ticks_topic_name, internal=True), name="ticks")(self._ticks_agent)
        app.agent(raw_topic(self.parts_topic_name, internal=True), name="scorecards")(self._scorecards_agent)
        # Without it, records of a never-committed partition fetched during recovery were skipped for
        # good: the restart stall after a kill before the first commit (docs/adr/0009).
        seek_safely_after_rebalance(app.consumer, {*inputs.topics, self.ticks_topic_name, self.parts_topic_name})
        app.timer(interval=settings.tick_interval, name="due-index")(self._fire_due)
        app.task(self._remember_loop)
        self.contracts.on_recover(self._rebuild_index)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]

        self.index: DueIndex[tuple[str, str]] = DueIndex()
        self.where: dict[str, int] = {}  # contract id -> partition (of the contracts this worker holds)
        self.ready = False
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._partitions: dict[str, int] = {}
        self._state_read: dict[int, int] = {}  # contract-state partition -> offset after the last one handled
        self._park_fences: dict[str, int] = {}  # contract -> state end offset to read before parked records expire
        self._loop: asyncio.AbstractEventLoop | None = None
        for spec in (*OUTPUTS, *INPUTS):  # look partition counts up now, not inside the event loop later
            self._partition_count(settings.topic(spec.name))
            if spec in INPUTS:
                self._partition_count(settings.topic(spec.dlq_name))
        # A Retry-After longer than an in-round backoff ends the round; the relay waits it out (docs/adr/0012).
        policy = RetryPolicy(settings.erp_attempts, settings.erp_base_delay, settings.erp_max_delay,
                             max_retry_after=settings.erp_max_delay)
        breaker = CircuitBreaker("erp-milestones", settings.erp_breaker_threshold, settings.erp_breaker_reset)
        self.erp = ErpClient(settings.erp_base_url, settings.erp_token, timeout=settings.erp_timeout,
                             policy=policy, breaker=breaker) if settings.erp_base_url else None
        self.give_up = timedelta(hours=settings.erp_give_up_after_hours)
        self.relay = ErpRelay(self.erp, self._report_round, base=settings.erp_round_delay,
                              cap=settings.erp_max_round_delay, concurrency=settings.erp_concurrency,
                              can_send=lambda: self.ready and not self.app.rebalancing) if self.erp else None
        if self.relay is not None:
            app.task(self.relay.run)

    # ------------------------------------------------------------------ agents

    async def _inputs_agent(self, stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            msg = event.message
            rec = RawRecord(msg.topic, msg.partition, msg.offset, msg.key or b"", msg.value or b"",
                            _headers(msg.headers))
            await self._process(rec)
            if rec.topic == self.state_topic_name:
                self._state_read[rec.partition] = max(self._state_read.get(rec.partition, 0), rec.offset + 1)
            yield None

    async def _process(self, rec: RawRecord) -> None:
        try:
            env = decode(rec.value, rec.headers)
        except DecodeError as exc:
            await self._dead_letter(rec, exc)
            return
        if (misplaced := self._misplaced(rec.topic, env)) is not None:
            await self._dead_letter(rec, misplaced)
            return
        with consume_span(SERVICE, rec.topic, rec.headers):
            try:
                await self._dispatch(env, rec)
            except Exception as exc:  # bad input is data, not a crash: dead-letter it and go on
                log.exception("handling %s from %s[%s]@%s failed", env.type, rec.topic, rec.partition, rec.offset)
                await self._dead_letter(rec, exc)
                return
        PROCESSED.labels(SERVICE, rec.topic).inc()

    def _misplaced(self, topic: str, env: Envelope) -> str | None:
        spec = self._inputs_by_name.get(topic)
        return None if spec is None else spec.misplaced(env.event)

    async def _dispatch(self, env: Envelope, rec: RawRecord) -> None:
        ev = env.event
        cfg = self.cfg
        if isinstance(ev, ContractSnapshot):
            state = await self._update(ev.contract_id, rec, lambda s, now: engine.apply_snapshot(s, ev, now, cfg))
            for parked in state.parked:  # the contract (or a new obligation) may be what they waited for
                await self._retry_parked(parked)
        elif isinstance(ev, ContractTerminated):
            await self._update(ev.contract_id, rec,
                               lambda s, now: engine.apply_termination(s, ev.terminated_on, now, cfg))
        elif isinstance(ev, MilestoneCompleted | DeliverableAccepted | SlaMeasurement):
            await self._performance(env, rec)
        # the topic's other contract events need nothing: the snapshot that accompanies them carries the change

    async def _performance(self, env: Envelope, rec: RawRecord) -> None:
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
            await self._dead_letter(rec, r.reason)

    async def _retry_parked(self, p: Parked) -> None:
        rec = RawRecord(p.topic, p.partition, p.offset, p.key, p.value, list(p.headers))
        await self._performance(decode(rec.value, rec.headers), rec)

    async def _ticks_agent(self, stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            msg = event.message
            doc = json.loads(msg.value)
            cid = doc["contract_id"]
            log.info("tick for %s from %s[%s]@%s", cid, msg.topic, msg.partition, msg.offset)
            if self.contracts.get(cid) is None:
                log.warning("tick for %s on %s[%s]: no state here", cid, msg.topic, msg.partition)
            else:
                rec = RawRecord(msg.topic, msg.partition, msg.offset, msg.key or b"", msg.value or b"", [])
                if "erp" in doc:
                    await self._record_round(cid, rec, doc["erp"])
                else:
                    await self._advance(cid, rec)
            yield None

    async def _advance(self, cid: str, rec: RawRecord) -> None:
        raw = self.contracts.get(cid)
        expire = True
        if raw is not None and engine.parked_expired(ContractState.from_json(raw), self.clock.now(), self.cfg):
            # A parked record is dead-lettered as unknown only once the contract-state partition has been
            # read up to its end: after a kill or a rebalance the snapshot it waits for can still be in
            # the backlog of the inputs agent, which runs apart from this one (docs/adr/0009).
            expire = await self._state_read_to_end(cid, rec.partition)
        await self._update(cid, rec, lambda s, now: engine.advance(s, now, self.cfg, expire_parked=expire))
        if not expire:
            log.info("parked records of %s expired, but %s[%s] is not read to its end yet: checked again in 1 s",
                     cid, self.state_topic_name, rec.partition)
            key = (cid, engine.PARK_KEY)
            asyncio.get_running_loop().call_later(1.0, lambda: self.index.schedule(key, self.clock.now()))

    async def _state_read_to_end(self, cid: str, partition: int) -> bool:
        """Whether this worker has handled every record that was on the contract-state partition when the
        contract's parked records first expired (the end offset is read once, so steady traffic on the
        partition cannot hold the expiry back for ever)."""
        tp = TP(self.state_topic_name, partition)
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

    async def _report_round(self, o: RoundOutcome) -> None:
        value = json.dumps({"contract_id": o.contract_id,
                            "erp": {"command_id": o.command_id, "ok": o.ok, "permanent": o.permanent,
                                    "error": o.error, "at": o.at.isoformat(), "counted": o.counted}}).encode()
        await (await self.app.producer.send(self.ticks_topic_name, o.contract_id.encode(), value, o.partition,
                                            None, None))

    async def _scorecards_agent(self, stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            card = Scorecard.model_validate_json(event.message.value)
            cp = card.counterparty_id
            parts = json.loads(self.counterparties.get(cp) or b"{}")
            parts[card.contract_id or ""] = card.model_dump(mode="json")
            total = counterparty_scorecard(cp, [Scorecard.model_validate(v) for v in parts.values()], self.clock.now())
            await asyncio.gather(await self._send_event(total, _scorecard_id(total)))
            self.counterparties[cp] = json.dumps(parts).encode()
            yield None

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
            self.where[cid] = new.partition
            self._reindex(old, new)
            if self.relay is not None:
                for r in new.releases:
                    if r.command_id not in self.relay.held and all(o.command_id != r.command_id for o in old.releases):
                        self.relay.hold(_held(new, r))
            return new

    def _reindex(self, old: ContractState, new: ContractState) -> None:
        before, after = engine.wakeups(old, self.cfg), engine.wakeups(new, self.cfg)
        for key in before.keys() - after.keys():
            self.index.cancel((new.contract_id, key))
        for key, when in after.items():
            self.index.schedule((new.contract_id, key), when)

    def _assigned(self) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.state_topic_name}

    async def _on_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self.ready = False  # the index is stale until it is rebuilt after recovery
        self._state_read.clear()  # a partition may come back with records this worker did not handle
        self._park_fences.clear()

    async def _rebuild_index(self) -> None:
        """After every rebalance: index exactly what this worker's assigned partitions hold."""
        assigned = self._assigned()
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
        self.index, self.where, self.ready = index, where, True
        log.info("due index rebuilt: %d entries for %d contracts on partitions %s (all assigned: %s)", len(index),
                 len(where), sorted(assigned),
                 sorted(f"{tp.topic}[{tp.partition}]" for tp in self.app.assignor.assigned_actives()))

    async def _remember_loop(self) -> None:
        self._loop = asyncio.get_running_loop()

    def wake(self, _now: object = None) -> None:
        """Called from the clock follower's thread when the clock moves: check the index now, not at the next tick."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._fire_due()))

    async def _fire_due(self) -> None:
        # Not while Faust is still rebalancing (it resumes and seeks the partitions after the index is
        # rebuilt): ticks sent in that window were seen to stall a partition of the ticks topic.
        if not self.ready or self.app.rebalancing:
            return
        now = self.clock.now()
        popped = list(self.index.pop_due(now))
        if not popped:
            return
        assigned = self._assigned()
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
                sent.append(await self.app.producer.send(self.ticks_topic_name, cid.encode(), value, partition,
                                                         None, None))
            await asyncio.gather(*sent)
        except Exception:
            log.exception("sending ticks failed; the due entries stay in the index")
            unsent = popped
        for key, when in unsent:
            if key not in self.index:
                self.index.schedule(key, when)
        log.info("ticks sent for %d of %d due contracts at %s", len(sent), len(due), now.isoformat())

    # ------------------------------------------------------------------ effects

    async def _perform(self, state: ContractState, effects: list[Effect]) -> None:
        pending = [await self._send_event(e.event, e.event_id) for e in effects if isinstance(e, Publish)]
        await asyncio.gather(*pending)  # in Kafka before the state that says "done" is saved
        for e in effects:
            if isinstance(e, DeadLetter):
                p = e.parked
                await self._dead_letter(RawRecord(p.topic, p.partition, p.offset, p.key, p.value, list(p.headers)),
                                        e.reason)
        if any(isinstance(e, ScorecardChanged) for e in effects):
            card = contract_scorecard(state, self.clock.now())
            if card is not None:
                part = card.model_dump_json().encode()
                key = card.counterparty_id.encode()
                await asyncio.gather(
                    await self._send_event(card, _scorecard_id(card)),
                    await self.app.producer.send(self.parts_topic_name, key, part,
                                                 partition_for(key, self.settings.topic_partitions), None, None))

    async def _send_event(self, event: Event, event_id: str) -> Any:
        record = encode(event, source=SOURCE, event_id=event_id, time=self.clock.now(),
                        traceparent=current_traceparent())
        topic = self.settings.topic(topic_for(type(event)).name)
        partition = partition_for(record.key, self._partition_count(topic))
        return await self.app.producer.send(topic, record.key, record.value, partition, None, record.headers)

    async def _dead_letter(self, rec: RawRecord, error: BaseException | str) -> None:
        dlq_topic, record = dead_letter_record(topic=rec.topic, partition=rec.partition, offset=rec.offset,
                                               key=rec.key, value=rec.value, headers=rec.headers, error=error,
                                               service=SERVICE, now=self.clock.now())
        partition = partition_for(record.key, self._partition_count(dlq_topic))
        await (await self.app.producer.send(dlq_topic, record.key, record.value, partition, None, record.headers))
        DEAD_LETTERED.labels(SERVICE, rec.topic).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", rec.topic, rec.partition, rec.offset,
                    getattr(error, "reason", None) or error)

    def _partition_count(self, topic: str) -> int:
        if topic not in self._partitions:
            md = AdminClient(self.kafka.admin()).list_topics(topic, timeout=10).topics.get(topic)
            self._partitions[topic] = len(md.partitions) if md is not None and md.partitions else 1
        return self._partitions[topic]


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


# ---------------------------------------------------------------------- process


def main(argv: Sequence[str] | None = None) -> None:
    service = ServiceSettings()
    logging.basicConfig(level=service.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings, kafka = EngineSettings(), KafkaSettings()
    setup_tracing_from_env(SERVICE)
    if settings.provision_topics:
        report = provision(kafka.admin(), topics_to_provision(settings))
        for drift in report.drift:
            log.warning("topic drift: %s", drift)
    for drift in provision(kafka.admin(), internal_topics(settings)).drift:
        log.warning("topic drift: %s", drift)
    problems = check_copartitioning(kafka, settings)
    if problems:
        for p in problems:
            log.error(p)
        sys.exit(2)
    clock, follower = make_clock(service, settings, kafka)
    log.info("clock: %s at %s", type(clock).__name__, clock.now().isoformat())
    eng = Engine(settings, kafka, clock)
    if follower is not None:
        follower.on_advance = eng.wake
    if settings.http_enabled:
        serve_ops(lambda: eng.ready, service)
    level = {"warning": "warn", "critical": "crit"}.get(service.log_level.lower(), service.log_level.lower())
    sys.argv = [sys.argv[0], "worker", "--loglevel", level, "--without-web", *(argv or [])]
    eng.app.main()


if __name__ == "__main__":
    main()
