"""Fixtures for the registry's integration tests: one fresh PostgreSQL schema per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from contract_registry.adapters.db import migrate, sqlalchemy_url
from sqlalchemy import create_engine, text


@pytest.fixture
def db_url(postgres_url: str) -> str:
    return sqlalchemy_url(postgres_url)


@pytest.fixture
def empty_schema(db_url: str) -> Iterator[str]:
    """A new, empty schema; dropped after the test."""
    name = f"reg_{uuid.uuid4().hex[:12]}"
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield name
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


@pytest.fixture
def schema(db_url: str, empty_schema: str) -> str:
    """A schema migrated to head."""
    migrate(db_url, empty_schema)
    return empty_schema
