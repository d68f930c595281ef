"""`portfolio rebuild`: an empty schema and a new consumer group rebuild exactly the same read model from
the topics, while the running service keeps serving; the migrations build what tables.py describes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from portfolio import samples as s
from portfolio.adapters.db import make_engine, migrate
from portfolio.adapters.tables import ROW_TABLES, metadata
from portfolio.entrypoints.app import create_app
from sqlalchemy import create_engine, text

from contract_schema.renewal import RenewalDecisionKind
from mesh_testing import wait_for
from mesh_testing.http import serve

from .conftest import Portfolio, config, token
from .test_api import OBLIGATIONS, PIPELINE, settled, story


def _rows(db_url: str, schema: str) -> dict[str, list[tuple[str, str, str]]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            out = {name: [tuple(r) for r in conn.execute(text(
                f'SELECT tenant_id, key, data::text FROM "{schema}".{name} ORDER BY tenant_id, key'))]
                for name in ROW_TABLES}
            out["events"] = [tuple(r) for r in conn.execute(text(
                f'SELECT source, id, summary FROM "{schema}".events ORDER BY source, id'))]
            return out  # type: ignore[return-value]
    finally:
        engine.dispose()


def test_rebuild_from_the_topics_gives_identical_figures(portfolio: Portfolio, tenant: str) -> None:
    story(portfolio, tenant)
    # A later decision and snapshot that a rebuild reads in another interleaving than the live consumer did.
    portfolio.publish(s.decision("C-1", tenant=tenant, kind=RenewalDecisionKind.TERMINATE),
                      s.snapshot("C-4", tenant=tenant, days_to_deadline=100, value="800", currency="USD",
                                 at=s.T0.replace(hour=10)))
    settled(portfolio, tenant)
    wait_for(portfolio.caught_up, timeout=30, message="the live service read every topic")
    live = {path: portfolio.json(path, tenant) for path in (PIPELINE, OBLIGATIONS)}

    schema, group = f"rebuilt_{uuid.uuid4().hex[:8]}", f"{portfolio.prefix}rebuild-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "DATABASE_URL": portfolio.db_url, "KAFKA_BOOTSTRAP_SERVERS": portfolio.bootstrap,
           "PORTFOLIO_TOPIC_PREFIX": portfolio.prefix, "MESH_CLOCK": "system", "MESH_LOG_LEVEL": "WARNING"}
    rebuild = subprocess.Popen([sys.executable, "-m", "portfolio.entrypoints.cli", "rebuild", "--schema", schema,
                                "--group", group], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert portfolio.get(PIPELINE, tenant).json() == live[PIPELINE]  # the dashboard keeps serving meanwhile
        out, err = rebuild.communicate(timeout=120)
    finally:
        if rebuild.poll() is None:
            rebuild.kill()
    assert rebuild.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["schema"] == schema and report["events"] > 0
    assert portfolio.caught_up(group)  # the new group starts where the rebuild ended

    assert _rows(portfolio.db_url, schema) == _rows(portfolio.db_url, portfolio.schema)
    rebuilt_app = create_app(config(portfolio.db_url, schema, portfolio.bootstrap, portfolio.prefix,
                                    consume_in_process=False))
    with serve(rebuilt_app) as url:
        for path, figures in live.items():
            answer = httpx.get(url + path, headers={"Authorization": f"Bearer {token(tenant)}"}, timeout=10)
            assert answer.json() == figures


def test_a_rebuild_refuses_a_schema_that_already_holds_a_read_model(portfolio: Portfolio) -> None:
    env = {**os.environ, "DATABASE_URL": portfolio.db_url, "KAFKA_BOOTSTRAP_SERVERS": portfolio.bootstrap}
    done = subprocess.run([sys.executable, "-m", "portfolio.entrypoints.cli", "rebuild", "--schema",
                           portfolio.schema], env=env, capture_output=True, timeout=60)
    assert done.returncode == 2 and b"already holds a read model" in done.stderr


def test_migrations_from_nothing_match_the_tables(portfolio: Portfolio) -> None:
    schema = f"mig_{uuid.uuid4().hex[:8]}"
    migrate(portfolio.db_url, schema)
    engine = make_engine(portfolio.db_url, schema)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table"
                                        and d[1].name == "alembic_version")] == []
    finally:
        engine.dispose()
