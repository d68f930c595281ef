"""PostgreSQL: the durable state of renewal-sync.

- `contract_state`: one row per contract, the RenewalState as JSON (what was announced, the
  decision, the term). Rebuilt into memory and into the due-date index on start-up.
- `scorecard`: the latest SLA record per counterparty (from clm.scorecard.v1).
- `outbox`: every Kafka record and CRM upsert to make, written in the same transaction as the
  state change that caused it (no dual writes). Rows carry a stable event id (unique), a
  status (pending / sent / dead), attempts and the next attempt time, so a restart neither
  loses nor repeats a delivery.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import tuple_row

from contract_schema.renewal import SlaRecord
from renewal_sync.domain.renewal import RenewalState, dump_state, load_state

KAFKA, CRM = "kafka", "crm"


@dataclass(frozen=True)
class OutboxRow:
    target: str  # KAFKA or CRM
    contract_id: str
    event_id: str
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class PendingRow:
    id: int
    target: str
    contract_id: str
    event_id: str
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    attempts: int


def libpq_url(url: str) -> str:
    """DATABASE_URL may be spelled for SQLAlchemy (postgresql+psycopg://); psycopg wants postgresql://."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class Store:
    def __init__(self, url: str, schema: str) -> None:
        self.schema = schema
        self.conn = psycopg.connect(libpq_url(url), autocommit=False, row_factory=tuple_row)

    def close(self) -> None:
        self.conn.close()

    def migrate(self) -> None:
        s = self.schema
        with self.conn.transaction():
            # Two replicas starting together must not race on DDL.
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (s,))
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            self.conn.execute(f"""CREATE TABLE IF NOT EXISTS {s}.contract_state (
                contract_id text PRIMARY KEY, state jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())""")
            self.conn.execute(f"""CREATE TABLE IF NOT EXISTS {s}.scorecard (
                counterparty_id text PRIMARY KEY, record jsonb NOT NULL)""")
            # Which partition of the contract-keyed topics the contract lives on: a replica loads only
            # the contracts of the partitions assigned to it.
            self.conn.execute(
                f"ALTER TABLE {s}.contract_state ADD COLUMN IF NOT EXISTS partition int NOT NULL DEFAULT -1")
            self.conn.execute(f"CREATE INDEX IF NOT EXISTS contract_state_partition ON {s}.contract_state (partition)")
            self.conn.execute(f"""CREATE TABLE IF NOT EXISTS {s}.outbox (
                id bigserial PRIMARY KEY, target text NOT NULL, contract_id text NOT NULL,
                event_id text NOT NULL, topic text NOT NULL, key bytea NOT NULL, value bytea NOT NULL,
                headers jsonb NOT NULL, status text NOT NULL DEFAULT 'pending',
                attempts int NOT NULL DEFAULT 0, next_attempt_at timestamptz NOT NULL DEFAULT now(),
                last_error text, created_at timestamptz NOT NULL DEFAULT now(), done_at timestamptz,
                UNIQUE (target, event_id))""")
            self.conn.execute(f"""CREATE INDEX IF NOT EXISTS outbox_pending
                ON {s}.outbox (target, id) WHERE status = 'pending'""")

    # --- state -----------------------------------------------------------------------------

    def load_states(self, partitions: Sequence[int] | None = None) -> Iterator[tuple[RenewalState, int]]:
        """(state, partition) of every contract, or of those on the given partitions."""
        with self.conn.transaction(), self.conn.cursor(name="load_states") as cur:
            cur.itersize = 5000
            if partitions is None:
                cur.execute(f"SELECT state::text, partition FROM {self.schema}.contract_state")
            else:
                cur.execute(f"SELECT state::text, partition FROM {self.schema}.contract_state "
                            "WHERE partition = ANY(%s)", (list(partitions),))
            for text, partition in cur:
                yield load_state(text), partition

    def scorecards(self, counterparty_ids: Sequence[str]) -> dict[str, SlaRecord]:
        with self.conn.transaction():
            rows = self.conn.execute(f"SELECT counterparty_id, record::text FROM {self.schema}.scorecard "
                                     "WHERE counterparty_id = ANY(%s)", (list(counterparty_ids),)).fetchall()
        return {cid: SlaRecord.model_validate_json(text) for cid, text in rows}

    def scorecard(self, counterparty_id: str) -> SlaRecord | None:
        with self.conn.transaction():
            row = self.conn.execute(f"SELECT record::text FROM {self.schema}.scorecard WHERE counterparty_id = %s",
                                    (counterparty_id,)).fetchone()
        return None if row is None else SlaRecord.model_validate_json(row[0])

    def load_scorecards(self) -> dict[str, SlaRecord]:
        with self.conn.transaction():
            rows = self.conn.execute(f"SELECT counterparty_id, record::text FROM {self.schema}.scorecard").fetchall()
        return {cid: SlaRecord.model_validate_json(text) for cid, text in rows}

    def save(self, states: Iterable[tuple[RenewalState, int]], scorecards: dict[str, SlaRecord],
             outbox: Sequence[OutboxRow]) -> None:
        """One transaction: state changes and everything they cause."""
        s = self.schema
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                f"""INSERT INTO {s}.contract_state (contract_id, state, partition) VALUES (%s, %s::jsonb, %s)
                    ON CONFLICT (contract_id) DO UPDATE SET state = EXCLUDED.state, partition = EXCLUDED.partition,
                    updated_at = now()""",
                [(st.contract_id, dump_state(st).decode(), partition) for st, partition in states])
            cur.executemany(
                f"""INSERT INTO {s}.scorecard (counterparty_id, record) VALUES (%s, %s::jsonb)
                    ON CONFLICT (counterparty_id) DO UPDATE SET record = EXCLUDED.record""",
                [(cid, rec.model_dump_json()) for cid, rec in scorecards.items()])
            self._insert_outbox(cur, outbox)

    def _insert_outbox(self, cur: psycopg.Cursor[tuple[object, ...]], rows: Sequence[OutboxRow]) -> None:
        cur.executemany(
            f"""INSERT INTO {self.schema}.outbox (target, contract_id, event_id, topic, key, value, headers)
                VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (target, event_id) DO NOTHING""",
            [(r.target, r.contract_id, r.event_id, r.topic, r.key, r.value,
              json.dumps([[k, v.decode()] for k, v in r.headers])) for r in rows])

    def add_outbox(self, rows: Sequence[OutboxRow]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._insert_outbox(cur, rows)

    # --- outbox relay ----------------------------------------------------------------------

    def try_lead(self, role: str) -> bool:
        """Take a session-level advisory lock: one relay across all replicas (keeps per-contract order and
        never sends a row twice); the lock goes with the connection if the leader dies."""
        with self.conn.transaction():
            row = self.conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"{self.schema}.{role}",)).fetchone()
        return bool(row and row[0])

    def pending(self, target: str, limit: int, now: datetime | None = None) -> list[PendingRow]:
        """Pending rows in id order. For the CRM only the oldest pending row of each contract
        (updates to one opportunity go out in order), and only once its next attempt is due."""
        s = self.schema
        with self.conn.transaction():
            if target == KAFKA:
                rows = self.conn.execute(
                    f"""SELECT id, target, contract_id, event_id, topic, key, value, headers::text, attempts
                        FROM {s}.outbox WHERE target = %s AND status = 'pending' ORDER BY id LIMIT %s""",
                    (target, limit)).fetchall()
            else:
                rows = self.conn.execute(
                    f"""SELECT * FROM (
                          SELECT DISTINCT ON (contract_id) id, target, contract_id, event_id, topic, key, value,
                                 headers::text, attempts, next_attempt_at
                          FROM {s}.outbox WHERE target = %s AND status = 'pending'
                          ORDER BY contract_id, id) head
                        WHERE next_attempt_at <= coalesce(%s, now()) ORDER BY id LIMIT %s""",
                    (target, now, limit)).fetchall()
        return [PendingRow(id=r[0], target=r[1], contract_id=r[2], event_id=r[3], topic=r[4], key=bytes(r[5]),
                           value=bytes(r[6]), headers=[(k, v.encode()) for k, v in json.loads(r[7])],
                           attempts=r[8]) for r in rows]

    def mark_done(self, ids: Sequence[int], status: str = "sent", error: str | None = None) -> None:
        if not ids:
            return
        with self.conn.transaction():
            self.conn.execute(
                f"""UPDATE {self.schema}.outbox SET status = %s, done_at = now(), last_error = coalesce(%s, last_error),
                    attempts = attempts + CASE WHEN target = 'crm' THEN 1 ELSE 0 END WHERE id = ANY(%s)""",
                (status, error, list(ids)))

    def retry_later(self, row_id: int, delay_seconds: float, error: str, count_attempt: bool = True) -> None:
        with self.conn.transaction():
            self.conn.execute(
                f"""UPDATE {self.schema}.outbox SET attempts = attempts + %s, last_error = %s,
                    next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s""",
                (1 if count_attempt else 0, error[:2000], delay_seconds, row_id))

    def counts(self) -> dict[tuple[str, str], int]:
        with self.conn.transaction():
            rows = self.conn.execute(
                f"SELECT target, status, count(*) FROM {self.schema}.outbox GROUP BY target, status").fetchall()
        return {(t, st): n for t, st, n in rows}
