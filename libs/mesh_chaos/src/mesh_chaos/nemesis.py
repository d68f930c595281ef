"""The nemesis: faults on a seeded schedule, several at once, each recorded with when it ended.

Kinds (`--faults` takes families or exact kinds, comma-separated):
- `kill:<service>`: SIGKILL of one process (a random replica) by pid, restarted after a random delay;
- `broker-restart` (SIGTERM, controlled shutdown, start) and `broker-kill` (SIGKILL, pause, start);
- `pg-restart` (pg_ctl stop -m fast, start) and `pg-pause` (SIGSTOP of the postmaster and every backend,
  SIGCONT after 10-30 s);
- `partner:<erp|crm|smtp>:<unavailable|throttled|hang|refuse>`: the simulator's POST /chaos/fault window;
- `net-delay[:<service>]`: 200-1000 ms of latency (jitter up to half of it) both ways on the toxiproxy route
  between one service (a random one unless named) and the broker, for an outage window;
- `net-cut[:<service>]`: that route disabled for an outage window (open connections closed, new ones refused);
- `clock-leap`: the topic clock jumps 90-200 days ahead at the workload's next step; once per run.
Infrastructure faults (broker, PostgreSQL) never overlap each other; process kills, partner outages,
network faults (one at a time per route) and the clock leap overlap anything.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .harness import SERVICES, Mesh

log = logging.getLogger("mesh_chaos.nemesis")

PARTNERS = {"erp": "erp-simulator", "crm": "crm-simulator", "smtp": "smtp-catcher"}
MODES = ("unavailable", "throttled", "hang", "refuse")
FAMILIES: dict[str, list[str]] = {
    "kill": [f"kill:{s}" for s in SERVICES],
    "broker": ["broker-restart", "broker-kill"],
    "broker-restart": ["broker-restart"], "broker-kill": ["broker-kill"],
    "pg": ["pg-restart", "pg-pause"], "pg-restart": ["pg-restart"], "pg-pause": ["pg-pause"],
    "partner": [f"partner:{p}:{m}" for p in PARTNERS for m in MODES],
    "net": ["net-delay", "net-cut"], "net-delay": ["net-delay"], "net-cut": ["net-cut"],
    "clock": ["clock-leap"], "clock-leap": ["clock-leap"],
}
ALL_FAULTS = "kill,broker,pg,partner,net,clock"
NET = ("net-delay", "net-cut")
ONCE = ("clock-leap",)  # kinds that run once per run at most


def expand(spec: str) -> list[str]:
    kinds: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        for kind in FAMILIES.get(part, [part]):
            if kind not in kinds:
                kinds.append(kind)
    known = FAMILIES["broker"] + FAMILIES["pg"] + list(NET) + list(ONCE)
    known += [f"{n}:{s}" for n in NET for s in SERVICES]
    unknown = [k for k in kinds if not (k in known or k.startswith(("kill:", "partner:")))]
    if unknown:
        raise ValueError(f"--faults: unknown fault kind(s) {unknown}; families: {sorted(FAMILIES)}")
    return kinds


@dataclass
class Fault:
    kind: str
    target: str
    started: float  # monotonic
    ended: float | None = None  # restart done / window over
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def family(self) -> str:
        return self.kind.split(":")[0] if self.kind.startswith(("kill", "partner", "net-")) else self.kind


def needs_network(kinds: list[str]) -> bool:
    """Whether these kinds need the services' broker traffic routed through toxiproxy."""
    return any(k.split(":")[0] in NET for k in kinds)


