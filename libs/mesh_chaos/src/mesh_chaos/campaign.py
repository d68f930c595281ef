"""One campaign: start the mesh, run the workload and the nemesis together, quiesce, check, report."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .checker import Checker, Report, unhandled_red_alerts
from .flood import Flood
from .harness import Mesh
from .history import History
from .nemesis import Nemesis, expand, needs_network
from .workload import GaveUp, Workload

log = logging.getLogger("mesh_chaos")


@dataclass
class Options:
    seed: int = 1
    duration: float = 1200.0  # seconds of workload + faults
    rate: float = 2.0  # workload operations per second (target)
    faults: str = "kill,broker,pg,partner,net,clock"
    replicas: dict[str, int] = field(default_factory=lambda: {"invoice-validator": 2})
    quiesce: float = 240.0  # bound on how long the mesh may take to settle after the faults
    interval: tuple[float, float] = (4.0, 12.0)  # seconds between fault starts
    outage: tuple[float, float] = (5.0, 30.0)  # partner outage and network fault windows
    pause: tuple[float, float] = (10.0, 30.0)  # PostgreSQL pauses
    workdir: Path | None = None
    keep: bool = False  # keep the history even when the run passed
    flood: int = 0  # malformed records over the second half of the run (0: none)
    code: str | None = None  # git ref to run the mesh from (default: the working tree)


@dataclass
class Outcome:
    ok: bool
    report: dict[str, Any]
    table: str
    workdir: Path


class Supervisor:
    """Restarts a process that exited by itself (as Kubernetes would), and counts it as a crash."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.crashes: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due: dict[str, float] = {}  # process -> when to restart it (backoff, like a crash-looping pod)
        while not self._stop.wait(0.5):
            for p in self.mesh.procs.values():
                if p.held or p.popen is None or p.popen.poll() is None:
                    continue
                if p.name not in due:
                    n = sum(c["process"] == p.name for c in self.crashes)
                    self.crashes.append({"process": p.name, "returncode": p.popen.returncode, "at": time.time(),
                                         "log": str(p.log_path)})
                    due[p.name] = time.monotonic() + min(30.0, 2.0**n)
                    log.warning("%s exited by itself (rc %s): restarting", p.name, p.popen.returncode)
                elif time.monotonic() >= due[p.name]:
                    del due[p.name]
                    p.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def run(opts: Options) -> Outcome:
    kinds = expand(opts.faults) if opts.faults else []
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix=f"mesh-chaos-{opts.seed}-"))
    started = time.monotonic()
    mesh = Mesh.start(workdir, opts.replicas, code=opts.code, network=needs_network(kinds))
    log.info("mesh up in %.0fs (kafka %s, postgres %s), history in %s", time.monotonic() - started,
             mesh.bootstrap, mesh.database_url, workdir)
    history = History(mesh.bootstrap, workdir / "history.jsonl")
    workload = Workload(mesh, history, opts.seed)
    supervisor = Supervisor(mesh)
    nemesis = Nemesis(mesh, opts.seed, kinds, opts.interval, opts.outage, opts.pause, leap=workload.request_leap)
    ok = False
    try:
        workload.set_clock()
        mesh.wait_healthy([p.service for p in mesh.procs.values()], 120)
        connections, bypass = routed(mesh)  # before the faults: each service reaches the broker via its route
        until = time.monotonic() + opts.duration
        chaos = threading.Thread(target=nemesis.run, args=(until,), name="nemesis", daemon=True)
        chaos.start()
        flood = None
        if opts.flood:  # the second half of the run, so the first half is the clean baseline
            flood = Flood(mesh.bootstrap, opts.flood, opts.duration / 2)
            threading.Timer(opts.duration / 2, flood.start).start()
        steps = 0
        next_at = time.monotonic()
        while time.monotonic() < until:
            try:
                what = workload.step()
                log.debug("op %d: %s", steps, what)
            except GaveUp as exc:
                workload.stalls.append(str(exc))
                log.warning("workload: %s", exc)
            steps += 1
            next_at += 1.0 / opts.rate
            time.sleep(max(0.0, next_at - time.monotonic()))  # the workload's steady rate
            next_at = max(next_at, time.monotonic() - 1.0)
        nemesis.stop()
        chaos.join(60)
        workload.apply_leap(last=True)  # a leap asked for during the last operation; none after it
        nemesis.join()
        if flood is not None:
            flood.join(300)
        settled = quiesce(workload, history, mesh.consumer_groups(), opts.quiesce)
        report = Checker(mesh, history, workload, nemesis.faults, flood).run()
        for problem in bypass + routed(mesh)[1]:  # and after them (restarted processes, reconnections)
            report.add("network", "broken", problem)
        report.connections = connections
        for crash in supervisor.crashes:
            report.add("processes", "broken", f"{crash['process']} exited by itself (rc {crash['returncode']}); "
                                              f"log {crash['log']}")
        for stall in workload.stalls:
            report.add("workload", "broken", f"the mesh did not accept an operation: {stall}")
        if settled is None:
            report.add("quiescence", "broken", f"the mesh did not settle within {opts.quiesce:.0f}s")
        data = to_json(opts, report, nemesis, workload, settled, steps)
        table = render(data)
        ok = not report.violations
        (workdir / "report.json").write_text(json.dumps(data, indent=2, default=str))
        return Outcome(ok, data, table, workdir)
    finally:
        supervisor.stop()
        history.stop()
        workload.close()
        mesh.stop()
        if ok and not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def routed(mesh: Mesh) -> tuple[dict[str, list[int]], list[str]]:
    """With toxiproxy routes: the broker-side ports each service process holds connections to, and a problem
    for each process with a broker connection other than through its own proxy (to a broker port directly,
    or through another service's route). Both empty without routes."""
    assert mesh.kafka is not None
    peers: dict[str, list[int]] = {}
    problems = []
    for proc in mesh.procs.values():
        route = mesh.route(proc.service)
        if route is None or proc.pid is None:
            continue
        found = mesh.broker_peers(proc)
        peers[proc.name] = sorted(found)
        if found - {route.listen}:
            problems.append(f"{proc.name}: broker connections to ports {sorted(found)}, expected only its "
                            f"proxy {route.listen} (broker {mesh.kafka.port}, its listener {route.upstream})")
    return peers, problems


