"""A PostgreSQL restart while events keep coming is waited out: nothing is lost, nothing counted twice."""

from __future__ import annotations

import uuid

import httpx
from portfolio import samples as s
from portfolio.adapters.db import migrate, sqlalchemy_url
from portfolio.entrypoints.app import create_app
from portfolio.settings import INPUTS

from mesh_testing import create_topics, wait_for
from mesh_testing.http import serve
from mesh_testing.servers import PostgresServer

from .conftest import Portfolio, config, token


def test_events_published_while_the_database_is_down_arrive_once_it_is_back(
        portfolio: Portfolio, own_postgres: PostgresServer, tenant: str) -> None:
    prefix = f"pfdb{uuid.uuid4().hex[:6]}."
    names = [prefix + spec.name for spec in INPUTS]
    create_topics(portfolio.bootstrap, names + [n + ".dlq" for n in names], partitions=3)
    db_url, schema = sqlalchemy_url(own_postgres.url), "portfolio"
    migrate(db_url, schema)
    mine = Portfolio("", prefix, db_url, schema, portfolio.bootstrap, portfolio.producer)
    headers = {"Authorization": f"Bearer {token(tenant)}"}
    with serve(create_app(config(db_url, schema, portfolio.bootstrap, prefix))) as url:
        def contracts() -> list[str]:
            response = httpx.get(url + "/v1/portfolio/pipeline", headers=headers, timeout=10)
            return [r["contract_id"] for r in response.json()["rows"]] if response.status_code == 200 else []

        mine.publish(s.snapshot("C-1", tenant=tenant))
        wait_for(lambda: contracts() == ["C-1"], timeout=30, message="C-1 before the restart")
        own_postgres._run("stop")  # restart() would sleep through the outage; the events must come during it
        try:
            mine.publish(s.snapshot("C-2", tenant=tenant), s.snapshot("C-3", tenant=tenant))
            assert not mine.caught_up(f"{prefix}portfolio")  # nothing committed: the batch is not written
        finally:
            own_postgres._run("start")
        wait_for(lambda: contracts() == ["C-1", "C-2", "C-3"], timeout=60, message="C-2 and C-3 after the restart")
        mine.resend(2)  # and the same records again change nothing
        wait_for(lambda: mine.caught_up(f"{prefix}portfolio"), timeout=30, message="the redelivery read")
        assert contracts() == ["C-1", "C-2", "C-3"]
