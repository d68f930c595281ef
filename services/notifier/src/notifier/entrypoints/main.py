"""`notifier`: the worker (alerts consumer + ticker) and the HTTP API in one process, configured from env."""

from __future__ import annotations

import logging
import sys

from mesh_common.auth import AuthSettings
from mesh_common.ops import ReadinessCheck
from mesh_common.runtime import serve, setup_logging
from mesh_common.settings import ServiceSettings
from mesh_common.tracing import setup_tracing_from_env

from ..bootstrap import Wiring, add_consumers, bootstrap
from ..domain.rules import RulesError
from ..settings import SERVICE
from .app import create_app

log = logging.getLogger("notifier")


def readiness(wiring: Wiring) -> dict[str, ReadinessCheck]:
    async def consumer() -> str | None:
        return None if all(t.is_alive() for t in wiring.threads) else "an alert consumer stopped"

    async def database() -> str | None:
        wiring.notifier.store.ping()
        return None

    return {"consumer": consumer, "database": database}


def main() -> None:
    service = ServiceSettings()
    setup_logging(SERVICE, service.log_level)
    setup_tracing_from_env(SERVICE)
    try:
        wiring = bootstrap(service=service)
    except (RulesError, OSError) as exc:
        print(f"notifier: cannot use rules file: {exc}", file=sys.stderr)
        sys.exit(2)
    add_consumers(wiring)
    if wiring.follower is not None:
        # Alerts are decided at the mesh's time: wait for the ticks already on the topic.
        while not wiring.follower.wait_caught_up(5):
            log.info("waiting for the clock topic %s", wiring.settings.clock_topic)
    app = create_app(wiring.notifier, auth=AuthSettings(), checks=readiness(wiring))
    wiring.start()
    rules = wiring.notifier.rules
    log.info("notifier started: rules %s (version %s, %d rules), clock %s", wiring.settings.rules_file,
             rules.version, len(rules.rules), service.clock)
    serve(app, service, on_stop=[wiring.stop])


if __name__ == "__main__":
    main()
