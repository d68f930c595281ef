"""The console script as operators run it: `contract-registry` (serve) migrating on start-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
from contract_registry.examples import draft

from mesh_testing import free_port, wait_for

from .conftest import AUTH, Env, make_env, token


def test_serve_migrates_on_start_and_publishes_through_the_in_process_relay(
        db_url: str, empty_schema: str, kafka_bootstrap: str) -> None:
    env: Env = make_env(db_url, empty_schema, kafka_bootstrap)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "contract_registry.entrypoints.cli"],
        env={**os.environ, **env.env_vars(), "REGISTRY_MIGRATE_ON_START": "true", "MESH_HTTP_PORT": str(port),
             "AUTH_HS256_SECRET": AUTH.hs256_secret, "MESH_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout=60, interval=0.2, message="registry ready (migrated, relay up)")
        created = httpx.post(f"{base}/v1/contracts", json=draft(), headers=token(), timeout=10)
        assert created.status_code == 201, created.text
        [msg] = env.read(env.settings.state_topic, 1)
        assert msg.key() == created.json()["contract_id"].encode()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    errors = proc.stderr.read().decode() if proc.stderr else ""
    # uvicorn shuts down gracefully, then re-raises the captured SIGTERM (so -15 is a clean exit too).
    assert code in (0, -signal.SIGTERM) and "Traceback" not in errors, errors
