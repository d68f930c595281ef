"""The notifier's tables in PostgreSQL, created (or brought up to date) at start-up, in one schema
(NOTIFIER_DB_SCHEMA) so tests can isolate themselves. The queries are store.py's."""

from __future__ import annotations

import psycopg

from mesh_common import pg

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id text PRIMARY KEY,
    dedup_key text NOT NULL,
    contract_id text NOT NULL,
    tier text NOT NULL,
    rule text NOT NULL,
    outcome text NOT NULL,
    thread_root text NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    acked_at timestamptz,
    acked_by text
);
CREATE INDEX IF NOT EXISTS alerts_thread_root ON alerts (thread_root);
CREATE TABLE IF NOT EXISTS threads (
    dedup_key text PRIMARY KEY,
    root_alert_id text NOT NULL,
    opened_at timestamptz NOT NULL,
    window_seconds bigint NOT NULL,
    tier text NOT NULL,
    suppressed int NOT NULL DEFAULT 0,
    updates int NOT NULL DEFAULT 0,
    last_alert_id text NOT NULL
);
CREATE TABLE IF NOT EXISTS escalations (
    alert_id text PRIMARY KEY REFERENCES alerts(alert_id),
    started_at timestamptz NOT NULL,
    next_step int NOT NULL DEFAULT 0,
    next_due timestamptz
);
CREATE INDEX IF NOT EXISTS escalations_next_due ON escalations (next_due) WHERE next_due IS NOT NULL;
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_key text PRIMARY KEY,
    alert_id text NOT NULL,
    channel text NOT NULL,
    recipient text NOT NULL,
    step text NOT NULL,
    status text NOT NULL,            -- sending | sent | failed
    message_id text NOT NULL,
    attempts int NOT NULL DEFAULT 1,
    recorded boolean NOT NULL DEFAULT false,
    detail text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS deliveries_alert ON deliveries (alert_id);
-- A claim with a lease (one replica sends a delivery at a time) and a durable retry schedule (a channel
-- outage delays a delivery for hours instead of failing it): docs/adr/0010-ride-out-outages.md.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS lease_until timestamptz NOT NULL DEFAULT now();
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS failing_since timestamptz;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS contract_id text;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS body jsonb;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS lease_owner text NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS deliveries_waiting ON deliveries (next_attempt_at) WHERE status IN ('sending', 'retrying');
CREATE INDEX IF NOT EXISTS deliveries_unrecorded ON deliveries (updated_at) WHERE status = 'sent' AND NOT recorded;
CREATE TABLE IF NOT EXISTS digest_items (
    recipient text NOT NULL,
    alert_id text NOT NULL,
    tier text NOT NULL,
    zone text NOT NULL,
    added_at timestamptz NOT NULL,
    in_daily boolean NOT NULL DEFAULT false,
    in_weekly boolean NOT NULL DEFAULT false,
    PRIMARY KEY (recipient, alert_id)
);
CREATE INDEX IF NOT EXISTS digest_items_pending ON digest_items (recipient) WHERE NOT in_weekly;
CREATE TABLE IF NOT EXISTS digest_runs (
    recipient text NOT NULL,
    kind text NOT NULL,
    period text NOT NULL,
    sent_at timestamptz NOT NULL,
    PRIMARY KEY (recipient, kind)
);
CREATE TABLE IF NOT EXISTS calendar_entries (
    uid text PRIMARY KEY,
    token text NOT NULL,
    owner_email text NOT NULL,
    contract_id text NOT NULL,
    dedup_key text NOT NULL,
    alert_id text NOT NULL,
    summary text NOT NULL,
    description text NOT NULL,
    deadline timestamptz NOT NULL,
    url text,
    sequence int NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS calendar_entries_token ON calendar_entries (token, deadline);
"""


def migrate(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        # Serialise concurrent first starts (replicas, tests) on the DDL.
        with conn.transaction():
            pg.serialise_ddl(conn, schema)
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.execute(f"SET LOCAL search_path = {schema}")
            conn.execute(SCHEMA_SQL)
