"""docker-compose.yml is a valid compose project and wires the mesh the way docs/operations.md says.

`docker compose config` needs the compose CLI plugin, which the plain docker client here lacks.
compose-check (deploy/tools/checkers/compose-check) runs the loader the plugin is built on (compose-go:
compose-spec JSON schema, interpolation, merges, cross-references), so validity never depends on the
plugin. When the plugin is there (system-wide, or built into .cache/docker by
`deploy/tools/install.sh --with-compose-plugin`), `docker compose config -q` runs too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

# The first test of a fresh machine also builds the pinned tools (deploy/tools/install.sh, ~4 min cold).
pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SERVICES = ("contract-registry", "obligation-engine", "invoice-validator", "renewal-sync", "notifier")
SIMULATORS = {"erp-simulator": ["mesh-sim", "erp"], "crm-simulator": ["mesh-sim", "crm"],
              "smtp-catcher": ["mesh-sim", "smtp"]}


def compose_check(tools: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools / "compose-check"), *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO)


@pytest.fixture(scope="module")
def project(deploy_tools: Path) -> dict[str, Any]:
    """The normalised project, as `docker compose config` would print it."""
    done = compose_check(deploy_tools, "-print", str(COMPOSE))
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = yaml.safe_load(done.stdout)
    return loaded


def test_compose_file_is_valid(deploy_tools: Path) -> None:
    done = compose_check(deploy_tools, str(COMPOSE))
    assert done.returncode == 0, done.stderr


def _docker_compose() -> tuple[list[str], dict[str, str]] | None:
    """`docker compose` if the plugin is there: system-wide, or built by install.sh --with-compose-plugin."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    for env in ({}, {"DOCKER_CONFIG": str(REPO / ".cache" / "docker")}):
        full_env = os.environ | env
        if subprocess.run([docker, "compose", "version"], capture_output=True, env=full_env).returncode == 0:
            return [docker, "compose"], full_env
    return None


def test_docker_compose_config_when_the_plugin_is_installed(tmp_path: Path) -> None:
    found = _docker_compose()
    if found is None:
        pytest.skip("no docker compose plugin (deploy/tools/install.sh --with-compose-plugin builds one); "
                    "validity is covered by compose-check")
    compose, env = found
    done = subprocess.run([*compose, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    healthcheck: *mesh-healthcheck", "    healtcheck: 1", 1))
    done = subprocess.run([*compose, "-f", str(broken), "config", "-q"], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=60)
    assert done.returncode != 0 and "healtcheck" in done.stderr


DEPENDS = "    depends_on:\n      <<: *mesh-depends\n    restart: unless-stopped\n\n  renewal-sync:"
HEALTH = "    healthcheck: *mesh-healthcheck\n    depends_on:\n      <<: *mesh-depends\n      postgres:"


@pytest.mark.parametrize(("original", "broken", "message"), [
    (DEPENDS, DEPENDS.replace("<<: *mesh-depends", "<<: *mesh-depends\n      kafak:\n"
                                                    "        condition: service_healthy"), "undefined service"),
    (HEALTH, HEALTH.replace("healthcheck:", "healtcheck:"), "healtcheck"),
], ids=["depends-on-unknown-service", "misspelled-key"])
def test_compose_check_rejects_broken_files(deploy_tools: Path, tmp_path: Path, original: str, broken: str,
                                            message: str) -> None:
    """The validator can fail: a dependency on a service that does not exist, a misspelled key."""
    text = COMPOSE.read_text()
    assert original in text
    path = tmp_path / "docker-compose.yml"
    path.write_text(text.replace(original, broken, 1))
    done = compose_check(deploy_tools, str(path))
    assert done.returncode == 1
    assert message in done.stderr


def test_stack_has_every_part(project: dict[str, Any]) -> None:
    services = project["services"]
    expected = {"kafka", "postgres", "otel-collector", "topics-init", "migrate", *SERVICES, *SIMULATORS}
    assert set(services) == expected
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["topics-init"]["command"] == ["python", "-m", "mesh_common.provision"]
    assert services["migrate"]["command"] == ["contract-registry", "migrate"]
    for name in SERVICES:
        assert services[name]["command"] == [name]
    for name, command in SIMULATORS.items():
        assert services[name]["command"] == command


def test_mesh_processes_share_one_hardened_image(project: dict[str, Any]) -> None:
    services = project["services"]
    mesh = ["topics-init", "migrate", *SERVICES, *SIMULATORS]
    assert len({services[n]["image"] for n in mesh}) == 1
    for name in mesh:
        s = services[name]
        assert s["build"]["dockerfile"] == "Dockerfile"
        assert s["read_only"] is True and s["user"] == "10001:10001" and s["cap_drop"] == ["ALL"]
        assert "/tmp" in s["tmpfs"]
        assert s["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"


def test_start_order_waits_for_health_and_jobs(project: dict[str, Any]) -> None:
    services = project["services"]
    for name in ("kafka", "postgres", *SERVICES, *SIMULATORS):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    conditions = {name: {dep: v["condition"] for dep, v in s.get("depends_on", {}).items()}
                  for name, s in services.items()}
    for name in (*SERVICES, "erp-simulator", "crm-simulator"):
        assert conditions[name]["kafka"] == "service_healthy"
        assert conditions[name]["topics-init"] == "service_completed_successfully"
    assert conditions["contract-registry"]["migrate"] == "service_completed_successfully"
    assert conditions["migrate"] == {"postgres": "service_healthy"}
    assert conditions["topics-init"] == {"kafka": "service_healthy"}
    assert conditions["renewal-sync"]["crm-simulator"] == "service_healthy"
    assert conditions["notifier"]["smtp-catcher"] == "service_healthy"
    # Every dependency that asks for health points at a service that has a healthcheck.
    for deps in conditions.values():
        for dep, condition in deps.items():
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), dep


def test_traces_go_to_the_collector(project: dict[str, Any]) -> None:
    services = project["services"]
    collector = services["otel-collector"]
    mounted = {v["target"]: v["source"] for v in collector["volumes"]}
    config_path = Path(mounted["/etc/otelcol/config.yaml"])
    assert config_path == REPO / "deploy" / "otel" / "collector.yaml"
    config = yaml.safe_load(config_path.read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    assert set(pipeline["receivers"]) <= set(config["receivers"])
    assert set(pipeline["exporters"]) <= set(config["exporters"])
    assert set(pipeline["processors"]) <= set(config["processors"])
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    for name in SERVICES:
        env = services[name]["environment"]
        assert env["MESH_OTEL_EXPORTER"] == "otlp"
        assert env["MESH_OTEL_ENDPOINT"].startswith("http://otel-collector:4318/")
