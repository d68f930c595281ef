"""A completion parked for a contract whose snapshot is on the contract-state topic is never dead-lettered
as unknown, even when its parking time has passed while the worker was down (docs/adr/0009).

The fault campaign saw such completions dead-lettered "unknown contract ... still unknown" after replica
kills. The restarted worker's ticks agent expired the parked record as soon as it had rebuilt its due
index, while the inputs agent, which runs apart from it, had not yet read the snapshot out of the
contract-state backlog. Here a backlog of snapshots on the same partition makes that window seconds long.
"""

from __future__ import annotations

import signal
from datetime import timedelta

from obligation_engine.samples import contract

from contract_schema import MilestoneCompleted, ObligationCompleted, ObligationScheduled, Origin
from mesh_common.faust_kafka import partition_for
from mesh_testing import unique_name

from .conftest import PARTITIONS, Stack

BACKLOG = 300  # snapshots ahead of the one the parked completion waits for, on the same partition


def _on_partition(partition: int, prefix: str) -> str:
    while True:
        name = unique_name(prefix)
        if partition_for(name.encode(), PARTITIONS) == partition:
            return name


def test_a_parked_completion_waits_for_a_snapshot_still_in_the_backlog_after_a_kill(stack: Stack) -> None:
    cid = unique_name("c-late")
    partition = partition_for(cid.encode(), PARTITIONS)
    probe = _on_partition(partition, "c-probe")
    stack.send(contract(probe, stack.now.date(), now=stack.now))
    stack.wait(lambda: stack.events(probe, ObligationScheduled), "probe scheduled")

    # ERP reports the milestone before the engine has seen the contract: parked, and the park saved.
    stack.send(MilestoneCompleted(contract_id=cid, obligation_id="go-live", source_system="sap", origin=Origin.ERP,
                                  occurred_at=stack.now, completed_at=stack.now))
    stack.wait(lambda: stack.changelog_has(cid), "parked state in the changelog")
    stack.stop(signal.SIGKILL)

    # While the worker is down: a backlog on the contract's state partition, then its snapshot, then
    # the clock moves past the parking time (1 h here).
    fillers = [_on_partition(partition, "c-fill") for _ in range(BACKLOG)]
    for name in fillers:
        stack.send(contract(name, stack.now.date(), now=stack.now))
    stack.send(contract(cid, stack.now.date(), now=stack.now))
    stack.advance_by(timedelta(days=2))

    stack.start()
    done = stack.wait(lambda: stack.events(cid, ObligationCompleted), "parked completion applied", timeout=180)
    assert done[0].origin == Origin.ERP and done[0].obligation_id == "go-live"
    stack.wait(lambda: stack.events(fillers[-1], ObligationScheduled), "backlog read", timeout=180)
    dead = [s for s in stack.records(cid) if s.topic.endswith(".dlq")]
    assert dead == [], [s.headers.get("dlq_reason") for s in dead]