def quiesce(workload: Workload, history: History, groups: Sequence[str], bound: float,
            window: float = 10.0, poll: float = 1.0) -> float | None:
    """Seconds until every invoice has a verdict, no record arrived for 10 s while the broker was answering,
    and every service's consumer group was Stable with its committed offsets unchanged for those 10 s; None
    past `bound`. Silence alone is not enough: a broker that is down is silent (the services' records wait
    in their producers), and so is a consumer group stuck in a rebalance after kills, or a service still
    reading a backlog between two commits. Red alerts not yet delivered nor dead-lettered are waited for
    too, up to `bound` (a notifier waiting for an SMTP circuit to let a trial through is silent as well);
    those still waiting then are the notifications check's to report."""
    start = time.monotonic()
    up_since: float | None = None
    settled_at: float | None = None
    offsets: dict[str, Any] = {}
    moved_at = start
    while time.monotonic() - start < bound:
        now = time.monotonic()
        if not history.broker_answers():
            up_since = None
        elif up_since is None:
            up_since = now
        latest = history.group_offsets(groups)
        if latest != offsets or None in latest.values():
            offsets, moved_at = latest, now
        quiet_since = max(history.last_read(), up_since or now, moved_at)
        if workload.pending_verdicts() == 0 and up_since is not None and now - quiet_since > window:
            settled_at = settled_at if settled_at is not None else round(now - start, 1)
            if not unhandled_red_alerts(history):
                return round(now - start, 1)
        else:
            settled_at = None
        time.sleep(poll)
    return settled_at


