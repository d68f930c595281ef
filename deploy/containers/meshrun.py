"""Run the project's image the way the manifests do, and measure it: each mesh process in its own container
(non-root, read-only root filesystem, only /tmp writable, no capabilities), on the host's network with a
port of its own, against a given Kafka broker and PostgreSQL database.

Used by `make image` (start-up time of each service, deploy/containers/startup.py) and by the container
tests (tests/deploy/test_containers.py), so both run the same commands with the same settings.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / ".cache" / "containers" / "containers.conf"
IMAGE_SCRIPT = REPO / "deploy" / "containers" / "image.sh"
LABEL = "contract-mesh.run"  # every container started here carries it, so leftovers can be found

# The commands the Kubernetes manifests and docker-compose.yml run, by process name.
COMMANDS: dict[str, list[str]] = {
    "contract-registry": ["contract-registry"],
    "obligation-engine": ["obligation-engine"],
    "invoice-validator": ["invoice-validator"],
    "renewal-sync": ["renewal-sync"],
    "notifier": ["notifier"],
    "erp-simulator": ["mesh-sim", "erp"],
    "crm-simulator": ["mesh-sim", "crm"],
    "smtp-catcher": ["mesh-sim", "smtp"],
}
SERVICES = ("contract-registry", "obligation-engine", "invoice-validator", "renewal-sync", "notifier")
MIGRATE = ["contract-registry", "migrate"]
PROVISION = ["python", "-m", "mesh_common.provision"]
# Hardening of docker-compose.yml's x-mesh-hardening and the manifests' securityContext.
HARDENING = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]

AP_SECRET, CRM_SECRET, ERP_TOKEN = "local-ap-webhook-secret", "local-crm-webhook-secret", "local-erp-token"
CRM_CLIENT, CRM_CLIENT_SECRET = "contract-mesh", "local-crm-client-secret"


def podman_env() -> dict[str, str]:
    return os.environ | {"CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=podman_env())
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def build_image(timeout: float = 1500) -> str:
    """deploy/containers/image.sh (packages, base image, project image; each step cached): the image reference."""
    done = subprocess.run(["bash", str(IMAGE_SCRIPT)], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"deploy/containers/image.sh failed:\n{done.stderr[-4000:]}")
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """Where the containers find Kafka and PostgreSQL, and the HTTP port each process listens on."""

    bootstrap: str
    database_url: str  # SQLAlchemy spelling: postgresql+psycopg://...
    ports: dict[str, int] = field(default_factory=lambda: {name: free_port() for name in COMMANDS})
    smtp_port: int = field(default_factory=free_port)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self, name: str) -> dict[str, str]:
        """The environment of one process, as infra/scripts/services.sh and docker-compose.yml give it."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_CLIENT_ID": name, "DATABASE_URL": self.database_url,
            "AUTH_HS256_SECRET": "local-development-secret-change-me-please", "MESH_CLOCK": "system",
            # Host networking: listen on loopback only, on a port of its own.
            "MESH_HTTP_HOST": "127.0.0.1", "MESH_HTTP_PORT": str(self.ports.get(name, 8080)),
            "MESH_PUBLIC_BASE_URL": self.url(name) if name in self.ports else "http://127.0.0.1:8080",
        }
        env |= {
            "contract-registry": {"REGISTRY_MIGRATE_ON_START": "false"},
            "obligation-engine": {"OBLIGATION_ERP_BASE_URL": self.url("erp-simulator"),
                                  "OBLIGATION_ERP_TOKEN": ERP_TOKEN, "OBLIGATION_DATA_DIR": "/tmp/obligation-engine",
                                  "OBLIGATION_PROVISION_TOPICS": "false"},
            "invoice-validator": {"VALIDATOR_AP_WEBHOOK_URL": self.url("erp-simulator") + "/ap/verdicts",
                                  "VALIDATOR_AP_WEBHOOK_SECRET": AP_SECRET,
                                  "VALIDATOR_DATA_DIR": "/tmp/invoice-validator"},
            "renewal-sync": {"RENEWAL_CRM": "salesforce", "RENEWAL_CRM_BASE_URL": self.url("crm-simulator"),
                             "RENEWAL_SALESFORCE_CLIENT_ID": CRM_CLIENT,
                             "RENEWAL_SALESFORCE_CLIENT_SECRET": CRM_CLIENT_SECRET,
                             "RENEWAL_WEBHOOK_SECRETS": json.dumps({"demo": CRM_SECRET})},
            "notifier": {"NOTIFIER_SMTP_HOST": "127.0.0.1", "NOTIFIER_SMTP_PORT": str(self.smtp_port),
                         "NOTIFIER_SMTP_STARTTLS": "false"},
            "erp-simulator": {"ERP_SIM_TOKEN": ERP_TOKEN, "ERP_SIM_WEBHOOK_SECRET": AP_SECRET,
                              "ERP_SIM_VALIDATOR_URL": self.url("invoice-validator")},
            "crm-simulator": {"CRM_SIM_CLIENT_ID": CRM_CLIENT, "CRM_SIM_CLIENT_SECRET": CRM_CLIENT_SECRET,
                              "CRM_SIM_WEBHOOK_SECRET": CRM_SECRET,
                              "CRM_SIM_DECISION_URL": self.url("renewal-sync") + "/v1/crm/decisions"},
            "smtp-catcher": {"MESH_SMTP_HOST": "127.0.0.1", "MESH_SMTP_PORT": str(self.smtp_port)},
        }.get(name, {})
        return env


