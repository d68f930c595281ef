"""SIGKILL of the worker by pid while obligations fall due under the topic clock: after the restart
every due transition is on the topic, each under exactly one ce_id (none lost, none doubled under a
second id). Contracts keep being registered during the run, so snapshots are in flight at the kill
too (a snapshot whose state was lost after its offset was committed would leave its contract
unscheduled for good, and its transitions would be missing here)."""

from __future__ import annotations

import signal
from collections import defaultdict
from datetime import datetime, timedelta

from obligation_engine.domain import engine
from obligation_engine.domain.config import EngineConfig
from obligation_engine.domain.engine import Publish
from obligation_engine.domain.model import ContractState
from obligation_engine.samples import contract

from contract_schema import ObligationDueSoon, ObligationEscalated, ObligationOverdue, ObligationScheduled
from contract_schema.topics import OBLIGATION_EVENTS
from mesh_testing import unique_name

from .conftest import Stack

TRANSITIONS = (ObligationDueSoon, ObligationOverdue, ObligationEscalated)
Key = tuple[str, str, str]  # contract, instance, transition


def _expected(cid: str, registered: datetime, end: datetime) -> dict[Key, datetime]:
    """What the pure decider says falls due for this contract by `end`, with when."""
    cfg = EngineConfig()
    snap = contract(cid, registered.date(), now=registered)
    state, _ = engine.apply_snapshot(ContractState(cid, 0), snap, registered, cfg)
    _, effects = engine.advance(state, end, cfg)
    return {(cid, e.event.instance_id, type(e.event).__name__): e.event.occurred_at  # type: ignore[attr-defined]
            for e in effects if isinstance(e, Publish) and isinstance(e.event, TRANSITIONS)}


def _published(stack: Stack, cids: set[str]) -> dict[Key, set[str]]:
    """Distinct ce_ids per transition seen on clm.obligation.events.v1."""
    out: dict[Key, set[str]] = defaultdict(set)
    topic = stack.topic(OBLIGATION_EVENTS.name)
    for s in list(stack.seen):
        ev = s.event
        if s.topic == topic and isinstance(ev, TRANSITIONS) and ev.contract_id in cids:
            out[(ev.contract_id, ev.instance_id, type(ev).__name__)].add(s.ce_id)
    return out


def test_sigkill_while_transitions_are_published_loses_and_doubles_none(stack: Stack) -> None:
    t0 = stack.now
    expected: dict[Key, datetime] = {}
    cids: set[str] = set()

    def register(n: int) -> None:
        for _ in range(n):
            cid = unique_name("c-kill")
            cids.add(cid)
            stack.send(contract(cid, stack.now.date(), now=stack.now))
            expected.update(_expected(cid, stack.now, t0 + timedelta(days=DAYS)))

    def caught_up() -> bool:
        seen = _published(stack, cids)
        return all(k in seen for k, when in expected.items() if when <= stack.now)

    DAYS, KILL_DAYS, DOWN_DAYS = 16, (7, 10), 2
    register(20)  # one wave: their transitions fall due in bursts on the same days
    stack.wait(lambda: len({s.event.contract_id for s in stack.seen if isinstance(s.event, ObligationScheduled)
                            and s.event.contract_id in cids}) == len(cids), "first wave scheduled", timeout=60)
    kills = 0
    day = 0
    while day < DAYS:
        day += 1
        before = len(_published(stack, cids))
        stack.advance(t0 + timedelta(days=day))
        if day <= 12:
            register(2)  # snapshots in flight all along, before and after the kills
        if day in KILL_DAYS:
            stack.wait(lambda before=before: len(_published(stack, cids)) > before, "the day's burst under way")
            assert stack.proc is not None
            stack.stop(signal.SIGKILL)  # by pid, mid-burst
            kills += 1
            for _ in range(DOWN_DAYS):  # time passes while it is down: caught up on recovery
                day += 1
                stack.advance(t0 + timedelta(days=day))
            stack.start()
            stack.wait(caught_up, f"caught up after kill {kills}", timeout=90)
        else:
            stack.wait(caught_up, f"day {day} published", timeout=60)

    seen = _published(stack, cids)
    assert kills == len(KILL_DAYS)
    missing = sorted(k for k in expected if k not in seen)
    assert not missing, f"transitions never published: {missing[:10]} ({len(missing)})"
    doubled = {k: ids for k, ids in seen.items() if len(ids) != 1}
    assert not doubled, f"transitions published under more than one ce_id: {doubled}"
    unexpected = sorted(k for k in seen if k not in expected)
    assert not unexpected, f"transitions nobody expected: {unexpected[:10]}"
    assert len(expected) > 20 * 3  # the run covered what it claims: many transitions per contract


def test_sigkill_before_the_first_commit_applies_every_snapshot(stack: Stack) -> None:
    """A worker killed before it ever committed an offset (a new consumer group; the kill test above
    can kill that early too): the restarted worker fetches the input while it recovers its tables,
    Faust drops those records and seeks back to the committed offsets, and there are none. Every
    snapshot, from before the kill and from while it was down, must still get its contract scheduled
    (docs/adr/0009)."""
    stack.stop()
    stack.app_id = unique_name("obligation-engine")  # a new group: nothing committed yet
    stack.start(OBLIGATION_COMMIT_INTERVAL="3600")  # and nothing committed before the kill either
    stack.wait_ready()

    def register(n: int) -> set[str]:
        cids = {unique_name("c-first") for _ in range(n)}
        for cid in cids:
            stack.send(contract(cid, stack.now.date(), now=stack.now))
        return cids

    def scheduled(cids: set[str]) -> set[str]:
        return {s.event.contract_id for s in list(stack.seen)
                if isinstance(s.event, ObligationScheduled) and s.event.contract_id in cids}

    before = register(10)
    stack.wait(lambda: scheduled(before) == before, "first contracts scheduled", timeout=60)
    stack.stop(signal.SIGKILL)
    during = register(10)  # sent while it is down
    stack.start()
    every = before | during
    stack.wait(lambda: scheduled(every) == every, "every contract scheduled after the restart", timeout=90)
