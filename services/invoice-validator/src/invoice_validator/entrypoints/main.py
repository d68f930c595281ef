"""`invoice-validator`: the Faust worker plus the HTTP intake in one process, configured from env."""

from __future__ import annotations

import logging
import threading

import faust
import uvicorn
from confluent_kafka import Producer

from mesh_common.auth import AuthSettings
from mesh_common.provision import provision
from mesh_common.runtime import make_clock
from mesh_common.settings import KafkaSettings, ServiceSettings
from mesh_common.tracing import setup_tracing_from_env

from ..settings import SERVICE, ValidatorSettings
from .http import create_api
from .worker import Validator, changelog_topics


def main() -> None:
    service, kafka, settings = ServiceSettings(), KafkaSettings(), ValidatorSettings()
    logging.basicConfig(level=service.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    setup_tracing_from_env(SERVICE)
    for drift in provision(kafka.admin(), changelog_topics(settings)).drift:
        logging.getLogger(SERVICE).warning("topic drift: %s", drift)
    clock, _ = make_clock(service, kafka, group_id=f"{settings.app_id}-clock", topic=settings.clock_topic)
    validator = Validator(settings, kafka, clock)
    if settings.http_enabled:
        api = create_api(settings=settings, auth=AuthSettings(), producer=Producer(kafka.producer()), clock=clock,
                         verdict_for=validator.verdict_for, is_ready=lambda: validator.ready)
        server = uvicorn.Server(uvicorn.Config(api, host=service.http_host, port=service.http_port,
                                               log_level=service.log_level.lower(), lifespan="off"))
        # A thread with its own loop: the Faust worker owns the main loop and the signals.
        threading.Thread(target=server.run, name="http", daemon=True).start()
    validator.crash_marker.start()
    worker = faust.Worker(validator.app, loglevel=service.log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        # Clean only when the worker stopped normally with every send acknowledged: then the local
        # store equals its changelogs and the next start may reuse it.
        if not exc.code and validator.delivery.pending == 0:
            validator.crash_marker.stopped_cleanly()
        raise


if __name__ == "__main__":
    main()
