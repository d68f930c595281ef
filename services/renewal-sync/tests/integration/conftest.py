from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mesh_testing import unique_name

from .harness import Bus, FakeCrm, Service

Launch = Callable[..., tuple[Service, Bus, FakeCrm | None]]


@pytest.fixture
def launch(kafka_bootstrap: str, postgres_url: str, tmp_path: Path) -> Iterator[Launch]:
    """Start renewal-sync on fresh topics / group / schema, with a fake CRM of the given kind."""
    started: list[tuple[Service, Bus, FakeCrm | None]] = []

    def _launch(crm_kind: str | None = "salesforce", flaky: bool = True,
                **env: str) -> tuple[Service, Bus, FakeCrm | None]:
        prefix = unique_name("rs") + "."
        crm = FakeCrm(crm_kind, flaky=flaky).start() if crm_kind else None
        bus = Bus(kafka_bootstrap, prefix)
        service = Service(kafka_bootstrap, postgres_url, prefix, crm, tmp_path, **env).start()
        started.append((service, bus, crm))
        return service, bus, crm

    yield _launch
    for service, bus, crm in started:
        service.stop()
        bus.close()
        if crm is not None:
            crm.stop()