def _env_args(env: dict[str, str]) -> list[str]:
    return [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]


def run_job(image: str, stack: Stack, name: str, command: list[str],
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """A one-shot container (the migration or topic job), hardened like the services; removed afterwards."""
    return podman("run", "--rm", "--network", "host", "--label", LABEL, *HARDENING, *_env_args(stack.env(name)),
                  image, *command, timeout=timeout, check=False)


def start(image: str, stack: Stack, name: str, run_id: str) -> str:
    """Starts one process detached; returns the container's name."""
    container = f"mesh-{run_id}-{name}"
    podman("run", "-d", "--name", container, "--network", "host", "--label", LABEL, *HARDENING,
           *_env_args(stack.env(name)), image, *COMMANDS[name])
    return container


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def running(container: str) -> bool:
    done = podman("inspect", "--format", "{{.State.Running}}", container, check=False)
    return done.stdout.strip() == "true"


def wait_ready(stack: Stack, containers: dict[str, str], started: float, timeout: float = 120) -> dict[str, float]:
    """Seconds from `started` until each process answered /readyz with 200 (polled together, 0.1 s apart);
    a process whose container ended is given up on at once."""
    ready: dict[str, float] = {}
    ended: set[str] = set()
    deadline = started + timeout
    while len(ready) + len(ended) < len(containers) and time.monotonic() < deadline:
        for name, container in containers.items():
            if name in ready or name in ended:
                continue
            if http_status(stack.url(name) + "/readyz") == 200:
                ready[name] = round(time.monotonic() - started, 2)
            elif not running(container):
                ended.add(name)
        time.sleep(0.1)  # a poll interval, not a wait for an outcome
    return ready


@dataclass
class Stopped:
    seconds: float
    exit_code: int
    oom_or_killed: bool


def stop(container: str, grace: float) -> Stopped:
    """SIGTERM, then waits up to `grace` seconds for the process to end by itself (SIGKILL only after that)."""
    began = time.monotonic()
    podman("kill", "--signal", "TERM", container, check=False)  # refused when it has already ended
    while running(container) and time.monotonic() - began < grace:
        time.sleep(0.1)
    seconds = round(time.monotonic() - began, 2)
    killed = running(container)
    if killed:
        podman("kill", "--signal", "KILL", container, check=False)
        podman("wait", container, check=False)
    code = podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
    return Stopped(seconds, int(code), killed)


def stop_all(containers: dict[str, str], grace: dict[str, float]) -> dict[str, Stopped]:
    """SIGTERM to every container at once, then as `stop` for each: what a node drain does."""
    began = time.monotonic()
    for container in containers.values():
        podman("kill", "--signal", "TERM", container, check=False)
    ended: dict[str, float] = {}
    while len(ended) < len(containers) and time.monotonic() - began < max(grace.values()):
        for name, container in containers.items():
            if name not in ended and not running(container):
                ended[name] = round(time.monotonic() - began, 2)
        time.sleep(0.1)
    result = {}
    for name, container in containers.items():
        killed = name not in ended or ended[name] > grace[name]
        if name not in ended:
            podman("kill", "--signal", "KILL", container, check=False)
            podman("wait", container, check=False)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
        result[name] = Stopped(ended.get(name, round(time.monotonic() - began, 2)), int(code), killed)
    return result


def exec_in(container: str, *command: str) -> subprocess.CompletedProcess[str]:
    return podman("exec", container, *command, check=False)


def process_status(container: str) -> dict[str, str]:
    """/proc/1/status of the container's main process: Uid, Gid, CapEff, ..."""
    text = exec_in(container, "cat", "/proc/1/status").stdout
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def logs(container: str) -> str:
    done = podman("logs", container, check=False)
    return (done.stdout + done.stderr)[-3000:]


def remove(*containers: str) -> None:
    if containers:
        podman("rm", "--force", "--ignore", *containers, check=False)


def remove_leftovers() -> None:
    """Every container a run here started and did not remove (e.g. after an interrupted test)."""
    done = podman("ps", "-a", "-q", "--filter", f"label={LABEL}", check=False)
    remove(*done.stdout.split())


def image_size(image: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def image_config(image: str) -> dict[str, Any]:
    """The image's OCI config (User, Env, ExposedPorts, Labels, ...)."""
    inspected: list[dict[str, Any]] = json.loads(podman("image", "inspect", image).stdout)
    config: dict[str, Any] = inspected[0]["Config"]
    return config
