"""`portfolio [serve|migrate|rebuild]`, configured from environment variables (PORTFOLIO_*, KAFKA_*, DATABASE_*,
AUTH_*, MESH_*).

serve    (default) the API and the dashboard; builds the read model beside them unless
         PORTFOLIO_CONSUME_IN_PROCESS=false; migrates first when PORTFOLIO_MIGRATE_ON_START=true.
migrate  `alembic upgrade head` and exit.
rebuild  build the read model again from the topics into an empty schema (--schema) under a new
         consumer group (--group), read every input partition to its end, print the figures' count and
         exit. The running service keeps serving from its own schema meanwhile; point it at the new
         schema and group (PORTFOLIO_DB_SCHEMA, PORTFOLIO_CONSUMER_GROUP) to switch.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import uuid

from sqlalchemy import create_engine, text

from mesh_common.runtime import serve, setup_logging
from mesh_common.settings import ServiceSettings
from mesh_common.tracing import setup_tracing_from_env

from ..adapters.db import check_schema, migrate, sqlalchemy_url
from ..bootstrap import AppConfig, rebuild
from ..settings import SERVICE

log = logging.getLogger("portfolio")


def _schema_is_empty(config: AppConfig, schema: str) -> bool:
    engine = create_engine(sqlalchemy_url(config.database_url))
    try:
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s "
                                       "AND table_name = 'events'"), {"s": schema}).scalar()
            if not tables:
                return True
            return not conn.execute(text(f'SELECT EXISTS (SELECT 1 FROM "{schema}".events)')).scalar()
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portfolio", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "rebuild"])
    parser.add_argument("--schema", help="rebuild: the empty schema to build into (default: a new one)")
    parser.add_argument("--group", help="rebuild: the new consumer group (default: a new one)")
    args = parser.parse_args(argv)
    service = ServiceSettings()
    setup_logging(SERVICE, service.log_level)
    config = AppConfig()
    if args.command == "migrate":
        migrate(config.database_url, config.portfolio.db_schema)
        log.info("migrated to head")
        return 0
    if args.command == "rebuild":
        stamp = time.strftime("%Y%m%d%H%M%S")
        schema = check_schema(args.schema or f"portfolio_{stamp}")
        assert schema is not None
        group = args.group or f"{config.portfolio.consumer_group}-rebuild-{stamp}-{uuid.uuid4().hex[:6]}"
        if not _schema_is_empty(config, schema):
            parser.error(f"schema {schema!r} already holds a read model; rebuild into an empty one")
        config.portfolio = config.portfolio.model_copy(update={"db_schema": schema, "consumer_group": group})
        started = time.monotonic()
        written = rebuild(config, group)
        print(json.dumps({"schema": schema, "group": group, "events": written,
                          "seconds": round(time.monotonic() - started, 2)}))
        return 0
    from .app import create_app

    setup_tracing_from_env(SERVICE)
    serve(create_app(config), service, lifespan="on", log_level=service.log_level.lower())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
