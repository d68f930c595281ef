"""`portfolio serve` as the process it is deployed as: migrates on start, builds the read model from the topics,
answers over HTTP, logs in the demo's dev user, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import date

import httpx
from portfolio import samples as s

from mesh_testing import free_port, wait_for

from .conftest import AUTH, Portfolio, token


def test_serve_migrates_consumes_answers_and_stops_on_sigterm(portfolio: Portfolio, tenant: str) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": portfolio.db_url, "KAFKA_BOOTSTRAP_SERVERS": portfolio.bootstrap,
           "PORTFOLIO_TOPIC_PREFIX": portfolio.prefix, "PORTFOLIO_DB_SCHEMA": f"cli_{uuid.uuid4().hex[:8]}",
           "PORTFOLIO_CONSUMER_GROUP": f"{portfolio.prefix}cli-{uuid.uuid4().hex[:6]}",
           "PORTFOLIO_MIGRATE_ON_START": "true", "PORTFOLIO_DEV_LOGIN": "true", "PORTFOLIO_DEV_TENANT": tenant,
           "AUTH_HS256_SECRET": AUTH.hs256_secret, "MESH_HTTP_PORT": str(port), "MESH_CLOCK": "system"}
    process = subprocess.Popen([sys.executable, "-m", "portfolio.entrypoints.cli", "serve"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(base), timeout=60, message="portfolio serve ready")
        portfolio.publish(s.snapshot("C-cli", tenant=tenant, days_to_deadline=0, today=date.today()))
        headers = {"Authorization": f"Bearer {token(tenant)}"}
        rows = wait_for(lambda: httpx.get(base + "/v1/portfolio/pipeline", headers=headers).json()["rows"],
                        timeout=30, message="the snapshot in the pipeline")
        assert [r["contract_id"] for r in rows] == ["C-cli"]
        login = httpx.get(base + "/login/dev")
        assert login.status_code == 303 and login.headers["location"] == "/dashboard"
        page = httpx.get(base + "/dashboard", cookies={"portfolio_token": login.cookies["portfolio_token"]})
        assert page.status_code == 200 and "Contract C-cli" in page.text
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    # uvicorn re-raises the signal once it has shut down cleanly: -SIGTERM is a clean stop too.
    errors = err.decode()
    assert process.returncode in (0, -signal.SIGTERM) and "Traceback" not in errors, errors[-2000:]
    assert "Application shutdown complete" in errors


def _ready(base: str) -> bool:
    try:
        return httpx.get(base + "/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
