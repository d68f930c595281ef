"""The mesh's public interfaces as the workload reaches them: the registry's REST API with a JWT, an
idempotent producer, the state topic as the history has read it; each attempt retried until the mesh
accepts it (a fault may be in the way)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from confluent_kafka import Producer

from contract_schema.base import Event
from contract_schema.codec import encode
from contract_schema.contract import ContractSnapshot
from contract_schema.topics import CONTRACT_STATE, topic_for
from mesh_common.auth import AuthSettings, issue_token

from .harness import Mesh
from .history import History
from .tenant import ContractModel

T = TypeVar("T")
TENANT = "chaos"
SOURCE = "/contract-mesh/chaos"


class GaveUp(Exception):
    """The mesh did not accept an operation within the workload's patience."""


class MeshClient:
    """The transport a workload runs on; `Workload` adds what the tenant does with it."""

    def __init__(self, mesh: Mesh, history: History, patience: float = 120.0) -> None:
        self.mesh, self.history = mesh, history
        self.patience = patience
        self.http = httpx.Client(timeout=10)
        self.token = issue_token(AuthSettings(hs256_secret=mesh.procs["contract-registry"].env["AUTH_HS256_SECRET"]),
                                 subject="mesh-chaos", tenant=TENANT,
                                 scopes=["contracts:read", "contracts:write", "invoices:read", "invoices:write"])
        self.producer = Producer({"bootstrap.servers": mesh.bootstrap, "enable.idempotence": True, "linger.ms": 2,
                                  "log_level": 0, "message.timeout.ms": 20000})

    def retry(self, what: str, attempt: Callable[[], T | None]) -> T:
        """Call `attempt` until it returns a value; None or a transport error means try again (with backoff)."""
        deadline = time.monotonic() + self.patience
        pause = 0.2
        last: object = None
        while True:
            try:
                got = attempt()
                if got is not None:
                    return got
            except (httpx.HTTPError, RuntimeError) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise GaveUp(f"{what}: not accepted within {self.patience:.0f}s ({last})")
            time.sleep(pause)  # backoff between attempts
            pause = min(pause * 1.5, 3.0)

    def produce(self, event: Event, event_id: str) -> None:
        record = encode(event, source=SOURCE, event_id=event_id)
        topic = topic_for(type(event)).name

        def once() -> bool | None:
            errors: list[Any] = []
            self.producer.produce(topic, key=record.key, value=record.value, headers=list(record.headers),
                                  on_delivery=lambda err, _m: errors.append(err) if err else None)
            left = self.producer.flush(25)
            return True if not left and not errors else None

        self.retry(f"produce {type(event).__name__}", once)

    def registry(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.http.request(method, self.mesh.url("contract-registry") + path, headers=headers, **kw)

    def snapshot(self, contract_id: str) -> ContractSnapshot | None:
        """The newest snapshot of a contract on the state topic (as the history has read it)."""
        found = self.history.find(CONTRACT_STATE.name, lambda s: s.key == contract_id)
        snaps = [s.event for s in found if isinstance(s.event, ContractSnapshot)]
        return max(snaps, key=lambda s: (s.current.version, s.updated_at)) if snaps else None

    def wait_snapshot(self, c: ContractModel, status: str | None = None) -> ContractSnapshot:
        def ready() -> ContractSnapshot | None:
            snap = self.snapshot(c.contract_id)
            if snap is None or snap.current.version < c.version or (status and snap.status.value != status):
                return None
            return snap

        return self.retry(f"snapshot of {c.contract_id} v{c.version} {status or ''}", ready)

    def close(self) -> None:
        self.producer.flush(10)
        self.http.close()
