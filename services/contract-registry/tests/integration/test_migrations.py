"""The Alembic migrations build exactly the schema the SQLAlchemy models describe."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from contract_registry.adapters.db import alembic_config, make_engine, migrate
from contract_registry.adapters.orm import Base
from sqlalchemy import inspect


def _diff(db_url: str, schema: str) -> list[object]:
    engine = make_engine(db_url, schema)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return [d for d in compare_metadata(ctx, Base.metadata)
                    if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]
    finally:
        engine.dispose()


def test_migrations_from_nothing_match_the_models(db_url: str, empty_schema: str) -> None:
    migrate(db_url, empty_schema)
    assert _diff(db_url, empty_schema) == []


def test_models_differ_from_an_empty_schema_so_the_comparison_can_fail(db_url: str, empty_schema: str) -> None:
    diff = _diff(db_url, empty_schema)
    added = {d[1].name for d in diff if isinstance(d, tuple) and d[0] == "add_table"}
    assert {"contracts", "contract_versions", "audit_log", "outbox", "idempotency_keys",
            "obligation_states", "processed_events"} <= added


def test_downgrade_to_base_and_upgrade_again(db_url: str, empty_schema: str) -> None:
    migrate(db_url, empty_schema)
    cfg = alembic_config(db_url, empty_schema)
    command.downgrade(cfg, "base")
    engine = make_engine(db_url, empty_schema)
    try:
        assert set(inspect(engine).get_table_names(schema=empty_schema)) == {"alembic_version"}
    finally:
        engine.dispose()
    migrate(db_url, empty_schema)
    assert _diff(db_url, empty_schema) == []
