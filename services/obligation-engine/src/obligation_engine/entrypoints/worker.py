"""`obligation-engine`: the Faust worker (agents on contract state, contract events, ERP performance and
the internal ticks and scorecard topics; a timer driving the per-worker due index; tables so state
moves with partitions), and the ops HTTP server, configured from env. The wiring is `bootstrap.py`,
what happens on each input `service.py`, the rules `domain/`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from mesh_common.settings import KafkaSettings, ServiceSettings
from mesh_common.tracing import setup_tracing_from_env

from ..bootstrap import bootstrap, engine_clock, prepare_topics, serve_ops
from ..settings import SERVICE, EngineSettings

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    service = ServiceSettings()
    logging.basicConfig(level=service.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings, kafka = EngineSettings(), KafkaSettings()
    setup_tracing_from_env(SERVICE)
    problems = prepare_topics(settings, kafka)
    if problems:
        for p in problems:
            log.error(p)
        sys.exit(2)
    clock, follower = engine_clock(service, settings, kafka)
    log.info("clock: %s at %s", type(clock).__name__, clock.now().isoformat())
    wiring = bootstrap(settings, kafka, clock)
    if follower is not None:
        follower.on_advance = wiring.ticks.wake
    if settings.http_enabled:
        serve_ops(wiring.ready, service)
    wiring.run(service.log_level, argv or ())


if __name__ == "__main__":
    main()