def to_json(opts: Options, report: Report, nemesis: Nemesis, workload: Workload, settled: float | None,
            steps: int) -> dict[str, Any]:
    recoveries = [r["recovery_seconds"] for r in report.recovery if r["recovery_seconds"] is not None]
    return {
        "seed": opts.seed, "code": opts.code or "working tree", "duration_seconds": opts.duration,
        "rate": opts.rate, "faults_spec": opts.faults,
        "replicas": opts.replicas, "operations": steps, "clock_end": workload.today.isoformat(),
        "contracts": len(workload.contracts), "invoices": len(workload.invoices),
        "faults": dict(Counter(f.kind for f in nemesis.faults)),
        "network_faults": [f"{f.kind} {f.target} {f.detail.get('seconds')} s" + (
            f" {f.detail['latency_ms']}+-{f.detail['jitter_ms']} ms" if "latency_ms" in f.detail else "")
            for f in nemesis.faults if f.kind.split(":")[0] in ("net-delay", "net-cut")],
        "clock_leaps": [f"{a} -> {b}" for a, b in workload.leaps],
        "broker_connections_at_start": report.connections,
        "fault_errors": [f"{f.kind}: {f.error}" for f in nemesis.faults if f.error],
        "inputs": dict(report.inputs), "effects": dict(report.effects), "redelivered": dict(report.redelivered),
        "dead_letters": dict(report.dlq), "quiesce_seconds": settled,
        "lost": report.count("lost"), "duplicated": report.count("duplicated"),
        "divergent": report.count("divergent"), "broken": report.count("broken"),
        "max_recovery_seconds": max(recoveries) if recoveries else None, "latency": report.latency,
        "recovery": report.recovery,
        "violations": [asdict(v) for v in report.violations],
    }


def render(data: dict[str, Any]) -> str:
    faults = data["faults"]
    families: Counter[str] = Counter()
    for kind, n in faults.items():
        families[kind if not kind.startswith(("kill:", "partner:", "net-")) else kind.rsplit(":", 1)[0]
                 if kind.startswith("partner:") else kind.split(":")[0]] += n
    rows = [("faults injected", ", ".join(f"{k} {n}" for k, n in sorted(families.items())) or "none"),
            ("  kills by service", ", ".join(f"{k.split(':', 1)[1]} {n}" for k, n in sorted(faults.items())
                                             if k.startswith("kill:")) or "none"),
            ("  partner outages", ", ".join(f"{k.split(':', 1)[1]} {n}" for k, n in sorted(faults.items())
                                            if k.startswith("partner:")) or "none"),
            ("  network faults", ", ".join(data.get("network_faults", [])) or "none"),
            ("  clock leaps", ", ".join(data.get("clock_leaps", [])) or "none"),
            ("inputs", f"{sum(data['inputs'].values())} operations: "
                       + ", ".join(f"{k} {n}" for k, n in sorted(data["inputs"].items()))),
            ("effects", ", ".join(f"{k} {n}" for k, n in sorted(data["effects"].items()))),
            ("redelivered (same ce_id)", str(sum(data["redelivered"].values()))),
            ("dead letters", ", ".join(f"{k} {n}" for k, n in sorted(data["dead_letters"].items())) or "none"),
            ("lost", str(data["lost"])), ("duplicated", str(data["duplicated"])),
            ("divergent verdicts", str(data["divergent"])), ("other violations", str(data["broken"])),
            ("max recovery", "n/a" if data["max_recovery_seconds"] is None else f"{data['max_recovery_seconds']} s"),
            ("quiesced after", "did not" if data["quiesce_seconds"] is None else f"{data['quiesce_seconds']} s")]
    if data["latency"]:
        lat = data["latency"]
        rows.append(("verdict p99 clean / flood", f"{lat['clean_p99_s']} s ({lat['clean_n']}) / "
                                                  f"{lat['flooded_p99_s']} s ({lat['flooded_n']})"))
    width = max(len(r[0]) for r in rows)
    lines = [f"seed {data['seed']}, {data['duration_seconds']:.0f} s at {data['rate']}/s, "
             f"{data['contracts']} contracts, {data['invoices']} invoices, clock to {data['clock_end']}"]
    lines += [f"{k.ljust(width)} | {v}" for k, v in rows]
    for v in data["violations"][:40]:
        lines.append(f"  VIOLATION [{v['check']}/{v['kind']}] {v['detail']}")
    if len(data["violations"]) > 40:
        lines.append(f"  ... and {len(data['violations']) - 40} more in report.json")
    return "\n".join(lines)
