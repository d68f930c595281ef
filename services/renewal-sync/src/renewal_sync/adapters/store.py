"""PostgreSQL: the durable state of renewal-sync.

- `contract_state`: one row per contract, the RenewalState as JSON (what was announced, the
  decision, the term). Rebuilt into memory and into the due-date index on start-up.
- `scorecard`: the latest SLA record per counterparty (from clm.scorecard.v1).
- `outbox`: every Kafka record and CRM upsert to make, written in the same transaction as the
  state change that caused it (no dual writes). Rows carry a stable event id (unique), a
  status (pending / sent / dead), attempts and the next attempt time, so a restart neither
  loses nor repeats a delivery.

A PostgreSQL restart (or failover) is ridden out, not fatal: every method is one transaction (the
rebuild, `load_states`, one per page), so one that fails with an OperationalError (AdminShutdown,
connection lost, connection refused) was rolled back and is run again on a new connection, with
backoff (tenacity), until the database answers. The first connection is made the same way, on first
use, so a start with the database down waits for it. An advisory
lock held by the old session is taken again on the new one; if another replica got it first the
call raises LeadLost and the caller stands by (docs/adr/0010-ride-out-outages.md).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import psycopg
from psycopg.rows import tuple_row
from tenacity import RetryCallState, retry, retry_if_exception_type, stop_never, wait_exponential_jitter

from contract_schema.renewal import SlaRecord
from mesh_common import pg
from mesh_common.pg import libpq_url
from renewal_sync.adapters.ports import CRM, KAFKA, OutboxRow
from renewal_sync.domain.renewal import RenewalState, dump_state, load_state

__all__ = ["CRM", "KAFKA", "LeadLost", "OutboxRow", "PendingRow", "Store"]

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
LOAD_PAGE = 5000  # contract states read per transaction when rebuilding


class LeadLost(Exception):
    """The connection was replaced and another replica took the advisory lock this one held."""


def _log_outage(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("database unavailable (%s: %s); retrying in %.1f s", type(exc).__name__, exc,
                state.upcoming_sleep)


def riding_out(method: Callable[P, R]) -> Callable[P, R]:
    """Run a one-transaction Store method again on a new connection while PostgreSQL is away."""
    retrying = retry(retry=retry_if_exception_type(psycopg.OperationalError), stop=stop_never,
                     wait=wait_exponential_jitter(multiplier=0.2, max=10.0, jitter=0.5), before_sleep=_log_outage,
                     reraise=True)
    return functools.wraps(method)(retrying(method))


@dataclass(frozen=True)
class PendingRow(OutboxRow):
    """An outbox row waiting for delivery, with its id and delivery state."""

    id: int
    attempts: int
    # CRM rows: how long the contract's CRM sync has been failing (seconds; None: not failing), and
    # whether the "CRM sync delayed" alert went out for this failing spell.
    failing_for: float | None = None
    alerted: bool = False


class Store:
    def __init__(self, url: str, schema: str) -> None:
        self.schema, self.url = schema, libpq_url(url)
        # Connected on first use, inside a method that rides out an outage: a process that starts while
        # the database is down waits for it instead of exiting.
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._leads: set[str] = set()  # advisory locks this session holds, taken again after a reconnect
        self.reconnects = 0

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.url, autocommit=False, row_factory=tuple_row, connect_timeout=10)

    @property
    def conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The session; a new one once the old one broke (a database restart ends every session)."""
        if self._conn is None:
            self._conn = self._connect()
        elif self._conn.closed or self._conn.broken:
            self._conn.close()
            self._conn = self._connect()
            self.reconnects += 1
            log.info("reconnected to PostgreSQL (%d reconnect(s))", self.reconnects)
            try:
                lost = {role for role in self._leads if not self._take_lead(self._conn, role)}
            except psycopg.OperationalError:
                self._conn.close()  # gone again before the locks were back: the next attempt takes them again
                raise
            self._leads -= lost
            if lost:
                raise LeadLost(f"another replica took {sorted(lost)} while the database was away")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    @riding_out
    def migrate(self) -> None:
        s = self.schema
        with self.conn.transaction():
            # Two replicas starting together must not race on DDL.
            pg.serialise_ddl(self.conn, s)
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
            # CRM delivery: since when the row has been failing (the give-up clock) and whether the
            # "delayed" alert was raised. Durable, so a crash neither restarts the clock nor repeats the alert.
            self.conn.execute(f"ALTER TABLE {s}.outbox ADD COLUMN IF NOT EXISTS failing_since timestamptz")
            self.conn.execute(f"ALTER TABLE {s}.outbox ADD COLUMN IF NOT EXISTS alerted boolean NOT NULL DEFAULT false")
            # A contract's pending CRM rows by contract: `pending` picks each contract's newest and `mark_done`
            # supersedes the older ones through it. Without it a plan made while the table was small (a
            # prepared statement's generic plan) scanned every pending row once per row marked: minutes per
            # round after a burst of 10,000 due stages.
            self.conn.execute(f"""CREATE INDEX IF NOT EXISTS outbox_crm_pending_contract
                ON {s}.outbox (contract_id, id) WHERE target = 'crm' AND status = 'pending'""")

    # --- state -----------------------------------------------------------------------------

    def load_states(self, partitions: Sequence[int] | None = None) -> Iterator[tuple[RenewalState, int]]:
        """(state, partition) of every contract, or of those on the given partitions.

        Read in pages in contract-id order, each page one transaction that rides out a database restart:
        the rebuild after a partition assignment (often right after a restart of the service or of the
        database) goes on where it was, with neither a gap nor a contract twice, and never holds more
        than a page of rows beside the states built from them."""
        after: str | None = None
        while True:
            page = self._states_page(partitions, after, LOAD_PAGE)
            for contract_id, text, partition in page:
                yield load_state(text), partition
                after = contract_id
            if len(page) < LOAD_PAGE:
                return

    @riding_out
    def _states_page(self, partitions: Sequence[int] | None, after: str | None,
                     limit: int) -> list[tuple[str, str, int]]:
        with self.conn.transaction():
            return self.conn.execute(
                f"""SELECT contract_id, state::text, partition FROM {self.schema}.contract_state
                    WHERE (%(all)s OR partition = ANY(%(partitions)s))
                      AND (%(after)s::text IS NULL OR contract_id > %(after)s::text)
                    ORDER BY contract_id LIMIT %(limit)s""",
                {"all": partitions is None, "partitions": list(partitions or []), "after": after,
                 "limit": limit}).fetchall()

    @riding_out
    def scorecards(self, counterparty_ids: Sequence[str]) -> dict[str, SlaRecord]:
        with self.conn.transaction():
            rows = self.conn.execute(f"SELECT counterparty_id, record::text FROM {self.schema}.scorecard "
                                     "WHERE counterparty_id = ANY(%s)", (list(counterparty_ids),)).fetchall()
        return {cid: SlaRecord.model_validate_json(text) for cid, text in rows}

    @riding_out
    def scorecard(self, counterparty_id: str) -> SlaRecord | None:
        with self.conn.transaction():
            row = self.conn.execute(f"SELECT record::text FROM {self.schema}.scorecard WHERE counterparty_id = %s",
                                    (counterparty_id,)).fetchone()
        return None if row is None else SlaRecord.model_validate_json(row[0])

    @riding_out
    def load_scorecards(self) -> dict[str, SlaRecord]:
        with self.conn.transaction():
            rows = self.conn.execute(f"SELECT counterparty_id, record::text FROM {self.schema}.scorecard").fetchall()
        return {cid: SlaRecord.model_validate_json(text) for cid, text in rows}

    @riding_out
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

    @riding_out
    def add_outbox(self, rows: Sequence[OutboxRow]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._insert_outbox(cur, rows)

    # --- outbox relay ----------------------------------------------------------------------

    @riding_out
    def try_lead(self, role: str) -> bool:
        """Take a session-level advisory lock: one relay across all replicas (keeps per-contract order and
        never sends a row twice); the lock goes with the connection if the leader dies."""
        conn = self.conn  # a reconnect re-takes the locks held before this call
        if self._take_lead(conn, role):
            self._leads.add(role)
            return True
        return False

    def leads(self, role: str) -> bool:
        return role in self._leads

    def _take_lead(self, conn: psycopg.Connection[tuple[Any, ...]], role: str) -> bool:
        with conn.transaction():
            return pg.try_lead(conn, f"{self.schema}.{role}")

    @riding_out
    def pending(self, target: str, limit: int, now: datetime | None = None) -> list[PendingRow]:
        """Pending rows in id order. For the CRM only the newest pending row of each contract, once its
        next attempt is due: an upsert carries the whole opportunity, so older pending rows of the
        contract are overtaken (never sent after a newer one), and the contract's failing spell, attempts
        and alert flag carry over from them."""
        s = self.schema
        with self.conn.transaction():
            if target == KAFKA:
                rows = self.conn.execute(
                    f"""SELECT id, target, contract_id, event_id, topic, key, value, headers::text, attempts,
                               NULL::float8, false
                        FROM {s}.outbox WHERE target = %s AND status = 'pending' ORDER BY id LIMIT %s""",
                    (target, limit)).fetchall()
            else:
                rows = self.conn.execute(
                    f"""SELECT id, target, contract_id, event_id, topic, key, value, headers, attempts, failing_for,
                               alerted FROM (
                          SELECT DISTINCT ON (contract_id) id, target, contract_id, event_id, topic, key, value,
                                 headers::text AS headers, max(attempts) OVER w AS attempts, next_attempt_at,
                                 extract(epoch FROM coalesce(%s, now()) - min(failing_since) OVER w)::float8
                                   AS failing_for,
                                 bool_or(alerted) OVER w AS alerted
                          FROM {s}.outbox WHERE target = %s AND status = 'pending'
                          WINDOW w AS (PARTITION BY contract_id)
                          ORDER BY contract_id, id DESC) head
                        WHERE next_attempt_at <= coalesce(%s, now()) ORDER BY id LIMIT %s""",
                    (now, target, now, limit)).fetchall()
        return [PendingRow(id=r[0], target=r[1], contract_id=r[2], event_id=r[3], topic=r[4], key=bytes(r[5]),
                           value=bytes(r[6]), headers=[(k, v.encode()) for k, v in json.loads(r[7])],
                           attempts=r[8], failing_for=r[9], alerted=bool(r[10])) for r in rows]

    @riding_out
    def mark_done(self, ids: Sequence[int], status: str = "sent", error: str | None = None) -> None:
        """Mark rows done. A CRM row done (sent or dead) also closes the older pending rows of its contract:
        it carried a newer state of the same opportunity."""
        if not ids:
            return
        s = self.schema
        with self.conn.transaction():
            self.conn.execute(
                f"""UPDATE {s}.outbox SET status = %s, done_at = now(), last_error = coalesce(%s, last_error),
                    attempts = attempts + CASE WHEN target = 'crm' THEN 1 ELSE 0 END WHERE id = ANY(%s)""",
                (status, error, list(ids)))
            self.conn.execute(
                f"""UPDATE {s}.outbox o SET status = 'superseded', done_at = now() FROM {s}.outbox d
                    WHERE d.id = ANY(%s) AND d.target = 'crm' AND o.target = 'crm' AND o.status = 'pending'
                      AND o.contract_id = d.contract_id AND o.id < d.id""", (list(ids),))

    @riding_out
    def retry_later(self, row_id: int, delay_seconds: float, error: str, count_attempt: bool = True) -> None:
        with self.conn.transaction():
            self.conn.execute(
                f"""UPDATE {self.schema}.outbox SET attempts = attempts + %s, last_error = %s,
                    failing_since = coalesce(failing_since, now()),
                    next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s""",
                (1 if count_attempt else 0, error[:2000], delay_seconds, row_id))

    @riding_out
    def mark_alerted(self, contract_id: str) -> None:
        with self.conn.transaction():
            self.conn.execute(f"""UPDATE {self.schema}.outbox SET alerted = true
                                  WHERE target = 'crm' AND status = 'pending' AND contract_id = %s""", (contract_id,))

    @riding_out
    def resume_crm(self) -> int:
        """The CRM answers again: every waiting CRM row is due now instead of at the end of its backoff."""
        with self.conn.transaction():
            cur = self.conn.execute(f"""UPDATE {self.schema}.outbox SET next_attempt_at = now()
                                        WHERE target = 'crm' AND status = 'pending' AND next_attempt_at > now()""")
            return cur.rowcount

    @riding_out
    def crm_failing(self) -> int:
        """Contracts whose CRM update is pending and has failed at least once."""
        with self.conn.transaction():
            row = self.conn.execute(f"""SELECT count(DISTINCT contract_id) FROM {self.schema}.outbox
                                        WHERE target = 'crm' AND status = 'pending' AND failing_since IS NOT NULL""",
                                    ).fetchone()
        return int(row[0]) if row else 0

    @riding_out
    def redrive(self, contract_ids: Sequence[str] | None = None, *, dry_run: bool = False) -> list[tuple[str, str]]:
        """Dead CRM updates back to pending, for a fresh give-up period: only a contract's newest CRM update
        (a dead one overtaken by a later delivery stays dead, so an older stage never overwrites a newer
        one). Returns (contract id, event id) of each re-driven update."""
        s = self.schema
        only = "" if contract_ids is None else "AND contract_id = ANY(%(ids)s)"
        with self.conn.transaction():
            rows = self.conn.execute(
                f"""WITH latest AS (
                      SELECT DISTINCT ON (contract_id) id, status FROM {s}.outbox
                      WHERE target = 'crm' AND status IN ('pending', 'sent', 'dead') {only}
                      ORDER BY contract_id, id DESC)
                    SELECT o.id, o.contract_id, o.event_id FROM {s}.outbox o JOIN latest l ON l.id = o.id
                    WHERE l.status = 'dead' ORDER BY o.id FOR UPDATE OF o""",
                {"ids": list(contract_ids or [])}).fetchall()
            if rows and not dry_run:
                self.conn.execute(
                    f"""UPDATE {s}.outbox SET status = 'pending', attempts = 0, failing_since = NULL, alerted = false,
                        next_attempt_at = now(), done_at = NULL WHERE id = ANY(%s)""", ([r[0] for r in rows],))
        return [(r[1], r[2]) for r in rows]

    @riding_out
    def counts(self) -> dict[tuple[str, str], int]:
        with self.conn.transaction():
            rows = self.conn.execute(
                f"SELECT target, status, count(*) FROM {self.schema}.outbox GROUP BY target, status").fetchall()
        return {(t, st): n for t, st, n in rows}
