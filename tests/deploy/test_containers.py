"""The image for real: built with podman from the Dockerfile (on a Debian base made by debootstrap, see
deploy/containers/), and every mesh process started in a container the way the manifests run it: non-root,
read-only root filesystem with only /tmp writable, no capabilities. Each answers /healthz and /readyz
against a real broker and database, and ends by itself on SIGTERM within its grace period; the migration
and topic jobs run as their Jobs would. The Kubernetes manifests and docker-compose.yml are then checked
against what ran (user, ports, probes, commands, grace), so they cannot drift from the image.

Containers use the host's network (each process on a port of its own, the broker and database on loopback);
see docs/adr/ "Containers on this machine".
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from confluent_kafka.admin import AdminClient

from mesh_common.provision import catalog_topics
from mesh_testing.servers import KafkaServer
from mesh_testing.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy" / "containers"))
import meshrun  # noqa: E402

# A fresh machine installs podman and builds the base image and the project image first (~3 min).
pytestmark = pytest.mark.timeout(1500)

SIMULATOR_GRACE = 10.0  # docker-compose's default stop_grace_period; the simulators have no manifests


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    meshrun.remove_leftovers()
    yield meshrun.build_image()
    meshrun.remove_leftovers()


@pytest.fixture(scope="module")
def stack(own_kafka: KafkaServer, postgres_url: str) -> Iterator[meshrun.Stack]:
    """A broker of the module's own (the catalog topics and the services' default group ids stay off the
    session's broker) and a fresh database in the session's cluster."""
    database = f"mesh_containers_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    base, _, _ = postgres_url.rpartition("/")
    url = f"{base}/{database}"
    yield meshrun.Stack(own_kafka.bootstrap, url.replace("postgresql://", "postgresql+psycopg://", 1))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def jobs(image: str, stack: meshrun.Stack) -> dict[str, Any]:
    """The topic job, then the migration job, as docker-compose.yml and the Kubernetes Jobs run them."""
    return {"topics-init": meshrun.run_job(image, stack, "topics-init", meshrun.PROVISION),
            "migrate": meshrun.run_job(image, stack, "migrate", meshrun.MIGRATE)}


@dataclass
class Ran:
    """What one process did in its container."""

    started_in: float | None
    healthz: int | None
    readyz: int | None
    status: dict[str, str]  # /proc/1/status of the process
    root_write: str  # stderr of a write below /opt
    tmp_write_ok: bool
    stopped: meshrun.Stopped
    grace: float
    log: str


def _grace(name: str, docs: list[dict[str, Any]]) -> float:
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == name:
            return float(doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    return SIMULATOR_GRACE


@pytest.fixture(scope="module")
def ran(image: str, stack: meshrun.Stack, jobs: dict[str, Any],
        rendered_docs: dict[str, list[dict[str, Any]]]) -> Iterator[dict[str, Ran]]:
    """Every process started at once, probed, inspected from inside, then all sent SIGTERM at once."""
    assert jobs["topics-init"].returncode == 0 and jobs["migrate"].returncode == 0, "the jobs must run first"
    run_id = uuid.uuid4().hex[:8]
    containers: dict[str, str] = {}
    try:
        began = time.monotonic()
        for name in meshrun.COMMANDS:
            containers[name] = meshrun.start(image, stack, name, run_id)
        ready = meshrun.wait_ready(stack, containers, began)
        observed = {}
        for name, container in containers.items():
            write = meshrun.exec_in(container, "python", "-c", "open('/opt/mesh/probe', 'w')")
            tmp = meshrun.exec_in(container, "python", "-c", "open('/tmp/probe', 'w').write('x')")
            observed[name] = (meshrun.http_status(stack.url(name) + "/healthz"),
                              meshrun.http_status(stack.url(name) + "/readyz"),
                              meshrun.process_status(container), write.stderr, tmp.returncode == 0)
        grace = {name: _grace(name, rendered_docs["base"]) for name in containers}
        stopped = meshrun.stop_all(containers, grace)
        yield {name: Ran(ready.get(name), *observed[name], stopped[name], grace[name],
                         meshrun.logs(containers[name]) if name not in ready else "")
               for name in containers}
    finally:
        meshrun.remove(*containers.values())


def _uid_gid(status: dict[str, str]) -> tuple[int, int]:
    # "Uid:	real effective saved fs": the effective one is what the kernel checks.
    return int(status["Uid"].split()[1]), int(status["Gid"].split()[1])


# --- the image and the jobs ------------------------------------------------------------------------

def test_image_is_built_from_the_dockerfile_on_the_local_debian_base(image: str) -> None:
    config = meshrun.image_config(image)
    assert config["Labels"].get("mesh.base.key"), "the runtime stage starts from deploy/containers/base.sh's image"
    assert config["User"] == "10001:10001"
    assert "8080/tcp" in config["ExposedPorts"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["MESH_HTTP_PORT"] == "8080" and env["PATH"].startswith("/opt/mesh/bin:")
    assert meshrun.image_size(image) < 600e6


def test_migration_job_migrates_the_database(jobs: dict[str, Any], stack: meshrun.Stack) -> None:
    assert jobs["migrate"].returncode == 0, jobs["migrate"].stderr[-3000:]
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert version and version[0]
    assert len(tables - {"alembic_version"}) >= 1, tables


def test_topic_job_creates_the_catalog_topics(jobs: dict[str, Any], stack: meshrun.Stack) -> None:
    assert jobs["topics-init"].returncode == 0, jobs["topics-init"].stderr[-3000:]
    topics = AdminClient({"bootstrap.servers": stack.bootstrap}).list_topics(timeout=10).topics
    missing = {t.name for t in catalog_topics()} - set(topics)
    assert not missing, f"not created by the topic job: {sorted(missing)}"


# --- every process in its container ----------------------------------------------------------------

NAMES = list(meshrun.COMMANDS)


@pytest.mark.parametrize("name", NAMES)
def test_process_starts_and_answers_its_probes(ran: dict[str, Ran], name: str) -> None:
    got = ran[name]
    assert got.started_in is not None, f"{name} never answered /readyz with 200:\n{got.log}"
    assert (got.healthz, got.readyz) == (200, 200)


@pytest.mark.parametrize("name", NAMES)
def test_process_runs_non_root_on_a_read_only_root_without_capabilities(ran: dict[str, Ran], name: str) -> None:
    got = ran[name]
    uid, gid = _uid_gid(got.status)
    assert uid != 0 and gid != 0
    assert int(got.status["CapEff"], 16) == 0, got.status["CapEff"]
    assert "Read-only file system" in got.root_write
    assert got.tmp_write_ok, "/tmp (the tmpfs) must stay writable"


@pytest.mark.parametrize("name", NAMES)
def test_process_ends_by_itself_on_sigterm_within_its_grace_period(ran: dict[str, Ran], name: str) -> None:
    stopped = ran[name].stopped
    assert not stopped.oom_or_killed, f"{name} was still running {ran[name].grace} s after SIGTERM"
    assert stopped.exit_code == 0
    assert stopped.seconds < ran[name].grace


def test_image_port_is_where_a_service_listens_without_any_setting(image: str) -> None:
    """The manifests set no MESH_HTTP_PORT: with the image's own settings, in a network namespace of its own
    (no broker nor database there, so only liveness is asked), the registry answers /healthz on 8080."""
    container = f"mesh-{uuid.uuid4().hex[:8]}-own-port"
    probe = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status)"
    try:
        meshrun.podman("run", "-d", "--name", container, "--network", "none", "--label", meshrun.LABEL,
                       *meshrun.HARDENING, image, *meshrun.COMMANDS["contract-registry"])
        wait_for(lambda: meshrun.exec_in(container, "python", "-c", probe).stdout.strip() == "200", timeout=60,
                 interval=0.2, message="the registry never answered /healthz on the image's port 8080")
    finally:
        meshrun.remove(container)


# --- the manifests say what ran ----------------------------------------------------------------------

def _pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")}


@pytest.mark.parametrize("target", ["base", "dev", "prod"])
def test_kubernetes_manifests_match_what_ran_in_the_containers(
        target: str, rendered_docs: dict[str, list[dict[str, Any]]], ran: dict[str, Ran], image: str) -> None:
    config = meshrun.image_config(image)
    image_port = int(dict(e.split("=", 1) for e in config["Env"])["MESH_HTTP_PORT"])
    image_name = image.rsplit("/", 1)[-1].split(":")[0]
    pods = _pod_specs(rendered_docs[target])
    for name in meshrun.SERVICES:
        pod = next(spec for spec in pods.values() if spec["containers"][0]["name"] == name)
        container = pod["containers"][0]
        uid, gid = _uid_gid(ran[name].status)
        assert container["command"] == meshrun.COMMANDS[name]
        assert container["image"].rsplit("/", 1)[-1].split(":")[0].split("@")[0] == image_name
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        # Writable /tmp only, as in the runs (--tmpfs /tmp); an overlay's extra mounts are read-only.
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "/tmp" in mounts and not mounts["/tmp"].get("readOnly")
        assert all(m.get("readOnly") for path, m in mounts.items() if path != "/tmp")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == image_port
        probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert {p["path"] for p in probes.values()} == {"/healthz", "/readyz"}
        assert probes["readinessProbe"]["path"] == "/readyz"
        assert all(p["port"] in ("http", image_port) for p in probes.values())
        assert pod["terminationGracePeriodSeconds"] > ran[name].stopped.seconds
    migrate = next(spec for spec in pods.values() if spec["containers"][0]["command"] == meshrun.MIGRATE)
    assert migrate["securityContext"]["runAsUser"] == _uid_gid(ran["contract-registry"].status)[0]


def test_compose_file_matches_what_ran_in_the_containers(ran: dict[str, Ran]) -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    for name, command in meshrun.COMMANDS.items():
        uid, gid = _uid_gid(ran[name].status)
        assert services[name]["command"] == command
        assert services[name]["user"] == f"{uid}:{gid}"
        assert services[name]["read_only"] is True and services[name]["tmpfs"] == ["/tmp"]
        assert services[name]["ports"][-1].endswith(":8080")
    assert services["migrate"]["command"] == meshrun.MIGRATE
    assert services["topics-init"]["command"] == meshrun.PROVISION
