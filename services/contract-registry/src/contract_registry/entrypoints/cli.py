"""`contract-registry [serve|migrate|relay]`, configured from environment variables only.

serve   (default) the HTTP API; runs migrations first when REGISTRY_MIGRATE_ON_START=true, and the
        outbox relay / inbound consumers in-process unless REGISTRY_RELAY_IN_PROCESS /
        REGISTRY_CONSUME_IN_PROCESS are false.
migrate `alembic upgrade head` and exit (the Kubernetes Job before a rollout).
relay   the outbox relay alone (scale it separately; replicas never double publish).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from mesh_common.settings import DatabaseSettings, KafkaSettings, ServiceSettings
from mesh_common.tracing import setup_tracing_from_env

from ..adapters.db import migrate
from ..adapters.relay import OutboxRelay
from ..config import SERVICE, RegistrySettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="contract-registry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "relay"])
    args = parser.parse_args(argv)
    service = ServiceSettings()
    logging.basicConfig(level=service.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)
    registry = RegistrySettings()
    database_url = DatabaseSettings().url
    if args.command == "migrate":
        migrate(database_url, registry.db_schema)
        logging.getLogger(__name__).info("migrated to head")
        return 0
    if args.command == "relay":
        relay = OutboxRelay(database_url, registry, KafkaSettings(), name="standalone")

        def _stop(_sig: int, _frame: FrameType | None) -> None:
            relay.request_stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        relay.run()
        relay.producer.flush(10)
        return 0
    import uvicorn

    from .app import create_app

    setup_tracing_from_env(SERVICE)
    uvicorn.run(create_app(), host=service.http_host, port=service.http_port, log_level=service.log_level.lower())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
