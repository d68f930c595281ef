"""Fixtures for the deploy tests: the pinned tools (installed once into .cache/bin) and renders."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
RENDER_TARGETS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}


def _versions() -> dict[str, str]:
    pairs = {}
    for line in (REPO / "deploy" / "tools" / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            pairs[key.strip()] = value.strip()
    return pairs


@pytest.fixture(scope="session")
def deploy_tools() -> Path:
    """Runs deploy/tools/install.sh (a no-op when the pinned tools are cached); returns .cache/bin."""
    if shutil.which("go") is None:
        pytest.fail("the deploy tests need Go (kustomize, kubeconform and compose-check are built from "
                    "the Go module proxy by deploy/tools/install.sh)")
    done = subprocess.run(["bash", str(REPO / "deploy" / "tools" / "install.sh")], cwd=REPO,
                          capture_output=True, text=True, timeout=840, env=os.environ.copy())
    assert done.returncode == 0, f"deploy/tools/install.sh failed:\n{done.stderr}"
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def k8s_schema_dir(deploy_tools: Path) -> Path:
    version = _versions()["K8S_SCHEMA_VERSION"]
    path = REPO / ".cache" / "k8s-schemas" / f"{version}-standalone-strict"
    assert (path / "deployment-apps-v1.json").is_file(), f"no Kubernetes schemas in {path}"
    return path


def kustomize_build(tools: Path, target: Path) -> str:
    done = subprocess.run([str(tools / "kustomize"), "build", str(target)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, f"kustomize build {target} failed:\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def renders(deploy_tools: Path) -> dict[str, str]:
    """`kustomize build` of base, dev and prod: the YAML text of each."""
    return {name: kustomize_build(deploy_tools, path) for name, path in RENDER_TARGETS.items()}


@pytest.fixture(scope="session")
def rendered_docs(renders: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {name: [d for d in yaml.safe_load_all(text) if d] for name, text in renders.items()}


@pytest.fixture(scope="session")
def kustomize(deploy_tools: Path) -> Callable[[Path], str]:
    """`kustomize build <dir>` with the pinned kustomize; returns the rendered YAML."""
    return lambda target: kustomize_build(deploy_tools, target)
