"""PostgreSQL state: alerts, dedup threads, escalations, the delivery ledger, digests, calendars
(the tables themselves: schema.py).

One connection per thread (the consumer, the ticker and the HTTP workers each get their
own); autocommit, with explicit transactions where several rows must change together.
All tables live in one schema (NOTIFIER_DB_SCHEMA) so tests can isolate themselves.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from tenacity import Retrying, retry_if_exception_type, wait_exponential_jitter

from contract_schema.alert import Alert, Tier
from mesh_common import pg
from mesh_common.pg import libpq_url

from ..domain.calendar import CalendarEntry
from ..domain.digest import DigestItem, DigestKind
from ..domain.state import Escalation, Outcome, Thread
from .ports import LedgerEntry, StoredAlert
from .schema import migrate

log = logging.getLogger(__name__)

TICK_LOCK_ID = 0x6E6F7469  # advisory lock: one replica runs escalations and digests at a time


class Store:
    def __init__(self, url: str, schema: str = "notifier") -> None:
        if not re.match(r"^[a-z_][a-z0-9_]*$", schema):
            raise ValueError(f"NOTIFIER_DB_SCHEMA {schema!r} must be a lower-case SQL identifier")
        self.url = libpq_url(url)
        self.schema = schema
        self._local = threading.local()

    # --- connections ----------------------------------------------------------------------

    def conn(self) -> psycopg.Connection[dict[str, Any]]:
        conn: psycopg.Connection[dict[str, Any]] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                                   options=f"-c search_path={self.schema}")
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        conn = self.conn()
        with conn.transaction():
            yield conn

    def migrate(self) -> None:
        migrate(self.url, self.schema)

    def ping(self) -> None:
        self.conn().execute("SELECT 1")

    def tick_lock(self) -> AbstractContextManager[bool]:
        return pg.leading(self.conn(), TICK_LOCK_ID)

    # --- alerts and threads ---------------------------------------------------------------

    def get_alert(self, alert_id: str) -> StoredAlert | None:
        row = self.conn().execute("SELECT * FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
        return _stored(row) if row else None

    def record_alert(self, alert: Alert, *, tier: Tier, rule: str, at: datetime, window: timedelta,
                     escalation: Escalation | None) -> tuple[Outcome, Thread, bool]:
        """Deduplicate and store one alert atomically. Returns (outcome, thread, is_new_alert).

        The thread row is locked, so two alerts of the same condition decide one after the other.
        """
        from ..domain.state import on_alert

        with self.tx() as conn:
            existing = conn.execute("SELECT * FROM alerts WHERE alert_id = %s", (alert.alert_id,)).fetchone()
            row = conn.execute("SELECT * FROM threads WHERE dedup_key = %s FOR UPDATE",
                               (alert.dedup_key,)).fetchone()
            thread = _thread(row) if row else None
            if existing:
                assert thread is not None
                return Outcome(existing["outcome"]), thread, False
            outcome, thread = on_alert(thread, alert_id=alert.alert_id, dedup_key=alert.dedup_key, tier=tier,
                                       at=at, window=window)
            conn.execute(
                """INSERT INTO threads (dedup_key, root_alert_id, opened_at, window_seconds, tier, suppressed,
                                        updates, last_alert_id)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (dedup_key) DO UPDATE SET root_alert_id = EXCLUDED.root_alert_id,
                     opened_at = EXCLUDED.opened_at, window_seconds = EXCLUDED.window_seconds,
                     tier = EXCLUDED.tier, suppressed = EXCLUDED.suppressed, updates = EXCLUDED.updates,
                     last_alert_id = EXCLUDED.last_alert_id""",
                (thread.dedup_key, thread.root_alert_id, thread.opened_at, int(thread.window.total_seconds()),
                 thread.tier.value, thread.suppressed, thread.updates, thread.last_alert_id))
            conn.execute(
                """INSERT INTO alerts (alert_id, dedup_key, contract_id, tier, rule, outcome, thread_root,
                                       payload, received_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (alert.alert_id, alert.dedup_key, alert.contract_id, tier.value, rule, outcome.value,
                 thread.root_alert_id, alert.model_dump_json(), at))
            if escalation is not None and outcome is not Outcome.SUPPRESSED:
                conn.execute("INSERT INTO escalations (alert_id, started_at, next_step, next_due) "
                             "VALUES (%s, %s, %s, %s)",
                             (alert.alert_id, escalation.started_at, escalation.next_step, escalation.next_due))
            return outcome, thread, True

    def get_thread(self, dedup_key: str) -> Thread | None:
        row = self.conn().execute("SELECT * FROM threads WHERE dedup_key = %s", (dedup_key,)).fetchone()
        return _thread(row) if row else None

    def acknowledge(self, alert_id: str, by: str, at: datetime) -> tuple[StoredAlert | None, bool]:
        """Acknowledge an alert (and its thread root, which carries the escalation).

        Returns (alert, changed): changed is False when it was already acknowledged.
        """
        with self.tx() as conn:
            row = conn.execute("SELECT * FROM alerts WHERE alert_id = %s FOR UPDATE", (alert_id,)).fetchone()
            if row is None:
                return None, False
            if row["acked_at"] is not None:
                return _stored(row), False
            # Acknowledging any alert of a thread acknowledges the whole thread (its root carries
            # the escalation; a threaded tier raise carries its own).
            ids = [r["alert_id"] for r in conn.execute(
                "SELECT alert_id FROM alerts WHERE thread_root = %s OR alert_id = %s",
                (row["thread_root"], alert_id)).fetchall()]
            conn.execute("UPDATE alerts SET acked_at = %s, acked_by = %s WHERE alert_id = ANY(%s) "
                         "AND acked_at IS NULL", (at, by, ids))
            conn.execute("UPDATE escalations SET next_due = NULL WHERE alert_id = ANY(%s)", (ids,))
            row = conn.execute("SELECT * FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
            assert row is not None
            return _stored(row), True

    def open_alerts(self, contract_id: str, alert_type_prefix: str) -> list[str]:
        """Unacknowledged alerts of a contract whose type starts with the prefix (e.g. "renewal.")."""
        rows = self.conn().execute(
            "SELECT alert_id FROM alerts WHERE contract_id = %s AND acked_at IS NULL "
            "AND payload->>'alert_type' LIKE %s ORDER BY received_at",
            (contract_id, alert_type_prefix.replace("%", r"\%").replace("_", r"\_") + "%")).fetchall()
        return [r["alert_id"] for r in rows]

    # --- escalation -------------------------------------------------------------------------

    def due_escalations(self, now: datetime, limit: int = 500) -> list[tuple[StoredAlert, int]]:
        """Alerts whose next escalation step is due (index range scan on next_due, never a full scan)."""
        rows = self.conn().execute(
            """SELECT a.*, e.next_step FROM escalations e JOIN alerts a USING (alert_id)
               WHERE e.next_due IS NOT NULL AND e.next_due <= %s AND a.acked_at IS NULL
               ORDER BY e.next_due LIMIT %s""", (now, limit)).fetchall()
        return [(_stored(r), int(r["next_step"])) for r in rows]

    def escalation_fired(self, alert_id: str, next_step: int, next_due: datetime | None) -> None:
        self.conn().execute("UPDATE escalations SET next_step = %s, next_due = %s WHERE alert_id = %s",
                            (next_step, next_due, alert_id))

    # --- the delivery ledger ------------------------------------------------------------------

    def ledger_begin(self, key: str, *, alert_id: str, channel: str, recipient: str, step: str,
                     message_id: str, lease_seconds: float, owner: str = "", contract_id: str | None = None,
                     body: dict[str, Any] | None = None, reclaim_failed: bool = False) -> LedgerEntry:
        """Claim a delivery for `lease_seconds`: insert it 'sending', or take over a 'sending' row whose lease
        ran out (its sender died) or a 'retrying' row that is due. `claimed` is False when another replica
        holds the lease, the retry is not due yet, or the delivery is done ('sent', 'failed').

        `owner` is "instance|run": a claim left by an earlier run of this same instance (static group
        membership: one live process per instance id) is dead and taken over without waiting for its lease."""
        conn = self.conn()
        reclaim = "'sending', 'retrying', 'failed'" if reclaim_failed else "'sending', 'retrying'"
        args = {"key": key, "alert": alert_id, "channel": channel, "recipient": recipient, "step": step,
                "mid": message_id, "lease": lease_seconds, "owner": owner, "instance": owner.split("|")[0],
                "contract": contract_id, "body": None if body is None else json.dumps(body)}
        row = conn.execute(
            f"""INSERT INTO deliveries AS d (delivery_key, alert_id, channel, recipient, step, status, message_id,
                                             lease_until, lease_owner, contract_id, body)
                VALUES (%(key)s, %(alert)s, %(channel)s, %(recipient)s, %(step)s, 'sending', %(mid)s,
                        now() + make_interval(secs => %(lease)s), %(owner)s, %(contract)s, %(body)s)
                ON CONFLICT (delivery_key) DO UPDATE SET attempts = d.attempts + 1, updated_at = now(),
                    status = 'sending', lease_until = EXCLUDED.lease_until, lease_owner = EXCLUDED.lease_owner,
                    body = coalesce(d.body, EXCLUDED.body),
                    failing_since = CASE WHEN d.status = 'failed' THEN NULL ELSE d.failing_since END
                WHERE d.status IN ({reclaim}) AND (d.status = 'failed' OR d.next_attempt_at <= now() AND (
                      d.lease_until <= now() OR (%(instance)s <> '' AND d.lease_owner <> %(owner)s
                                                 AND split_part(d.lease_owner, '|', 1) = %(instance)s)))
                RETURNING status, message_id, attempts, recorded, detail,
                          extract(epoch FROM now() - failing_since)::float8 AS failing_for, true AS claimed""",
            args).fetchone()
        if row is None:
            row = conn.execute(
                """SELECT status, message_id, attempts, recorded, detail,
                          extract(epoch FROM now() - failing_since)::float8 AS failing_for, false AS claimed
                   FROM deliveries WHERE delivery_key = %s""", (key,)).fetchone()
        assert row is not None
        return LedgerEntry(row["status"], row["message_id"], row["attempts"], row["recorded"],
                           row["failing_for"], row["claimed"], row["detail"])

    def ledger_finish(self, key: str, status: str, detail: str = "") -> None:
        """The outcome of a send this process made. Waits out a database outage (the same UPDATE again on a new
        connection): after a send the server accepted, losing the 'sent' write would leave the claim to run out
        and the delivery to be sent a second time (docs/adr/0010-ride-out-outages.md)."""
        for attempt in Retrying(retry=retry_if_exception_type(psycopg.OperationalError),
                                wait=wait_exponential_jitter(initial=0.2, max=5.0), reraise=True,
                                before_sleep=lambda state: log.warning(
                                    "database unavailable recording delivery %s %s, retrying in %.1fs: %s", key, status,
                                    state.upcoming_sleep, state.outcome and state.outcome.exception())):
            with attempt:
                self.conn().execute("UPDATE deliveries SET status = %s, detail = %s, updated_at = now(), "
                                    "lease_until = now() WHERE delivery_key = %s", (status, detail[:2000], key))

    def ledger_retry(self, key: str, delay_seconds: float, detail: str | None) -> None:
        """A send failed for now (an outage): due again in `delay_seconds`; the give-up clock starts once.
        `detail` None (an open circuit: no call was made) keeps the last real error."""
        self.conn().execute(
            """UPDATE deliveries SET status = 'retrying', detail = coalesce(%s, detail), updated_at = now(),
                   lease_until = now(),
                   failing_since = coalesce(failing_since, now()),
                   next_attempt_at = now() + make_interval(secs => %s) WHERE delivery_key = %s""",
            (None if detail is None else detail[:2000], delay_seconds, key))

    def ledger_resume(self, channel: str) -> int:
        """The channel answers again: its waiting deliveries are due now, not at the end of their backoff."""
        cur = self.conn().execute("UPDATE deliveries SET next_attempt_at = now() WHERE channel = %s "
                                  "AND status = 'retrying' AND next_attempt_at > now()", (channel,))
        return cur.rowcount

    def due_deliveries(self, limit: int = 200) -> list[dict[str, Any]]:
        """Deliveries to (re)try now: retries that are due, and claims whose sender died (lease ran out)."""
        return self.conn().execute(
            """SELECT * FROM deliveries WHERE status IN ('sending', 'retrying') AND next_attempt_at <= now()
               AND lease_until <= now() AND body IS NOT NULL ORDER BY next_attempt_at LIMIT %s""", (limit,)).fetchall()

    def next_delivery_due(self, channels: list[str]) -> float | None:
        """Seconds until the earliest waiting delivery on these channels is due (a retry, or a claim whose lease
        runs out); None when nothing waits. What the ticker sleeps for, so nothing waits for a clock advance."""
        row = self.conn().execute(
            """SELECT extract(epoch FROM min(greatest(next_attempt_at, lease_until)) - now())::float8 AS due
               FROM deliveries WHERE status IN ('sending', 'retrying') AND body IS NOT NULL
               AND channel = ANY(%s)""", (channels,)).fetchone()
        return None if row is None or row["due"] is None else max(0.0, float(row["due"]))

    def ledger_recorded(self, keys: list[str]) -> None:
        # Losing this flag in a crash only means the record is produced again (same event id):
        # no need to wait for the WAL flush.
        with self.tx() as conn:
            conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute("UPDATE deliveries SET recorded = true WHERE delivery_key = ANY(%s)", (keys,))

    def unrecorded(self, older_than: timedelta, limit: int = 500) -> list[dict[str, Any]]:
        """'sent' deliveries whose record is not confirmed (wall-clock age: this is about the broker)."""
        return self.conn().execute(
            """SELECT d.*, a.contract_id FROM deliveries d LEFT JOIN alerts a USING (alert_id)
               WHERE d.status = 'sent' AND NOT d.recorded AND d.updated_at < now() - %s
               ORDER BY d.updated_at LIMIT %s""", (older_than, limit)).fetchall()

    def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        return self.conn().execute("SELECT * FROM deliveries WHERE alert_id = %s ORDER BY updated_at",
                                   (alert_id,)).fetchall()

    # --- digests ----------------------------------------------------------------------------

    def add_digest_item(self, recipient: str, alert_id: str, tier: Tier, zone: str, at: datetime) -> None:
        self.conn().execute(
            "INSERT INTO digest_items (recipient, alert_id, tier, zone, added_at) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING", (recipient, alert_id, tier.value, zone, at))

    def digest_recipients(self) -> list[tuple[str, str]]:
        rows = self.conn().execute(
            """SELECT DISTINCT d.recipient, d.zone FROM digest_items d JOIN alerts a USING (alert_id)
               WHERE NOT d.in_weekly OR NOT d.in_daily OR (d.tier = 'yellow' AND a.acked_at IS NULL)""").fetchall()
        return [(r["recipient"], r["zone"]) for r in rows]

    def last_digest(self, recipient: str, kind: DigestKind) -> str | None:
        row = self.conn().execute("SELECT period FROM digest_runs WHERE recipient = %s AND kind = %s",
                                  (recipient, kind.value)).fetchone()
        return row["period"] if row else None

    def digest_items(self, recipient: str, kind: DigestKind, until: datetime) -> list[DigestItem]:
        flag = "in_daily" if kind is DigestKind.DAILY else "in_weekly"
        rows = self.conn().execute(
            f"""SELECT d.*, a.payload, a.acked_at FROM digest_items d JOIN alerts a USING (alert_id)
                WHERE d.recipient = %s AND d.added_at <= %s
                  AND (NOT d.{flag} OR (d.tier = 'yellow' AND a.acked_at IS NULL))
                ORDER BY d.added_at""", (recipient, until)).fetchall()
        out = []
        for r in rows:
            alert = Alert.model_validate(r["payload"] if isinstance(r["payload"], dict) else json.loads(r["payload"]))
            out.append(DigestItem(alert_id=r["alert_id"], contract_id=alert.contract_id, tier=r["tier"],
                                  title=alert.title, what=alert.what, deadline=alert.deadline,
                                  added_at=r["added_at"], acknowledged=r["acked_at"] is not None))
        return out

    def digest_sent(self, recipient: str, kind: DigestKind, period: str, alert_ids: list[str],
                    at: datetime) -> None:
        flag = "in_daily" if kind is DigestKind.DAILY else "in_weekly"
        with self.tx() as conn:
            conn.execute(f"UPDATE digest_items SET {flag} = true WHERE recipient = %s AND alert_id = ANY(%s)",
                         (recipient, alert_ids))
            conn.execute("INSERT INTO digest_runs (recipient, kind, period, sent_at) VALUES (%s, %s, %s, %s) "
                         "ON CONFLICT (recipient, kind) DO UPDATE SET period = EXCLUDED.period, "
                         "sent_at = EXCLUDED.sent_at", (recipient, kind.value, period, at))

    # --- calendar ---------------------------------------------------------------------------

    def upsert_calendar(self, *, uid: str, token: str, owner_email: str, contract_id: str, dedup_key: str,
                        alert_id: str, summary: str, description: str, deadline: datetime, url: str | None,
                        at: datetime) -> None:
        self.conn().execute(
            """INSERT INTO calendar_entries (uid, token, owner_email, contract_id, dedup_key, alert_id, summary,
                                             description, deadline, url, updated_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (uid) DO UPDATE SET token = EXCLUDED.token, owner_email = EXCLUDED.owner_email,
                 alert_id = EXCLUDED.alert_id, summary = EXCLUDED.summary, description = EXCLUDED.description,
                 deadline = EXCLUDED.deadline, url = EXCLUDED.url, updated_at = EXCLUDED.updated_at,
                 sequence = calendar_entries.sequence + 1
               WHERE calendar_entries.alert_id <> EXCLUDED.alert_id""",
            (uid, token, owner_email, contract_id, dedup_key, alert_id, summary, description, deadline, url, at))

    def remove_calendar(self, uid: str) -> None:
        """A completed obligation leaves the calendar."""
        self.conn().execute("DELETE FROM calendar_entries WHERE uid = %s", (uid,))

    def calendar(self, token: str, since: datetime) -> tuple[str | None, list[CalendarEntry]]:
        rows = self.conn().execute("SELECT * FROM calendar_entries WHERE token = %s ORDER BY deadline",
                                   (token,)).fetchall()
        if not rows:
            return None, []
        entries = [CalendarEntry(uid=r["uid"], summary=r["summary"], description=r["description"],
                                 deadline=r["deadline"], url=r["url"], updated_at=r["updated_at"],
                                 sequence=r["sequence"]) for r in rows if r["deadline"] >= since]
        return rows[0]["owner_email"], entries


def _stored(row: dict[str, Any]) -> StoredAlert:
    payload = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
    return StoredAlert(alert=Alert.model_validate(payload), tier=Tier(row["tier"]), rule=row["rule"],
                       outcome=Outcome(row["outcome"]), thread_root=row["thread_root"],
                       received_at=row["received_at"], acked_at=row["acked_at"], acked_by=row["acked_by"])


def _thread(row: dict[str, Any]) -> Thread:
    return Thread(dedup_key=row["dedup_key"], root_alert_id=row["root_alert_id"], opened_at=row["opened_at"],
                  window=timedelta(seconds=row["window_seconds"]), tier=Tier(row["tier"]),
                  suppressed=row["suppressed"], updates=row["updates"], last_alert_id=row["last_alert_id"])
