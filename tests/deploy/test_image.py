"""The one image: a multi-stage, non-root, read-only-friendly Dockerfile that carries every command
docker-compose.yml and the Kubernetes manifests run. Checked with BuildKit's own Dockerfile front
end (dockerfile-check), since there is no Docker engine to build with here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

# The first test of a fresh machine also builds the pinned tools (deploy/tools/install.sh, ~4 min cold).
pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def dockerfile_check(tools: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools / "dockerfile-check"), str(path)], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def recipe(deploy_tools: Path) -> dict[str, Any]:
    done = dockerfile_check(deploy_tools, DOCKERFILE)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def test_dockerfile_parses_without_lint_warnings(recipe: dict[str, Any]) -> None:
    assert recipe["warnings"] == []


@pytest.mark.parametrize(("original", "broken", "message"), [
    ("FROM ${PYTHON_IMAGE} AS builder", "FROM ${PYTHON_IMAGE} as builder", "FromAsCasing"),
    ("WORKDIR /src", "WORKDIRR /src", "unknown instruction"),
    ("FROM ${PYTHON_IMAGE} AS runtime", "FROM ${PYTHON_IMAGE} AS Runtime", "StageNameCasing"),
    ("WORKDIR /tmp", "MAINTAINER someone\nWORKDIR /tmp", "MaintainerDeprecated"),
], ids=["from-as-casing", "unknown-instruction", "stage-name-casing", "deprecated-instruction"])
def test_dockerfile_check_catches_mistakes(deploy_tools: Path, tmp_path: Path, original: str, broken: str,
                                           message: str) -> None:
    text = DOCKERFILE.read_text()
    assert original in text
    path = tmp_path / "Dockerfile"
    path.write_text(text.replace(original, broken, 1))
    done = dockerfile_check(deploy_tools, path)
    assert done.returncode == 1
    assert message.lower() in done.stderr.lower()


def test_multi_stage_build_runs_as_non_root(recipe: dict[str, Any]) -> None:
    builder, runtime = recipe["stages"][0], recipe["stages"][-1]
    assert [s["name"] for s in recipe["stages"]] == ["builder", "runtime"]
    default_base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert default_base and default_base.group(1).startswith("python:3.11-slim")
    assert builder["base"] == runtime["base"] == "${PYTHON_IMAGE}"
    # The builder runs the venv recipe that test_image_recipe_builds_every_command runs here.
    assert any("deploy/docker/install-venv.sh /opt/mesh" in r for r in builder["runs"])
    assert ". -> ." in builder["copies"]
    # The runtime stage gets the venv only, and a numeric non-root user (runAsNonRoot can verify it).
    assert runtime["copies"] == ["builder /opt/mesh -> /opt/mesh"]
    uid, _, gid = runtime["user"].partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()
    env = dict(e.split("=", 1) for e in runtime["env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "never write .pyc on a read-only root filesystem"
    assert env["MESH_HTTP_HOST"] == "0.0.0.0"
    assert runtime["workdir"] == "/tmp" and env["HOME"] == "/tmp", "the only writable place"
    assert runtime["entrypoint"] == [], "the first argument is the command: docker run IMAGE contract-registry"


def _installed_scripts() -> set[str]:
    """Console scripts of every project the builder stage installs (libs and services, minus the test tools)."""
    scripts: set[str] = set()
    for pyproject in [*REPO.glob("libs/*/pyproject.toml"), *REPO.glob("services/*/pyproject.toml")]:
        if pyproject.parent.name in ("mesh_testing", "mesh_chaos"):  # test tools, not in the image
            continue
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        scripts |= set(project.get("scripts", {}))
    return scripts


def _k8s_commands(renders: dict[str, str]) -> set[tuple[str, ...]]:
    commands = set()
    for text in renders.values():
        for doc in yaml.safe_load_all(text):
            pod = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                commands.add(tuple(container["command"]))
    return commands


def test_every_command_the_deployments_run_is_in_the_image(deploy_tools: Path, renders: dict[str, str]) -> None:
    done = subprocess.run([str(deploy_tools / "compose-check"), "-print", str(REPO / "docker-compose.yml")],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    image = services["topics-init"]["image"]
    commands = {tuple(s["command"]) for s in services.values() if s.get("image") == image}
    commands |= _k8s_commands(renders)
    commands |= {("python", "-m", "mesh_common.provision")}  # the managed-kafka component's Job
    scripts = _installed_scripts()
    for command in sorted(commands):
        if command[:2] == ("python", "-m"):
            module = command[2]
            package, _, name = module.partition(".")
            assert (REPO / "libs" / package / "src" / package / f"{name}.py").is_file(), module
        else:
            assert command[0] in scripts, f"{command[0]} is no console script of any installed project"


def test_image_recipe_builds_every_command(tmp_path: Path) -> None:
    """deploy/docker/install-venv.sh (the builder stage's RUN) gives a venv with every console script that works
    outside the source tree, and without the test-only plugin."""
    venv = tmp_path / "venv"
    # The dev venv's uv (from constraints.txt) saves bootstrapping one; the install step is the image's.
    uv = Path(sys.executable).parent / "uv"
    env = os.environ | ({"UV": str(uv)} if uv.exists() else {})
    done = subprocess.run(["bash", str(REPO / "deploy" / "docker" / "install-venv.sh"), str(venv)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    installed = {p.name for p in (venv / "bin").iterdir()}
    assert _installed_scripts() <= installed
    assert not (venv / "bin" / "uv").exists() and not (venv / "bin" / "pip").exists()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    for command in (["contract-registry", "--help"], ["mesh-sim", "--help"], ["mesh-dlq", "--help"]):
        ran = subprocess.run([str(venv / "bin" / command[0]), *command[1:]], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, env=env)
        assert ran.returncode == 0 and "usage" in ran.stdout, ran.stderr
    # Installed as packages (not editable paths into the repo), and no test plugin.
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.util, contract_registry, mesh_common; "
                            "print(contract_registry.__file__); print(importlib.util.find_spec('mesh_testing'))"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    location, testing = probe.stdout.split()
    assert location.startswith(str(venv)) and testing == "None"


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".cache", ".env"} <= ignored
    assert "libs" not in ignored and "services" not in ignored and "constraints.txt" not in ignored
    assert "!deploy/docker/" in ignored, "the builder stage runs deploy/docker/install-venv.sh"
