"""`invoice-validator`: the Faust worker plus the HTTP intake in one process, configured from env. The wiring
is `bootstrap.py`, what happens on each input `service.py`, the rules `domain/`."""

from __future__ import annotations

import logging
import threading

import uvicorn
from confluent_kafka import Producer

from mesh_common.auth import AuthSettings
from mesh_common.settings import KafkaSettings, ServiceSettings
from mesh_common.tracing import setup_tracing_from_env

from ..bootstrap import bootstrap, prepare_topics, validator_clock
from ..settings import SERVICE, ValidatorSettings
from .http import create_api


def main() -> None:
    service, kafka, settings = ServiceSettings(), KafkaSettings(), ValidatorSettings()
    logging.basicConfig(level=service.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    setup_tracing_from_env(SERVICE)
    prepare_topics(settings, kafka)
    clock, _ = validator_clock(service, settings, kafka)
    wiring = bootstrap(settings, kafka, clock)
    if settings.http_enabled:
        api = create_api(settings=settings, auth=AuthSettings(), producer=Producer(kafka.producer()), clock=clock,
                         verdict_for=wiring.service.verdict_for, is_ready=wiring.ready)
        server = uvicorn.Server(uvicorn.Config(api, host=service.http_host, port=service.http_port,
                                               log_level=service.log_level.lower(), lifespan="off"))
        # A thread with its own loop: the Faust worker owns the main loop and the signals.
        threading.Thread(target=server.run, name="http", daemon=True).start()
    wiring.run(service.log_level)


if __name__ == "__main__":
    main()