class Nemesis:
    """`leap(days)` moves the topic clock that far ahead (the workload does it, as its next step) and returns
    the new date, or None if it could not; needed for `clock-leap`."""

    def __init__(self, mesh: Mesh, seed: int, kinds: list[str], interval: tuple[float, float] = (4.0, 12.0),
                 outage: tuple[float, float] = (5.0, 30.0), pause: tuple[float, float] = (10.0, 30.0),
                 leap: Callable[[int], str | None] | None = None) -> None:
        self.mesh, self.kinds, self.leap = mesh, kinds, leap
        self.rng = random.Random(seed * 7919 + 1)
        self.interval, self.outage, self.pause = interval, outage, pause
        self.faults: list[Fault] = []
        self._infra = threading.Lock()
        self._proc_locks: dict[str, threading.Lock] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def run(self, until: float) -> None:
        """Start faults until monotonic `until`: first every kind once (shuffled), then random kinds."""
        if not self.kinds:
            return
        queue = list(self.kinds)
        self.rng.shuffle(queue)
        again = [k for k in self.kinds if k not in ONCE]
        while not self._stop.is_set() and (queue or again):
            wait = self.rng.uniform(*self.interval)
            if time.monotonic() + wait >= until:
                break
            if self._stop.wait(wait):
                break
            kind = queue.pop(0) if queue else self.rng.choice(again)
            t = threading.Thread(target=self._one, args=(kind, self.rng.random()), name=f"fault-{kind}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def _one(self, kind: str, draw: float) -> None:
        rng = random.Random(draw)  # per fault, so thread timing does not change the delays drawn
        fault = Fault(kind, kind, time.monotonic())
        with self._lock:
            self.faults.append(fault)
        try:
            if kind.startswith("kill:"):
                self._kill(fault, kind.split(":", 1)[1], rng)
            elif kind.startswith("partner:"):
                _, partner, mode = kind.split(":")
                self._partner(fault, PARTNERS[partner], mode, rng)
            elif kind.split(":")[0] in NET:
                name, _, service = kind.partition(":")
                self._net(fault, name, service or None, rng)
            elif kind == "clock-leap":
                self._clock_leap(fault, rng)
            else:
                with self._infra:
                    fault.started = time.monotonic()
                    getattr(self, "_" + kind.replace("-", "_"))(fault, rng)
        except Exception as exc:  # a fault that could not be injected is reported, never crashes the run
            fault.error = f"{type(exc).__name__}: {exc}"
            log.warning("fault %s failed: %s", kind, fault.error)
        fault.ended = fault.ended or time.monotonic()

    def _kill(self, fault: Fault, service: str, rng: random.Random) -> None:
        procs = self.mesh.of(service)
        proc = procs[rng.randrange(len(procs))]
        lock = self._proc_locks.setdefault(proc.name, threading.Lock())
        with lock:  # one kill at a time per process
            fault.started = time.monotonic()
            fault.target = proc.name
            proc.held = True
            try:
                fault.detail["pid"] = proc.kill(signal.SIGKILL)
                delay = rng.uniform(0.5, 6.0)
                fault.detail["down_seconds"] = round(delay, 2)
                time.sleep(delay)  # the process stays dead this long (the fault itself)
                proc.start()
            finally:
                proc.held = False
            fault.ended = time.monotonic()
            fault.detail["new_pid"] = proc.pid

    def _partner(self, fault: Fault, sim: str, mode: str, rng: random.Random) -> None:
        seconds = round(rng.uniform(*self.outage), 1)
        fault.target = sim
        fault.detail.update(mode=mode, seconds=seconds)
        # One outage at a time per partner (a refused port also refuses its own control route).
        with self._proc_locks.setdefault(sim, threading.Lock()):
            fault.started = time.monotonic()
            resp = httpx.post(self.mesh.url(sim) + "/chaos/fault",
                              json={"mode": mode, "seconds": seconds, "retry_after": rng.randint(1, 5)}, timeout=10)
            resp.raise_for_status()
            time.sleep(seconds + 0.5)  # the outage window itself (and the gate reopening)
            fault.ended = time.monotonic()

    def _net(self, fault: Fault, name: str, service: str | None, rng: random.Random) -> None:
        proxy = self.mesh.toxiproxy
        if proxy is None:
            raise RuntimeError("network faults need the mesh started with network=True (toxiproxy routes)")
        service = service or rng.choice(sorted(proxy.routes))
        seconds = round(rng.uniform(*self.outage), 1)
        fault.target = service
        fault.detail.update(route=proxy.routes[service].address, seconds=seconds)
        with self._proc_locks.setdefault(f"net:{service}", threading.Lock()):  # one fault at a time per route
            fault.started = time.monotonic()
            if name == "net-delay":
                latency = rng.randint(200, 1000)
                jitter = rng.randint(0, latency // 2)
                fault.detail.update(latency_ms=latency, jitter_ms=jitter)
                proxy.add_latency(service, latency, jitter)
            else:
                proxy.set_enabled(service, False)
            try:
                time.sleep(seconds)  # the window itself
            finally:
                proxy.clear(service)
            fault.ended = time.monotonic()

    def _clock_leap(self, fault: Fault, rng: random.Random) -> None:
        if self.leap is None:
            raise RuntimeError("clock-leap needs the workload's leap callback")
        days = rng.randint(90, 200)
        fault.target = "clock"
        fault.detail["days"] = days
        to = self.leap(days)  # blocks until the workload has published the new date
        if to is None:
            raise RuntimeError(f"the workload did not leap {days} days (the run ended or the mesh refused the tick)")
        fault.detail["to"] = to
        fault.ended = time.monotonic()

    def _broker_restart(self, fault: Fault, rng: random.Random) -> None:
        fault.target = "kafka"
        self.mesh.broker_stop(hard=False)
        self.mesh.broker_start()
        fault.ended = time.monotonic()

    def _broker_kill(self, fault: Fault, rng: random.Random) -> None:
        fault.target = "kafka"
        fault.detail["pid"] = self.mesh.broker_pid()
        self.mesh.broker_stop(hard=True)
        time.sleep(rng.uniform(1.0, 5.0))  # broker down
        self.mesh.broker_start()
        fault.ended = time.monotonic()

    def _pg_restart(self, fault: Fault, rng: random.Random) -> None:
        fault.target = "postgres"
        self.mesh.postgres_stop()
        self.mesh.postgres_start()
        fault.ended = time.monotonic()

    def _pg_pause(self, fault: Fault, rng: random.Random) -> None:
        fault.target = "postgres"
        seconds = rng.uniform(*self.pause)
        fault.detail["seconds"] = round(seconds, 1)
        fault.detail["pids"] = len(self.mesh.postgres_pids())
        self.mesh.postgres_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)  # the pause itself
        finally:
            self.mesh.postgres_signal(signal.SIGCONT)
        fault.ended = time.monotonic()
