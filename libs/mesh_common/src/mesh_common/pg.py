"""PostgreSQL helpers every service that keeps state shares: the libpq URL and advisory locks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import tuple_row


def libpq_url(url: str) -> str:
    """DATABASE_URL may be spelled for SQLAlchemy (postgresql+psycopg://); psycopg wants postgresql://."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _lock_arg(key: int | str) -> tuple[str, tuple[int | str]]:
    # A name is hashed by the server (hashtext), so every replica derives the same lock id.
    return ("hashtext(%s)" if isinstance(key, str) else "%s"), (key,)


def try_lead(conn: psycopg.Connection[Any], key: int | str) -> bool:
    """Take a session-level advisory lock if it is free: the holder is the leader among the replicas.

    The lock goes with the connection, so a leader that dies hands the role on by itself."""
    sql, args = _lock_arg(key)
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(f"SELECT pg_try_advisory_lock({sql})", args).fetchone()
    return bool(row and row[0])


def release(conn: psycopg.Connection[Any], key: int | str) -> None:
    sql, args = _lock_arg(key)
    conn.execute(f"SELECT pg_advisory_unlock({sql})", args)


@contextmanager
def leading(conn: psycopg.Connection[Any], key: int | str) -> Iterator[bool]:
    """Lead for the duration of the block (yields whether this replica got the role), then let go."""
    got = try_lead(conn, key)
    try:
        yield got
    finally:
        if got:
            release(conn, key)


def serialise_ddl(conn: psycopg.Connection[Any], name: str) -> None:
    """Inside a transaction: wait for any other replica running the same DDL (concurrent first starts)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
