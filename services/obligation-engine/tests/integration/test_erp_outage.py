"""An ERP outage delays a milestone release, it never drops it (docs/adr/0012).

The real worker against the real broker, and the ERP simulator (`mesh-sim erp`) as its own process with
the fault gate, so `/chaos/fault` can make its port refuse connections or answer 429 with Retry-After.
The outage (25 s of refused connections) is far longer than one delivery round (3 attempts, 0.05 s
apart here, about 8 s with the defaults), which is when the release used to be dead-lettered with
"failed for good: ConnectError". The give-up stays at its default (24 h) here; it is tested with a
compressed one in test_worker.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from obligation_engine.samples import contract

from contract_schema import Alert, MilestoneCompleted, ObligationScheduled, Origin, ReleaseMilestoneBilling
from contract_schema.topics import (
    ALERTS,
    CLOCK,
    CONTRACT_EVENTS,
    CONTRACT_STATE,
    ERP_MILESTONE_COMMANDS,
    ERP_PERFORMANCE,
    OBLIGATION_EVENTS,
    SCORECARD,
)
from mesh_testing import create_topics, free_port, stop_processes, unique_name, wait_for

from .conftest import ERP_TOKEN, PARTITIONS, T0, Stack

OUTAGE_SECONDS = 25.0


class ErpSimulator:
    """`mesh-sim erp` as a subprocess: what it received is read back over HTTP."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        script = shutil.which("mesh-sim", path=str(Path(sys.executable).parent)) or "mesh-sim"
        env = {**os.environ, "SIM_FAULT_GATE": "true", "ERP_SIM_TOKEN": ERP_TOKEN, "MESH_CLOCK": "system",
               "MESH_HTTP_HOST": "127.0.0.1", "MESH_LOG_LEVEL": "WARNING"}
        self.log = open(log_dir / "erp-simulator.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([script, "erp", "--port", str(self.port)], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, timeout=10)
        wait_for(self._up, timeout=30, interval=0.1, message="ERP simulator up")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _up(self) -> bool:
        try:
            return self.http.get("/healthz").is_success
        except httpx.TransportError:
            return False

    def fault(self, mode: str, seconds: float, retry_after: int = 1) -> None:
        self.http.post("/chaos/fault", json={"mode": mode, "seconds": seconds, "retry_after": retry_after}
                       ).raise_for_status()

    def refusing(self) -> bool:
        try:
            httpx.post(self.url + "/milestones/probe/probe/release", timeout=2)
        except httpx.ConnectError:
            return True
        except httpx.TransportError:
            return False
        return False

    def received(self, kind: str, contract_id: str) -> list[dict[str, Any]]:
        try:  # the read-back is behind the same gate: refused too while the port is closed
            items: list[dict[str, Any]] = self.http.get("/received", params={"kind": kind}).json()
        except httpx.TransportError:
            return []
        return [i for i in items if f"/milestones/{contract_id}/" in i["path"]]

    def stop(self) -> None:
        self.http.close()
        stop_processes([self.proc], grace=10)
        self.log.close()


@pytest.fixture(scope="module")
def outage(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, ErpSimulator]]:
    prefix = unique_name("oe-erp") + "."
    names = [prefix + t.name for t in (CONTRACT_STATE, CONTRACT_EVENTS, ERP_PERFORMANCE, OBLIGATION_EVENTS,
                                       ERP_MILESTONE_COMMANDS, ALERTS, SCORECARD)]
    create_topics(kafka_bootstrap, names + [n + ".dlq" for n in names[:3]], partitions=PARTITIONS)
    create_topics(kafka_bootstrap, [prefix + CLOCK.name], partitions=1)
    log_dir = tmp_path_factory.mktemp("obligation-engine-erp-outage")
    erp = ErpSimulator(log_dir)
    s = Stack(kafka_bootstrap, prefix, unique_name("clock"), unique_name("obligation-engine"), erp,  # type: ignore[arg-type]
              log_dir)
    s.advance(T0)
    s.follow()
    # The default give-up (24 h); rounds 1 s apart at first, at most 3 s, so the test sees several.
    s.start(OBLIGATION_ERP_GIVE_UP_AFTER_HOURS="24", OBLIGATION_ERP_ROUND_DELAY="1",
            OBLIGATION_ERP_MAX_ROUND_DELAY="3")
    s.wait_ready()
    try:
        yield s, erp
    finally:
        s.stop()
        s._stop.set()
        erp.stop()


def _complete(stack: Stack, cid: str) -> None:
    stack.send(MilestoneCompleted(contract_id=cid, obligation_id="go-live", source_system="contract-registry",
                                  origin=Origin.CONTRACT, occurred_at=stack.now, completed_at=stack.now))


def _scheduled(stack: Stack, cid: str) -> None:
    stack.send(contract(cid, stack.now.date(), now=stack.now))
    stack.wait(lambda: any(e.instance_id == "go-live" for e in stack.events(cid, ObligationScheduled)),
               f"{cid} scheduled")


def _dead(stack: Stack, cid: str) -> list[Any]:
    return [s for s in stack.records(cid) if s.topic.endswith(".dlq")]


def test_an_erp_outage_longer_than_a_round_delays_the_release_and_sends_it_once(
        outage: tuple[Stack, ErpSimulator]) -> None:
    stack, erp = outage
    cid, other = unique_name("c-out"), unique_name("c-other")
    _scheduled(stack, cid)
    erp.fault("refuse", OUTAGE_SECONDS)
    stack.wait(erp.refusing, "ERP refusing connections")
    down_at = time.monotonic()
    _complete(stack, cid)
    command = stack.wait(lambda: stack.records(cid, ReleaseMilestoneBilling), "command on the topic")[0]

    # Other contracts' work goes on while the release waits for ERP.
    _scheduled(stack, other)
    assert time.monotonic() - down_at < OUTAGE_SECONDS and erp.refusing(), "the outage ended too early to tell"

    released = stack.wait(lambda: erp.received("milestone-release", cid), "release accepted after the outage",
                          timeout=OUTAGE_SECONDS + 60)
    assert time.monotonic() - down_at >= OUTAGE_SECONDS - 1  # it did wait for ERP
    assert released[0]["headers"]["idempotency-key"] == command.ce_id
    assert released[0]["accepted"] and released[0]["body"]["payload"]["obligation_id"] == "go-live"

    # A 429 with Retry-After: the relay waits at least that long before calling ERP again.
    _complete(stack, other)
    erp.fault("throttled", 6, retry_after=4)
    throttled = stack.wait(lambda: erp.received("fault-injected", other), "throttled call", timeout=30)
    done = stack.wait(lambda: erp.received("milestone-release", other), "release accepted after throttling",
                      timeout=60)
    calls = sorted(erp.received("fault-injected", other) + done, key=lambda i: i["seq"])
    first = throttled[0]
    after = [c for c in calls if c["seq"] > first["seq"]]
    gap = (datetime.fromisoformat(after[0]["at"]) - datetime.fromisoformat(first["at"])).total_seconds()
    assert gap >= 3.9, [(c["kind"], c["at"]) for c in calls]

    # Exactly once each, nothing dead-lettered, no red alert (checked after the second release, which
    # leaves the first one's relay ample time to have sent a duplicate).
    assert len(erp.received("milestone-release", cid)) == 1
    assert len(erp.received("milestone-release", other)) == 1
    for c in (cid, other):
        assert _dead(stack, c) == []
        assert not [a for a in stack.events(c, Alert) if a.alert_type == "obligation.erp-release-failed"]
