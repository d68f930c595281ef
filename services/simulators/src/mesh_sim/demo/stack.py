"""Stack control: where each process answers, whether Kafka does, `make up` when the mesh is not running,
and the shared clock's latest tick."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
from datetime import datetime
from pathlib import Path

import httpx
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from contract_schema.topics import CLOCK
from mesh_common.clock import EPOCH, ClockFollower, ManualClock

from .outcomes import StepFailed, poll
from .output import note

SERVICES = ("contract-registry", "obligation-engine", "invoice-validator", "renewal-sync", "notifier")
SIMULATORS = ("erp-simulator", "crm-simulator", "smtp-catcher")
DEFAULT_PORTS = {"contract-registry": 8081, "obligation-engine": 8082, "invoice-validator": 8083,
                 "renewal-sync": 8084, "notifier": 8085, "erp-simulator": 8091, "crm-simulator": 8092,
                 "smtp-catcher": 8093}


def repo_root() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "infra" / "scripts" / "services.sh").is_file():
            return parent
    return Path.cwd()


def url_of(name: str) -> str:
    """Where services.sh puts a process (same <NAME>_PORT overrides)."""
    port = os.environ.get(name.upper().replace("-", "_") + "_PORT") or DEFAULT_PORTS[name]
    return f"http://127.0.0.1:{port}"


def process_states(script: str) -> tuple[int, dict[str, str]]:
    """services.sh status: running / starting (alive, no /healthz) / stopped / absent, per process."""
    result = subprocess.run(["bash", script, "status"], text=True, capture_output=True)
    found = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in SERVICES + SIMULATORS:
            found[parts[0]] = parts[1]
    return result.returncode, found


def bring_up(bootstrap: str, http: httpx.Client, timeout: float) -> tuple[set[str], set[str], str | None]:
    """`make up` unless Kafka and every process answer; then wait for each process's /readyz.

    Returns the processes alive (a process without /healthz still takes part), those answering /healthz,
    and what is wrong (None when all 8 answer). StepFailed when Kafka does not answer."""
    script = str(repo_root() / "infra" / "scripts" / "services.sh")
    code, state = process_states(script)
    if not kafka_answers(bootstrap) or code != 0:
        note("the mesh is not (fully) running: make up")
        result = subprocess.run(["make", "--no-print-directory", "up"], cwd=repo_root(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in result.stdout.splitlines():
            note("  | " + line)
        code, state = process_states(script)
    if not kafka_answers(bootstrap):
        raise StepFailed(f"Kafka at {bootstrap} does not answer")
    # A process that is alive but has no /healthz still takes part; it is reported below.
    healthy = {n for n, s in state.items() if s in ("running", "starting")}
    answered = {n for n, s in state.items() if s == "running"}

    def ready(name: str) -> bool:
        return http.get(url_of(name) + "/readyz", timeout=3).status_code == 200

    for name in sorted(n for n, s in state.items() if s == "running"):
        try:  # ready = caught up with its topics, before the story starts
            poll(functools.partial(ready, name), min(timeout, 60), f"{name} /readyz")
        except StepFailed as exc:
            note(f"{name} not ready: {exc}")
    problems = [f"{n} {state.get(n, 'unknown')}" for n in SERVICES + SIMULATORS if state.get(n) != "running"]
    if not problems:
        return healthy, answered, None
    return healthy, answered, (f"{sum(s == 'running' for s in state.values())}/8 answer /healthz; "
                               + ", ".join(p.replace("starting", "alive without /healthz") for p in problems))


def kafka_answers(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:  # a closed port first, quietly: librdkafka would log every refused connection
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=2).close()
    except (OSError, ValueError):
        return False
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=3)
        return True
    except KafkaException:
        return False


def latest_tick(bootstrap: str, timeout: float = 10) -> datetime | None:
    """The time of the last ClockAdvanced on the clock topic (ticks never go backwards), as every service's
    clock follower reads it; None when the topic holds none."""
    clock = ManualClock(EPOCH)
    follower = ClockFollower(clock, {"bootstrap.servers": bootstrap}, topic=CLOCK.name).start()
    try:
        follower.wait_caught_up(timeout)
    finally:
        follower.stop()
    latest = clock.now()
    return latest if latest > EPOCH else None
