"""Two replicas share the partitions: each contract's stages fire exactly once in total, and when a
replica leaves, the other takes over its contracts (loaded from PostgreSQL) and keeps firing."""

from __future__ import annotations

import re
from collections import Counter

import httpx

from mesh_testing import unique_name, wait_for

from .conftest import Launch
from .harness import day, snapshot


def _contracts_held(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    match = re.search(r"^renewal_contracts (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_two_replicas_fire_each_stage_once_and_take_over_on_leave(launch: Launch) -> None:
    first, bus, crm = launch("salesforce")
    assert crm is not None
    ids = [unique_name(f"C-scale{i}") for i in range(12)]
    bus.tick(day(2026, 1, 1))
    for cid in ids:
        bus.contract(snapshot(cid))
    second = first.replica().start()
    try:
        wait_for(lambda: _contracts_held(first.url) > 0 and _contracts_held(second.url) > 0
                 and _contracts_held(first.url) + _contracts_held(second.url) == len(ids), timeout=60,
                 message="the contracts split between both replicas")
        bus.tick(day(2026, 8, 3))
        for cid in ids:
            wait_for(lambda cid=cid: crm.stages(cid) == ["120d"], timeout=30,
                     message=f"{cid} 120d: {[(c, crm.stages(c)) for c in ids]}")

        first.stop()  # leaves the group: its partitions move to the second replica
        wait_for(lambda: _contracts_held(second.url) == len(ids), timeout=60, message="takeover")
        bus.tick(day(2026, 9, 2))
        for cid in ids:
            wait_for(lambda cid=cid: crm.stages(cid) == ["120d", "90d"], timeout=30, message=f"{cid} 90d")
        assert all(crm.per_stage(cid) == Counter({"120d": 1, "90d": 1}) for cid in ids)
        assert crm.rejected == []
    finally:
        second.stop()
