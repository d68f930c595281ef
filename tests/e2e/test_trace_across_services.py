"""One trace across the mesh: a contract-side milestone completion, from the registry's HTTP
request through its outbox and Kafka into the obligation-engine, and from there through the
alert it raises into the notifier. Three real services as subprocesses, each writing its spans
to a file; spans from all three must share the trace id the caller started."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from contract_schema.topics import all_topics
from mesh_common.auth import AuthSettings, issue_token
from mesh_common.provision import provision
from mesh_testing import consume_all, free_port, unique_name, wait_for

AUTH_SECRET = "trace-test-secret-0123456789abcdefghij"


class ErpEndpoint:
    """ERP's milestone release endpoint on loopback: accepts every call."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def _script(name: str) -> str:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


def _sqlalchemy(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def mesh(tmp_path: Path, kafka_bootstrap: str, postgres_url: str) -> Iterator[dict[str, Any]]:
    prefix = unique_name("trace") + "."
    suffix = secrets.token_hex(4)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for schema in (f"reg_trace_{suffix}", f"ntf_trace_{suffix}"):
            conn.execute(f'CREATE SCHEMA "{schema}"')
    # Every prefixed catalog topic with the catalog's partitions, as provisioning does in production.
    topics = [dataclasses.replace(t, name=prefix + t.name) for t in all_topics()]
    assert provision({"bootstrap.servers": kafka_bootstrap}, topics).ok
    erp = ErpEndpoint()
    common = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "MESH_OTEL_EXPORTER": "console",
              "MESH_HTTP_HOST": "127.0.0.1", "AUTH_HS256_SECRET": AUTH_SECRET, "MESH_LOG_LEVEL": "INFO",
              "DATABASE_URL": _sqlalchemy(postgres_url)}
    ports = {name: free_port() for name in ("contract-registry", "obligation-engine", "notifier")}
    env = {
        "contract-registry": {"REGISTRY_DB_SCHEMA": f"reg_trace_{suffix}", "REGISTRY_MIGRATE_ON_START": "true",
                              "REGISTRY_TOPIC_PREFIX": prefix, "REGISTRY_CONSUMER_GROUP": prefix + "registry"},
        "obligation-engine": {"OBLIGATION_TOPIC_PREFIX": prefix, "OBLIGATION_APP_ID": prefix + "engine",
                              "OBLIGATION_ERP_BASE_URL": erp.url, "OBLIGATION_ERP_TOKEN": "erp-token",
                              "OBLIGATION_DATA_DIR": str(tmp_path / "engine-data")},
        "notifier": {"NOTIFIER_DB_SCHEMA": f"ntf_trace_{suffix}", "NOTIFIER_GROUP_ID": prefix + "notifier",
                     "NOTIFIER_ALERTS_TOPIC": prefix + "clm.alert.v1",
                     "NOTIFIER_NOTIFICATIONS_TOPIC": prefix + "clm.notification.v1",
                     "NOTIFIER_CLOCK_TOPIC": prefix + "mesh.clock.v1", "NOTIFIER_SMTP_PORT": str(free_port())},
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, extra in env.items():
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (lives as long as the process)
            procs[name] = subprocess.Popen(
                [_script(name)], stdout=log, stderr=subprocess.STDOUT,
                env=common | extra | {"MESH_HTTP_PORT": str(ports[name]),
                                      "MESH_OTEL_FILE": str(tmp_path / f"{name}.spans.jsonl")})
        for name, port in ports.items():
            wait_for(lambda port=port, name=name: _healthy(port, procs[name], tmp_path / f"{name}.log"),  # type: ignore[misc]
                     timeout=180, message=f"{name} healthy")
        yield {"prefix": prefix, "ports": ports, "dir": tmp_path, "bootstrap": kafka_bootstrap}
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        erp.server.shutdown()


def _healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"{log.stem} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_one_trace_runs_from_the_registry_through_the_engine_to_the_notifier(mesh: dict[str, Any]) -> None:
    registry = f"http://127.0.0.1:{mesh['ports']['contract-registry']}"
    token = issue_token(AuthSettings(hs256_secret=AUTH_SECRET), subject="trace-test", tenant="trace-tenant",
                        scopes=["contracts:read", "contracts:write"])
    auth = {"Authorization": f"Bearer {token}"}
    today = datetime.now(UTC).date()
    terms = {"currency": "EUR", "total_value": "50000.00", "effective_date": today.isoformat(),
             "end_date": (today + timedelta(days=365)).isoformat(), "notice_period_days": 30,
             "obligations": [{"obligation_id": "M1", "kind": "milestone", "title": "Go-live",
                              "due_date": (today + timedelta(days=60)).isoformat(), "amount": "10000.00"}]}
    draft = {"title": "Traced contract", "counterparty": {"party_id": "P-T", "name": "Tracer Ltd"},
             "direction": "buy-side", "contract_type": "services",
             "owner": {"name": "Olga Owner", "email": "olga@example.com"},
             "backup_owner": {"name": "Bob Backup", "email": "bob@example.com"}, "terms": terms}
    with httpx.Client(base_url=registry, headers=auth, timeout=30) as http:
        created = http.post("/v1/contracts", json=draft)
        assert created.status_code == 201, created.text
        contract_id = created.json()["contract_id"]
        assert http.post(f"/v1/contracts/{contract_id}/activate").status_code == 200

        # The engine knows the contract once it has scheduled its obligations (the only contract
        # under this test's topic prefix, so the first obligation event is this contract's).
        (scheduled,) = consume_all(mesh["bootstrap"], mesh["prefix"] + "clm.obligation.events.v1", 1, timeout=180)
        assert scheduled.key() == contract_id.encode()

        trace_id = secrets.token_hex(16)
        completed = http.post(f"/v1/contracts/{contract_id}/obligations/M1/complete",
                              headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}, json={})
        assert completed.status_code == 202, completed.text

    def services_in_trace() -> set[str]:
        found = set()
        for name in ("contract-registry", "obligation-engine", "notifier"):
            for span in spans(mesh["dir"] / f"{name}.spans.jsonl"):
                if span["context"]["trace_id"] == f"0x{trace_id}":
                    found.add(span["resource"]["attributes"]["service.name"])
        return found

    found = wait_for(lambda: services_in_trace() if len(services_in_trace()) >= 3 else None, timeout=120,
                     message="spans of three services in one trace")
    assert found == {"contract-registry", "obligation-engine", "notifier"}
