"""`renewal-sync`: the worker, the outbox relay and the HTTP app in one process, configured from env."""

from __future__ import annotations

import sys

from confluent_kafka import Producer

from mesh_common.runtime import serve, setup_logging
from mesh_common.settings import ServiceSettings
from mesh_common.tracing import setup_tracing_from_env
from renewal_sync.bootstrap import bootstrap
from renewal_sync.domain.renewal import SERVICE
from renewal_sync.entrypoints.http import create_app


def main() -> None:
    if sys.argv[1:2] == ["redrive"]:  # an operator's command, not the service
        from renewal_sync.entrypoints.redrive import main as redrive

        sys.exit(redrive(sys.argv[2:]))
    service = ServiceSettings()
    setup_logging(SERVICE, service.log_level)
    setup_tracing_from_env(SERVICE)  # a record's trace continues into the opportunity and alerts it causes
    wiring = bootstrap(service=service)
    wiring.start()
    # The app's lifespan runs wiring.stop: uvicorn re-raises SIGTERM after its shutdown.
    app = create_app(wiring.cfg, Producer(wiring.kafka.producer()), checks={"worker": wiring.ready},
                     on_shutdown=wiring.stop)
    serve(app, service, lifespan="on", log_level=service.log_level.lower())


if __name__ == "__main__":
    main()
