"""`contract-registry [serve|migrate|relay|import FILE]`, configured from environment variables only.

serve   (default) the HTTP API; runs migrations first when REGISTRY_MIGRATE_ON_START=true, and the
        outbox relay / inbound consumers in-process unless REGISTRY_RELAY_IN_PROCESS /
        REGISTRY_CONSUME_IN_PROCESS are false.
migrate `alembic upgrade head` and exit (the Kubernetes Job before a rollout).
relay   the outbox relay alone (scale it separately; replicas never double publish).
import  FILE (NDJSON, or CSV by its .csv suffix or --format csv) into a running registry at
        REGISTRY_URL (http://127.0.0.1:8000) with the bearer token in REGISTRY_TOKEN
        (contracts:write and contracts:read), with a progress bar; exit 1 when records were rejected.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from types import FrameType

from mesh_common.runtime import serve, setup_logging
from mesh_common.settings import ServiceSettings
from mesh_common.tracing import setup_tracing_from_env

from ..adapters.db import migrate
from ..bootstrap import AppConfig, relay
from ..settings import SERVICE

log = logging.getLogger("contract_registry")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="contract-registry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "relay", "import"])
    parser.add_argument("file", nargs="?", type=Path, help="import: the NDJSON or CSV file")
    parser.add_argument("--format", choices=["ndjson", "csv"], help="import: the file's format (default: by suffix)")
    parser.add_argument("--url", default=os.environ.get("REGISTRY_URL", "http://127.0.0.1:8000"))
    args = parser.parse_args(argv)
    if args.command == "import":
        from .import_client import run

        if args.file is None or not os.environ.get("REGISTRY_TOKEN"):
            parser.error("import needs FILE and a bearer token in REGISTRY_TOKEN")
        return run(args.file, url=args.url, token=os.environ["REGISTRY_TOKEN"], kind=args.format)
    service = ServiceSettings()
    setup_logging(SERVICE, service.log_level)
    config = AppConfig()
    if args.command == "migrate":
        migrate(config.database_url, config.registry.db_schema)
        log.info("migrated to head")
        return 0
    if args.command == "relay":
        standalone = relay(config, name="standalone")

        def _stop(_sig: int, _frame: FrameType | None) -> None:
            standalone.request_stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        standalone.run()
        standalone.producer.flush(10)
        return 0
    from .app import create_app

    setup_tracing_from_env(SERVICE)
    # The app's lifespan starts and stops the relay, consumer and sweep beside the API.
    serve(create_app(config), service, lifespan="on", log_level=service.log_level.lower())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
