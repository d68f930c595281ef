"""infra/scripts/services.sh: no twins on a second start, nothing left behind after stop.

Runs the three simulators only (they need no Kafka or PostgreSQL), on free ports, in a scratch
run directory, so it is fast and never touches a `make up` stack that may be running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mesh_testing import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "infra" / "scripts" / "services.sh"
SIMULATORS = ("erp-simulator", "crm-simulator", "smtp-catcher")


def processes_of(run_dir: Path) -> set[int]:
    """Pids of live processes started for this run directory (their environment names it)."""
    marker = f"MESH_RUN_DIR={run_dir}".encode()
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found.add(int(proc.name))
    return found


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    run_dir = tmp_path / "run"
    environment = {
        **os.environ,
        "MESH_RUN_DIR": str(run_dir),
        "MESH_SERVICES": " ".join(SIMULATORS),
        "PYTHON_BIN_DIR": str(Path(sys.executable).parent),
        "ERP_SIMULATOR_PORT": str(free_port()),
        "CRM_SIMULATOR_PORT": str(free_port()),
        "SMTP_CATCHER_PORT": str(free_port()),
        "SMTP_CATCHER_SMTP_PORT": str(free_port()),
        "MESH_CLOCK": "system",  # the simulators then need no broker
        "MESH_START_TIMEOUT": "40",
    }
    yield environment
    # Whatever the test did, leave nothing running.
    subprocess.run(["bash", str(SCRIPT), "stop"], env=environment, capture_output=True, timeout=60)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=90)


def test_second_start_starts_no_twins_and_stop_leaves_nothing(env: dict[str, str]) -> None:
    run_dir = Path(env["MESH_RUN_DIR"])
    first = run(env, "start")
    assert first.returncode == 0, first.stderr
    pids = {name: int((run_dir / "pids" / f"{name}.pid").read_text().split()[0]) for name in SIMULATORS}
    started = processes_of(run_dir)
    assert set(pids.values()) <= started
    for name in SIMULATORS:
        port = env[name.upper().replace("-", "_") + "_PORT"]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert (run_dir / "logs" / f"{name}.log").stat().st_size > 0

    second = run(env, "start")
    assert second.returncode == 0, second.stderr
    assert all(f"{name} already running (pid {pids[name]}" in second.stderr for name in SIMULATORS)
    assert processes_of(run_dir) == started  # no new process at all

    status = run(env, "status")
    assert all(f"pid {pids[name]}" in status.stdout for name in SIMULATORS), status.stdout

    stop = run(env, "stop")
    assert stop.returncode == 0, stop.stderr
    assert processes_of(run_dir) == set()
    assert not list((run_dir / "pids").glob("*.pid"))
    for name in SIMULATORS:
        port = env[name.upper().replace("-", "_") + "_PORT"]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")
    assert "stopped" in run(env, "status").stdout


def test_start_refuses_a_port_taken_by_another_process(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["ERP_SIMULATOR_PORT"])))
        squatter.listen()
        result = run(env, "start", "erp-simulator")
    assert result.returncode != 0
    assert "already taken" in result.stderr
    assert processes_of(Path(env["MESH_RUN_DIR"])) == set()


def test_a_stale_pid_file_naming_a_reused_pid_is_not_taken_for_a_running_process(env: dict[str, str]) -> None:
    run_dir = Path(env["MESH_RUN_DIR"])
    (run_dir / "pids").mkdir(parents=True)
    # Our own pid is alive, but its start time is not the one the file recorded.
    (run_dir / "pids" / "erp-simulator.pid").write_text(f"{os.getpid()} 1\n")
    status = run(env, "status", "erp-simulator")
    assert "stopped" in status.stdout
    stop = run(env, "stop", "erp-simulator")
    assert stop.returncode == 0  # and this test process was not signalled
    assert not (run_dir / "pids" / "erp-simulator.pid").exists()


def child_pid(run_dir: Path, name: str) -> int | None:
    """Pid of the process itself (the supervisor's child), if it is alive."""
    try:
        pid = int((run_dir / "pids" / f"{name}.child").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def answers(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_crashed_process_is_restarted_with_backoff_and_stop_stops_it_for_good(env: dict[str, str]) -> None:
    env = {**env, "MESH_RESTART_DELAY": "0.5", "MESH_RESTART_MAX_DELAY": "4"}
    run_dir, name = Path(env["MESH_RUN_DIR"]), "erp-simulator"
    port = env["ERP_SIMULATOR_PORT"]
    assert run(env, "start", name).returncode == 0
    supervisor = int((run_dir / "pids" / f"{name}.pid").read_text().split()[0])
    first = child_pid(run_dir, name)
    assert first is not None and first != supervisor

    os.kill(first, signal.SIGKILL)  # a crash: no shutdown of its own
    second = wait_for(lambda: (p := child_pid(run_dir, name)) not in (None, first) and answers(port) and p,
                      timeout=30, message="the killed process restarted and answering")
    os.kill(second, signal.SIGKILL)
    third = wait_for(lambda: (p := child_pid(run_dir, name)) not in (None, second) and answers(port) and p,
                     timeout=30, message="restarted again")
    log = (run_dir / "logs" / f"{name}.log").read_text()
    assert f"{name} exited (code 137)" in log or f"{name} exited (code -9)" in log, log[-2000:]
    assert "restart #1 in 0.5s" in log and "restart #2 in 1s" in log  # the backoff doubles
    assert int((run_dir / "pids" / f"{name}.pid").read_text().split()[0]) == supervisor
    assert f"pid {supervisor}" in run(env, "status", name).stdout

    stop = run(env, "stop", name)
    assert stop.returncode == 0, stop.stderr
    assert processes_of(run_dir) == set()
    assert child_pid(run_dir, name) is None and not answers(port)
    time.sleep(1.5)  # longer than the next backoff (1 s -> 2 s would be due): nothing may come back
    assert processes_of(run_dir) == set() and not answers(port)
    assert third not in processes_of(run_dir)


def test_a_process_that_dies_before_it_was_ever_healthy_is_reported_not_restarted(env: dict[str, str]) -> None:
    env = {**env, "MESH_RESTART_DELAY": "0.2", "MESH_LOG_LEVEL": "NO-SUCH-LEVEL"}  # fails at start-up
    run_dir = Path(env["MESH_RUN_DIR"])
    result = run(env, "start", "erp-simulator")
    assert result.returncode != 0 and "erp-simulator exited during start" in result.stderr, result.stderr
    assert processes_of(run_dir) == set()
    assert "restart #" not in (run_dir / "logs" / "erp-simulator.log").read_text()
