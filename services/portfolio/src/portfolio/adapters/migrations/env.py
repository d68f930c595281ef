"""Alembic environment: runs against the URL and schema the caller put in the config."""

from __future__ import annotations

from alembic import context
from portfolio.adapters.db import connect_options
from portfolio.adapters.tables import metadata
from sqlalchemy import create_engine

config = context.config
schema = config.attributes.get("schema")


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    return not (type_ == "table" and name == "alembic_version")


def run() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", connect_args=connect_options(schema))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, version_table_schema=schema,
                          compare_type=True, include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run()
