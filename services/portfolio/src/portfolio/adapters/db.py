"""Engine and migrations: one place knows how to reach PostgreSQL (the registry's pattern)."""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def sqlalchemy_url(url: str) -> str:
    """Accept libpq spellings too; always use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def check_schema(schema: str | None) -> str | None:
    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise ValueError(f"PORTFOLIO_DB_SCHEMA {schema!r} is not a plain lower-case identifier")
    return schema


def connect_options(schema: str | None) -> dict[str, str]:
    return {"options": f"-csearch_path={check_schema(schema)}"} if schema else {}


def make_engine(url: str, schema: str | None = None, pool_size: int = 5) -> Engine:
    return create_engine(sqlalchemy_url(url), connect_args=connect_options(schema), pool_size=pool_size,
                         max_overflow=10, pool_pre_ping=True)


def alembic_config(url: str, schema: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    cfg.attributes["schema"] = check_schema(schema)
    return cfg


def migrate(url: str, schema: str | None = None, revision: str = "head") -> None:
    """`alembic upgrade head`, creating the schema first when a non-default one is configured."""
    if schema:
        engine = create_engine(sqlalchemy_url(url))
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{check_schema(schema)}"'))
        engine.dispose()
    command.upgrade(alembic_config(url, schema), revision)
