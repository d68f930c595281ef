"""Bulk import against real PostgreSQL and Kafka: every imported contract once on the topic through the
outbox, bad lines rejected by line and field while the good ones land, a re-import creating nothing,
two replicas importing the same file at once, and the `contract-registry import` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from contract_registry.adapters.db import make_engine
from contract_registry.adapters.orm import ContractRow, OutboxRow
from contract_registry.bootstrap import bootstrap
from contract_registry.domain import importing
from contract_registry.entrypoints.app import create_app
from contract_registry.examples import draft, terms
from contract_registry.service import Caller
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mesh_testing import wait_for
from mesh_testing.http import serve

from .conftest import Env, body, token

W = token()
NDJSON = {"Content-Type": "application/x-ndjson"}


def ndjson(*records: dict[str, Any]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode() + b"\n"


def finished(client: TestClient, import_id: str, headers: dict[str, str] = W) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        state: dict[str, Any] = client.get(f"/v1/imports/{import_id}", headers=headers).json()
        return state if state["pending"] == 0 else None
    return wait_for(done, timeout=60, message=f"import {import_id} written")


def post(client: TestClient, data: bytes, headers: dict[str, str] = NDJSON, **params: Any) -> dict[str, Any]:
    resp = client.post("/v1/contracts:import", content=data, headers=W | headers, params=params)
    assert resp.status_code == 202, resp.text
    assert resp.headers["Location"] == f"/v1/imports/{resp.json()['import_id']}"
    state: dict[str, Any] = resp.json()
    return state


def scalar(env: Env, query: Any) -> Any:
    engine = make_engine(env.db_url, env.schema)
    try:
        with engine.connect() as conn:
            return conn.scalar(query)
    finally:
        engine.dispose()


def test_an_import_publishes_each_contract_once_rejects_a_bad_line_and_a_re_import_creates_nothing(
        client: TestClient, env: Env) -> None:
    records = [draft(external_id=f"LEG-{i}", title=f"Legacy {i}") for i in range(1, 6)]
    records.insert(2, draft(external_id="LEG-bad", terms=terms(notice_period_days=1000)))
    data = ndjson(*records)
    started = post(client, data)
    assert started["received"] == 6
    state = finished(client, started["import_id"])
    assert (state["status"], state["accepted"], state["created"], state["rejected"]) == ("done", 5, 5, 1)
    [rejection] = state["rejections"]
    assert rejection["line"] == 3
    assert [d["field"] for d in rejection["detail"]] == ["terms.notice_period_days"]
    assert rejection["detail"][0]["loc"] == ["body", "terms", "notice_period_days"]

    listed = client.get("/v1/contracts", headers=W, params={"limit": 50}).json()["items"]
    assert sorted(c["title"] for c in listed) == [f"Legacy {i}" for i in range(1, 6)]
    snapshots = env.read(env.settings.state_topic, 5)
    assert sorted(m.key().decode() for m in snapshots) == sorted(c["contract_id"] for c in listed)
    assert {body(m)["status"] for m in snapshots} == {"draft"}

    again = finished(client, post(client, data)["import_id"])
    assert (again["created"], again["existing"], again["rejected"]) == (0, 5, 1)
    assert scalar(env, select(func.count()).select_from(ContractRow)) == 5
    wait_for(lambda: scalar(env, select(func.count()).select_from(OutboxRow)
                            .where(OutboxRow.published_at.is_(None))) == 0, timeout=60, message="outbox drained")
    assert env.count(env.settings.state_topic) == 5  # once each, nothing from the re-import
    assert env.count(env.settings.events_topic) == 0  # a create publishes the snapshot only


def test_csv_parts_of_one_import_name_file_lines_and_another_tenant_sees_nothing(db_client: TestClient) -> None:
    header = "external_id,title,counterparty_id,counterparty_name,direction,contract_type,owner_name," \
             "owner_email,currency,total_value,effective_date,end_date,tags\n"
    row = "{id},Title {id},V-1,Vendor,buy-side,services,Olga,olga@example.com,EUR,100.00,2026-01-01,{end},a|b\n"
    first = post(db_client, (header + row.format(id="C1", end="2026-12-31")).encode(), {"Content-Type": "text/csv"})
    second = post(db_client, (header + row.format(id="C2", end="2025-12-31") + row.format(id="C3", end="")).encode(),
                  {"Content-Type": "text/csv; charset=utf-8"}, import_id=first["import_id"], first_line=2)
    assert second["import_id"] == first["import_id"] and second["received"] == 3
    state = finished(db_client, first["import_id"])
    assert (state["created"], state["rejected"]) == (2, 1)
    assert [(r["line"], r["detail"][0]["field"]) for r in state["rejections"]] == [(3, "terms.end_date")]
    other = token(tenant="tenant-b")
    assert db_client.get(f"/v1/imports/{first['import_id']}", headers=other).status_code == 404
    assert db_client.post("/v1/contracts:import", content=b"{}", headers=other | NDJSON,
                          params={"import_id": first["import_id"]}).status_code == 404
    assert db_client.get("/v1/contracts", headers=other).json()["items"] == []


def test_the_route_is_guarded_like_the_others_and_answers_4xx_naming_the_field(db_client: TestClient) -> None:
    data = ndjson(draft())
    assert db_client.post("/v1/contracts:import", content=data, headers=NDJSON).status_code == 401
    read_only = token(scopes=("contracts:read",))
    assert db_client.post("/v1/contracts:import", content=data, headers=read_only | NDJSON).status_code == 403
    assert db_client.get("/v1/imports/nope", headers=token(scopes=("contracts:write",))).status_code == 403
    xml = db_client.post("/v1/contracts:import", content=b"<a/>", headers=W | {"Content-Type": "text/xml"})
    assert xml.status_code == 415 and xml.json()["detail"][0]["field"] == "Content-Type"
    empty = db_client.post("/v1/contracts:import", content=b"\n\n", headers=W | NDJSON)
    assert empty.status_code == 422 and empty.json()["detail"][0]["field"] == "body"
    bad_line = db_client.post("/v1/contracts:import", content=data, headers=W | NDJSON, params={"first_line": 0})
    assert bad_line.status_code == 422 and bad_line.json()["detail"][0]["field"] == "first_line"
    assert db_client.get("/v1/imports/nope", headers=W).status_code == 404


def test_two_replicas_importing_the_same_file_at_once_create_each_contract_once(db_env: Env) -> None:
    records = importing.read(ndjson(*[draft(title=f"T{i}") for i in range(300)]), importing.NDJSON)
    replicas = [bootstrap(db_env.config) for _ in range(2)]
    alice = Caller(subject="alice", tenant="tenant-a")
    try:
        imports = [w.importer.begin(alice, len(records)) for w in replicas]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda pair: pair[0].importer.run(alice, pair[1].id, records), zip(replicas, imports,
                                                                                              strict=True)))
        states = [w.importer.status("tenant-a", i.id) for w, i in zip(replicas, imports, strict=True)]
    finally:
        for w in replicas:
            w.stop()
    assert sum(s.created for s in states) == 300 and all(s.created + s.existing == 300 for s in states)
    assert scalar(db_env, select(func.count()).select_from(ContractRow)) == 300
    assert scalar(db_env, select(func.count()).select_from(OutboxRow)) == 300


def test_the_import_command_shows_progress_and_names_rejected_lines(db_env: Env, tmp_path: Path) -> None:
    good = [json.dumps(draft(external_id=f"F-{i}", title=f"File {i}")) for i in range(400)]
    good[7] = json.dumps(draft(external_id="F-bad", terms=terms(currency="USD")))  # rate card in EUR
    path = tmp_path / "portfolio.ndjson"
    path.write_text("\n".join(good) + "\n")
    with serve(create_app(db_env.config)) as url:
        proc = subprocess.run([sys.executable, "-m", "contract_registry.entrypoints.cli", "import", str(path)],
                              env={**os.environ, "REGISTRY_URL": url, "REGISTRY_TOKEN": W["Authorization"][7:]},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr  # some records were rejected
        assert "accepted 399 rejected 1 pending 0" in proc.stderr
        assert "line 8: terms.rate_card[0].currency:" in proc.stderr
        assert "created 399, already there 0, rejected 1" in proc.stderr
        again = subprocess.run([sys.executable, "-m", "contract_registry.entrypoints.cli", "import", str(path)],
                               env={**os.environ, "REGISTRY_URL": url, "REGISTRY_TOKEN": W["Authorization"][7:]},
                               capture_output=True, text=True, timeout=120)
        assert "created 0, already there 399, rejected 1" in again.stderr, again.stderr
