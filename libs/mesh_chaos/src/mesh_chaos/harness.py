"""The whole mesh as real processes on free ports: one broker, one PostgreSQL, the services, the simulators.

The broker and the cluster come from mesh_testing's starters (infra/scripts/kafka.sh, postgres.sh); each
process's environment is the one `infra/scripts/services.sh env <name>` builds, with this mesh's ports.
Every process runs in its own session (process group), so a SIGKILL by pid takes exactly that process.
With `network=True` each service reaches the broker through its own toxiproxy route (netproxy.py): the
broker has one extra listener per service, advertised as that service's proxy port, and the service's
KAFKA_BOOTSTRAP_SERVERS is the proxy, so all of its broker traffic crosses the proxy.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mesh_testing.ports import free_port
from mesh_testing.servers import KafkaServer, PostgresServer, repo_root

from .netproxy import Route, Toxiproxy

log = logging.getLogger("mesh_chaos.harness")

SERVICES = ("contract-registry", "obligation-engine", "invoice-validator", "renewal-sync", "notifier")
SIMULATORS = ("erp-simulator", "crm-simulator", "smtp-catcher")
# Services that may run as several replicas of one consumer group (the registry's outbox relay is one writer).
REPLICABLE = ("obligation-engine", "invoice-validator", "renewal-sync", "notifier")
# The campaign compresses partner outages from hours to seconds, so it compresses the retry timing the
# same way; otherwise a delivery waiting for its next round (up to 5 min) or for a killed replica's
# lease (5 min) is still pending when the checker's quiescence bound runs out, and counts as lost.
CAMPAIGN_TIMING: dict[str, dict[str, str]] = {
    "notifier": {"NOTIFIER_RETRY_ROUND_DELAY": "1", "NOTIFIER_RETRY_MAX_ROUND_DELAY": "5",
                 "NOTIFIER_RETRY_ATTEMPTS": "2", "NOTIFIER_RETRY_MAX_DELAY": "1",
                 "NOTIFIER_DELIVERY_LEASE_SECONDS": "25", "NOTIFIER_BREAKER_RESET_SECONDS": "3"},
}


@dataclass
class Proc:
    """One OS process of the mesh: how to start it, and the running instance."""

    name: str  # e.g. "invoice-validator#2"
    service: str
    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    held: bool = False  # down on purpose (a fault): the supervisor leaves it alone

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None and self.popen.poll() is None else None

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"=== {time.strftime('%FT%TZ', time.gmtime())} start #{self.starts}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL) -> int | None:
        """Signal the process group; SIGKILL waits until it is gone. Returns the pid signalled."""
        pid = self.pid
        if pid is None:
            return None
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return None
        if sig in (signal.SIGKILL, signal.SIGTERM) and self.popen is not None:
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(pid, signal.SIGKILL)
                self.popen.wait(10)
        return pid

    def healthy(self, path: str = "/healthz") -> bool:
        try:
            return httpx.get(self.url + path, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass
class Mesh:
    """Start with `Mesh.start(workdir, replicas)`; `stop()` ends every process it started."""

    workdir: Path
    replicas: dict[str, int]
    kafka: KafkaServer | None = None
    postgres: PostgresServer | None = None
    procs: dict[str, Proc] = field(default_factory=dict)
    smtp_port: int = 0
    code: str | None = None  # a git ref the processes run from instead of the working tree
    toxiproxy: Toxiproxy | None = None  # with network=True: one route per service to the broker

    @property
    def bootstrap(self) -> str:
        assert self.kafka is not None
        return self.kafka.bootstrap

    @property
    def database_url(self) -> str:
        assert self.postgres is not None
        return self.postgres.url

    def url(self, service: str) -> str:
        """A base URL of a service (its first live replica) or simulator."""
        candidates = [p for p in self.procs.values() if p.service == service]
        live = [p for p in candidates if p.pid is not None]
        return (live or candidates)[0].url

    def of(self, service: str) -> list[Proc]:
        return [p for p in self.procs.values() if p.service == service]

    # -- start-up --

    def route(self, service: str) -> Route | None:
        """The toxiproxy route a service's broker traffic takes (None without network faults)."""
        return self.toxiproxy.routes.get(service) if self.toxiproxy is not None else None

    @classmethod
    def start(cls, workdir: Path, replicas: dict[str, int] | None = None, timeout: float = 180,
              code: str | None = None, network: bool = False) -> Mesh:
        mesh = cls(workdir=workdir, replicas=dict(replicas or {}), code=code)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "logs").mkdir(exist_ok=True)
        try:
            routes = [Route(s, free_port(), free_port()) for s in SERVICES] if network else []
            # Listener <SERVICE>: the broker listens on route.upstream and advertises route.listen (the proxy).
            mesh.kafka = KafkaServer.start({_listener(r.name): (r.upstream, r.listen) for r in routes})
            if network:
                mesh.toxiproxy = Toxiproxy.start(workdir / "logs" / "toxiproxy.log")
                for r in routes:
                    mesh.toxiproxy.create(r)
            mesh.postgres = PostgresServer.start("contracts")
            mesh._provision()
            mesh._plan()
            for name in SIMULATORS:
                mesh.procs[name].start()
            mesh.wait_healthy(SIMULATORS, timeout)
            # First replicas, then the others: two replicas creating the same changelog topics at once race
            # in mesh_common.provision (KeyError on the metadata of a topic just created).
            firsts = [p for p in mesh.procs.values() if p.service in SERVICES and "#" not in p.name]
            for proc in firsts:
                proc.start()
            mesh.wait_healthy(SERVICES, timeout)
            for proc in mesh.procs.values():
                if proc.popen is None:
                    proc.start()
            mesh.wait_healthy(SERVICES, timeout)
        except BaseException:
            mesh.stop()
            raise
        return mesh

    def _provision(self) -> None:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap}
        subprocess.run([sys.executable, "-m", "mesh_common.provision"], env=env, check=True, capture_output=True,
                       timeout=120)

    def _plan(self) -> None:
        """Ports first (every process needs every other's URL), then each process's environment."""
        names: list[tuple[str, str]] = [(s, s) for s in SIMULATORS]
        for service in SERVICES:
            n = self.replicas.get(service, 1) if service in REPLICABLE else 1
            names += [(service if i == 1 else f"{service}#{i}", service) for i in range(1, n + 1)]
        ports = {name: free_port() for name, _ in names}
        self.smtp_port = free_port()
        script = repo_root() / "infra" / "scripts" / "services.sh"
        bin_dir = Path(sys.executable).parent
        assert self.kafka is not None and self.postgres is not None
        python_path = self._snapshot() if self.code else ""
        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "MESH_", "DATABASE_"))},
            "KAFKA_PORT": str(self.kafka.port), "PG_PORT": str(self.postgres.port), "PG_DATABASE": "contracts",
            "MESH_RUN_DIR": str(self.workdir), "PYTHON_BIN_DIR": str(bin_dir), "MESH_CLOCK": "topic",
            "MESH_OTEL_EXPORTER": "none", "SMTP_CATCHER_SMTP_PORT": str(self.smtp_port),
            **{name.upper().replace("-", "_") + "_PORT": str(ports[name]) for name, svc in names if name == svc},
        }
        for name, service in names:
            out = subprocess.run(["bash", str(script), "env", service], env=base, check=True, capture_output=True,
                                 text=True, timeout=30).stdout
            env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            tag = name.replace("#", "-")
            env.update({"MESH_HTTP_PORT": str(ports[name]), "MESH_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports[name]}",
                        "KAFKA_CLIENT_ID": tag, "MESH_OTEL_EXPORTER": "none", "SIM_FAULT_GATE": "true"})
            env.update(CAMPAIGN_TIMING.get(service, {}))
            if (route := self.route(service)) is not None:
                env["KAFKA_BOOTSTRAP_SERVERS"] = route.address
            for key in ("OBLIGATION_DATA_DIR", "VALIDATOR_DATA_DIR"):
                if key in env:  # one local store per replica
                    env[key] = str(self.workdir / "data" / tag)
            env.pop("MESH_OTEL_FILE", None)
            full = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")} | env
            if python_path:
                full["PYTHONPATH"] = python_path
            if service in SIMULATORS:
                command = [str(bin_dir / "mesh-sim"), {"erp-simulator": "erp", "crm-simulator": "crm",
                                                       "smtp-catcher": "smtp"}[service]]
            else:
                command = [str(bin_dir / service)]
            self.procs[name] = Proc(name, service, command, full, ports[name], self.workdir / "logs" / f"{tag}.log")

    def _snapshot(self) -> str:
        """The committed tree at `code`, unpacked in the workdir; its src dirs go first on PYTHONPATH, ahead of the
        venv's editable installs, so a restart runs that code even while the working tree is being edited."""
        assert self.code is not None
        target = self.workdir / "code"
        target.mkdir(exist_ok=True)
        archive = subprocess.run(["git", "-C", str(repo_root()), "archive", self.code], check=True,
                                 capture_output=True, timeout=120).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True, timeout=120)
        return os.pathsep.join(str(p) for p in sorted(target.glob("*/*/src")))

    def consumer_groups(self) -> list[str]:
        """The services' consumer groups: each service's group id is its name (the settings' default)."""
        return sorted({p.service for p in self.procs.values() if p.service in SERVICES})

    def wait_healthy(self, services: tuple[str, ...] | list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = [p for p in self.procs.values() if p.service in services and p.popen is not None]
        while waiting:
            for p in list(waiting):
                if p.popen is not None and p.popen.poll() is not None:
                    raise RuntimeError(f"{p.name} exited ({p.popen.returncode}) during start; see {p.log_path}:\n"
                                       + _tail(p.log_path))
                if p.healthy("/healthz"):
                    waiting.remove(p)
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {timeout}s: {[p.name for p in waiting]}")
            time.sleep(0.3)  # poll interval

    def broker_peers(self, proc: Proc) -> set[int]:
        """The loopback ports this process (and its children) holds established TCP connections to, among
        the broker's ports and the proxies': which door its broker traffic really takes."""
        assert self.kafka is not None
        watched = {self.kafka.port} | {p for port, adv in self.kafka.extra_listeners.values() for p in (port, adv)}
        pid = proc.pid
        if pid is None:
            return set()
        inodes: set[str] = set()
        for p in [pid, *_children(pid)]:
            try:
                for fd in Path(f"/proc/{p}/fd").iterdir():
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
            except OSError:
                continue
        peers: set[int] = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                cols = line.split()
                remote, state, inode = cols[2], cols[3], cols[9]
                port = int(remote.rsplit(":", 1)[1], 16)
                if state == "01" and inode in inodes and port in watched:  # 01: ESTABLISHED
                    peers.add(port)
        return peers

    # -- infrastructure faults --

    def broker_pid(self) -> int | None:
        assert self.kafka is not None
        try:
            return int((self.kafka.directory / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def broker_stop(self, hard: bool) -> None:
        assert self.kafka is not None
        pid = self.broker_pid()
        if hard and pid is not None:
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)
        else:
            self.kafka._run("stop")  # graceful: SIGTERM, controlled shutdown

    def broker_start(self) -> None:
        assert self.kafka is not None
        self.kafka._run("start")  # same data dir and ports: the restarted broker has every record

    def postgres_stop(self) -> None:
        assert self.postgres is not None
        self.postgres._run("stop")  # pg_ctl -m fast

    def postgres_start(self) -> None:
        assert self.postgres is not None
        self.postgres._run("start")

    def postgres_pids(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, ...)."""
        assert self.postgres is not None
        try:
            master = int((self.postgres.directory / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                kids.append(int(stat.parent.name))
        return [master, *kids]

    def postgres_signal(self, sig: int) -> None:
        for pid in self.postgres_pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    # -- shutdown --

    def stop(self) -> None:
        for p in self.procs.values():
            p.held = True
            p.kill(signal.SIGTERM)
        self.postgres_signal(signal.SIGCONT)  # never leave a paused cluster behind
        if self.toxiproxy is not None:
            self.toxiproxy.stop()
        for server in (self.postgres, self.kafka):
            if server is not None:
                try:
                    server.stop()
                except Exception as exc:  # keep stopping the rest
                    log.warning("stopping %s: %s", server, exc)


def _listener(service: str) -> str:
    return "VIA_" + service.upper().replace("-", "_")


def _children(pid: int) -> list[int]:
    """Every descendant of a process (by the parent pid in /proc/<pid>/stat)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)  # poll interval


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
