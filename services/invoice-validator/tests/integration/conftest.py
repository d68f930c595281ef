from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from .harness import Running, Webhook, start, stop, webhook_server

# The topic clock of the worker under test starts here; tests move it forward only.
CLOCK_START = datetime(2026, 4, 1, tzinfo=UTC)
ALERT_THRESHOLD = "5000"


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    with webhook_server() as hook:
        yield hook


@pytest.fixture(scope="module")
def validator(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, webhook: Webhook) -> Iterator[Running]:
    """One worker (console script, subprocess) per test module, on its own topic prefix."""
    running = start(kafka_bootstrap, tmp_path_factory.mktemp("iv"), extra_env={
        "VALIDATOR_ALERT_THRESHOLD": ALERT_THRESHOLD,
        "VALIDATOR_PARK_TIMEOUT_SECONDS": "3600",
        "VALIDATOR_AP_WEBHOOK_URL": webhook.url,
        "VALIDATOR_AP_WEBHOOK_SECRET": "ap-secret",
    })
    running.tick(CLOCK_START)
    try:
        yield running
    finally:
        stop(running)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
