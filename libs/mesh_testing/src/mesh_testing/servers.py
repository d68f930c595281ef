"""Start and stop the real Kafka broker and PostgreSQL cluster through infra/scripts.

The shell scripts are the one way the stack starts, for `make up` and for tests alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mesh_testing.ports import free_port


def repo_root() -> Path:
    """The monorepo root: $MESH_REPO_ROOT, else the nearest parent holding infra/scripts."""
    if env := os.environ.get("MESH_REPO_ROOT"):
        return Path(env)
    for start in (Path(__file__).resolve(), Path.cwd()):
        for parent in start.parents:
            if (parent / "infra" / "scripts" / "kafka.sh").is_file():
                return parent
    raise RuntimeError("cannot find the repo root (infra/scripts/kafka.sh); set MESH_REPO_ROOT")


def _script(name: str, command: str, env: dict[str, str]) -> None:
    script = repo_root() / "infra" / "scripts" / name
    result = subprocess.run(
        ["bash", str(script), command],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,  # first run may download jars or apt packages
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} {command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _scratch_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    # PostgreSQL runs as the `postgres` user when we are root: it must reach the dir.
    path.chmod(0o755)
    return path


@dataclass
class KafkaServer:
    """One single-node KRaft broker on free ports in a scratch directory.

    `extra_listeners` maps a listener name to (port, advertised port): a second door for clients that
    reach the broker through a TCP proxy on the advertised port (kafka.sh KAFKA_EXTRA_LISTENERS)."""

    directory: Path
    port: int
    controller_port: int
    extra_listeners: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def start(cls, extra_listeners: dict[str, tuple[int, int]] | None = None) -> KafkaServer:
        server = cls(_scratch_dir("mesh-kafka-"), free_port(), free_port(), dict(extra_listeners or {}))
        server._run("start")
        return server

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, command: str) -> None:
        _script(
            "kafka.sh",
            command,
            {
                "KAFKA_PORT": str(self.port),
                "KAFKA_CONTROLLER_PORT": str(self.controller_port),
                "KAFKA_DIR": str(self.directory),
                "PYTHON": sys.executable,  # has confluent_kafka for the readiness probe
                "KAFKA_EXTRA_LISTENERS": " ".join(f"{name}:{port}:{advertised}" for name, (port, advertised)
                                                  in self.extra_listeners.items()),
            },
        )

    def stop(self) -> None:
        self._run("stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the broker (controlled shutdown), stay down `down_for` seconds, start it again on the same
        ports and data: clients see what an operator's broker restart does to them."""
        self._run("stop")
        time.sleep(down_for)  # the outage itself is what is being tested
        self._run("start")


@dataclass
class PostgresServer:
    """One PostgreSQL cluster on a free port in a scratch directory, with one database."""

    directory: Path
    port: int
    database: str

    @classmethod
    def start(cls, database: str = "mesh_test") -> PostgresServer:
        server = cls(_scratch_dir("mesh-pg-"), free_port(), database)
        server._run("start")
        return server

    @property
    def url(self) -> str:
        return f"postgresql://mesh:mesh@127.0.0.1:{self.port}/{self.database}"

    def _run(self, command: str) -> None:
        _script(
            "postgres.sh",
            command,
            {"PG_PORT": str(self.port), "PG_DIR": str(self.directory), "PG_DATABASE": self.database},
        )

    def stop(self) -> None:
        self._run("stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the cluster (`pg_ctl stop -m fast`: every session ends with AdminShutdown), stay down
        `down_for` seconds, start it again on the same port and data: what a database restart does to clients."""
        self._run("stop")
        time.sleep(down_for)  # the outage itself is what is being tested
        self._run("start")


@contextlib.contextmanager
def bench_stack(*, database: bool = True) -> Iterator[tuple[str, str | None]]:
    """(Kafka bootstrap, PostgreSQL URL) for a benchmark: BENCH_BOOTSTRAP / BENCH_DATABASE_URL when
    set, else a broker (and a cluster) started here and stopped afterwards."""
    started: list[KafkaServer | PostgresServer] = []
    try:
        bootstrap = os.environ.get("BENCH_BOOTSTRAP")
        if not bootstrap:
            kafka = KafkaServer.start()
            started.append(kafka)
            bootstrap = kafka.bootstrap
        db_url = os.environ.get("BENCH_DATABASE_URL")
        if database and not db_url:
            pg = PostgresServer.start("bench")
            started.append(pg)
            db_url = pg.url
        yield bootstrap, db_url
    finally:
        for server in reversed(started):
            server.stop()
