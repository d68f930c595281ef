"""A partner outage delays a notification, never drops it; a second replica never sends what another
one is sending. Real broker, PostgreSQL, the SMTP catcher simulator (with its fault window) on loopback,
and `notifier` processes (docs/adr/0010-ride-out-outages.md)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller
from mesh_sim.recorder import Recorder
from mesh_sim.smtp import SmtpCatcher
from mesh_sim.smtp import create_app as smtp_app
from mesh_sim.testing import serve_in_thread

from contract_schema.alert import NotificationKind, Tier
from mesh_common.dlq import read_dead_letter
from mesh_testing import create_topics, free_port, unique_name, wait_for
from mesh_testing.servers import PostgresServer

from .conftest import HttpSink, Mesh, SmtpSink, notifications
from .test_notifier import OWNER, alert

# The campaign's notifier timing (mesh_chaos.harness.CAMPAIGN_TIMING) with the shipped 30 s tick, no chat or
# webhook channel (a red alert has nothing to fall back to) and a mesh clock that stands still, as after the
# campaign's last operation: a delayed or orphaned delivery must go out when it is due, not at the next tick.
STILL_CLOCK = {"NOTIFIER_RETRY_ROUND_DELAY": "1", "NOTIFIER_RETRY_MAX_ROUND_DELAY": "5", "NOTIFIER_RETRY_ATTEMPTS": "2",
               "NOTIFIER_RETRY_MAX_DELAY": "1", "NOTIFIER_SMTP_TIMEOUT": "3", "NOTIFIER_DELIVERY_LEASE_SECONDS": "8",
               "NOTIFIER_BREAKER_RESET_SECONDS": "3", "NOTIFIER_TICK_SECONDS": "30", "NOTIFIER_SLACK_WEBHOOK_URL": "",
               "NOTIFIER_TEAMS_WEBHOOK_URL": "", "NOTIFIER_WEBHOOK_URL": ""}
FAST_RETRIES = {"NOTIFIER_TICK_SECONDS": "0.3", "NOTIFIER_RETRY_ROUND_DELAY": "0.5",
                "NOTIFIER_RETRY_MAX_ROUND_DELAY": "2", "NOTIFIER_BREAKER_RESET_SECONDS": "2"}


@pytest.fixture
def catcher() -> Iterator[tuple[str, int]]:
    """The SMTP catcher simulator: (control URL, SMTP port)."""
    recorder = Recorder()
    app = smtp_app(recorder)
    port = free_port()
    smtp = SmtpCatcher(recorder, "127.0.0.1", port, faults=app.state.faults).start()
    try:
        with serve_in_thread(app) as url:
            yield url, port
    finally:
        smtp.stop()


@pytest.fixture
def outage_mesh(kafka_bootstrap: str, postgres_url: str, catcher: tuple[str, int], http_sink: HttpSink,
                tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(kafka_bootstrap, postgres_url, SmtpSink(), catcher[1], http_sink, tmp_path, extra_env=dict(FAST_RETRIES))
    try:
        yield m
    finally:
        m.stop()


def caught(url: str, contract: str) -> list[dict[str, Any]]:
    return [m for m in httpx.get(f"{url}/messages", params={"to": OWNER}).json() if contract in m["subject"]]


def message_ids(url: str) -> Counter[str]:
    return Counter(m["message_id"] for m in httpx.get(f"{url}/messages").json())


def test_an_smtp_outage_delays_the_alerts_and_they_all_go_out_once_when_it_ends(
        outage_mesh: Mesh, catcher: tuple[str, int]) -> None:
    url, _ = catcher
    mesh = outage_mesh
    mesh.start()
    assert httpx.post(f"{url}/chaos/fault", json={"mode": "unavailable", "seconds": 8}).status_code == 200
    contracts = [unique_name("C") for _ in range(10)]
    for c in contracts:
        mesh.send(alert("obligation.due_soon", c))  # yellow: one e-mail each, to the owner
    wait_for(lambda: mesh.sql("SELECT count(*) FROM deliveries WHERE status = 'retrying'")[0][0] == 10,
             timeout=30, message="every delivery waiting for the SMTP server")
    assert all(caught(url, c) == [] for c in contracts)
    wait_for(lambda: all(caught(url, c) for c in contracts), timeout=60, message="every e-mail after the outage")
    assert all(len(caught(url, c)) == 1 for c in contracts)
    assert max(message_ids(url).values()) == 1
    reader, dlq = mesh.reader(), mesh.reader(mesh.alerts_topic + ".dlq")
    reader.wait(lambda ms: len([n for n in notifications(ms) if n.kind is NotificationKind.DELIVERED]) == 10,
                what="ten deliveries recorded")
    assert [n for n in notifications(reader.drain()) if n.kind is NotificationKind.FAILED] == []
    assert dlq.drain() == []  # nothing dead-lettered
    reader.close()
    dlq.close()


def test_a_delivery_failing_past_the_give_up_time_is_dead_lettered_with_the_reason(
        outage_mesh: Mesh, catcher: tuple[str, int]) -> None:
    url, _ = catcher
    mesh = outage_mesh
    mesh.extra_env["NOTIFIER_GIVE_UP_AFTER_HOURS"] = "0.001"  # 3.6 s
    mesh.start()
    httpx.post(f"{url}/chaos/fault", json={"mode": "unavailable", "seconds": 120})
    contract = unique_name("C")
    mesh.send(alert("obligation.due_soon", contract))
    dlq = mesh.reader(mesh.alerts_topic + ".dlq")
    letters = dlq.wait(lambda ms: [read_dead_letter(m.headers()) for m in ms], timeout=60, what="the dead letter")
    assert "h of retries" in letters[0].reason and "421" in letters[0].reason
    rows = mesh.sql("SELECT status, attempts FROM deliveries")
    assert rows[0][0] == "failed" and rows[0][1] >= 2  # retried before giving up
    httpx.delete(f"{url}/chaos/fault")
    assert caught(url, contract) == []
    dlq.close()


def test_a_stalled_replica_keeps_its_claim_and_the_other_one_does_not_send_it_again(mesh: Mesh) -> None:
    mesh.smtp.reject_held = False  # the held message is accepted once its sender carries on
    mesh.start(1)
    a = alert("obligation.due_soon", unique_name("C"))
    mesh.smtp.hold_next = True
    mesh.send(a)
    assert mesh.smtp.held.wait(30), "the e-mail never reached the SMTP server"
    mesh.start(0)
    stalled = mesh.processes[1]
    os.kill(stalled.pid, signal.SIGSTOP)  # stalls mid-send (a long SMTP hang, a paused VM): its session ends
    try:
        # Replica 0 takes the partitions and gets the uncommitted alert again, while replica 1 holds the claim.
        wait_for(lambda: "claimed by another sender" in mesh.log(0), timeout=60, interval=0.2,
                 message="replica 0 leaving the claimed delivery alone")
        assert mesh.smtp.about(a.alert_id) == []
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    mesh.smtp.release.set()
    wait_for(lambda: mesh.sql("SELECT status FROM deliveries WHERE alert_id = %s", a.alert_id) == [("sent",)],
             timeout=30, message="the stalled replica's send confirmed")
    marker = alert("obligation.due_soon", unique_name("C"))
    mesh.send(marker)
    wait_for(lambda: mesh.smtp.about(marker.alert_id), timeout=60, message="a later alert")
    assert len(mesh.smtp.about(a.alert_id)) == 1
    mesh.kill(1)  # and a SIGKILL of a replica afterwards loses nothing
    after = [alert("obligation.due_soon", unique_name("C")) for _ in range(4)]
    for b in after:
        mesh.send(b)
    wait_for(lambda: all(mesh.smtp.about(b.alert_id) for b in after), timeout=60, message="alerts after the kill")
    assert all(len(mesh.smtp.about(b.alert_id)) == 1 for b in after + [a, marker])


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer.start("nt_restart")  # its own: restarting the session's would disturb other tests
    try:
        yield server
    finally:
        server.stop()


def test_a_database_restart_is_ridden_out_and_no_alert_is_lost_or_sent_twice(
        own_postgres: PostgresServer, kafka_bootstrap: str, smtp: tuple[SmtpSink, int], http_sink: HttpSink,
        tmp_path: Path) -> None:
    sink, port = smtp
    mesh = Mesh(kafka_bootstrap, own_postgres.url, sink, port, http_sink, tmp_path, extra_env=dict(FAST_RETRIES))
    try:
        mesh.start()
        before = alert("obligation.due_soon", unique_name("C"))
        mesh.send(before)
        wait_for(lambda: mesh.smtp.about(before.alert_id), timeout=30, message="the e-mail before the restart")
        own_postgres.restart(down_for=2)  # pg_ctl stop -m fast: every session ends with AdminShutdown
        during = [alert("obligation.due_soon", unique_name("C")) for _ in range(3)]
        for a in during:
            mesh.send(a)
        wait_for(lambda: all(mesh.smtp.about(a.alert_id) for a in during), timeout=60,
                 message="the e-mails after the restart")
        assert mesh.process is not None and mesh.process.poll() is None, mesh.log()
        assert all(len(mesh.smtp.about(a.alert_id)) == 1 for a in [before, *during])
    finally:
        mesh.stop()


def test_a_red_alert_delayed_by_an_smtp_outage_goes_out_when_due_while_the_clock_stands_still(
        kafka_bootstrap: str, postgres_url: str, catcher: tuple[str, int], http_sink: HttpSink,
        tmp_path: Path) -> None:
    url, port = catcher
    mesh = Mesh(kafka_bootstrap, postgres_url, SmtpSink(), port, http_sink, tmp_path, extra_env=dict(STILL_CLOCK))
    try:
        mesh.start()
        assert httpx.post(f"{url}/chaos/fault", json={"mode": "unavailable", "seconds": 3}).status_code == 200
        red = alert("sla.breached", unique_name("C"))
        mesh.send(red)
        wait_for(lambda: mesh.sql("SELECT count(*) FROM deliveries WHERE status = 'retrying'")[0][0] >= 1,
                 timeout=30, message="the red alert's e-mail waiting for the SMTP server")
        delayed_at = time.monotonic()
        wait_for(lambda: len(caught(url, red.contract_id)) == 1, timeout=40, interval=0.2,
                 message="the red alert's e-mail after the outage")
        # Due about 1-5 s after the outage began (3 s long); the next 30 s tick would be far later.
        assert time.monotonic() - delayed_at < 15, mesh.log()
        reader = mesh.reader()
        reader.wait(lambda ms: any(n.alert_id == red.alert_id and n.kind is NotificationKind.DELIVERED
                                   for n in notifications(ms)), what="the red alert's delivery recorded")
        reader.close()
    finally:
        mesh.stop()


def test_a_claim_left_by_a_killed_sender_is_taken_over_when_its_lease_ends_while_the_clock_stands_still(
        mesh: Mesh) -> None:
    # A lease that outlasts the next replica's start, so its first tick finds the claim still held.
    mesh.extra_env.update(STILL_CLOCK | {"NOTIFIER_DELIVERY_LEASE_SECONDS": "20"})
    mesh.start(1)
    red = alert("sla.breached", unique_name("C"), tier=Tier.RED)
    mesh.smtp.hold_next = True  # the first DATA is parked; the server will not accept it (its client died)
    mesh.send(red)
    assert mesh.smtp.held.wait(30), "the e-mail never reached the SMTP server"
    mesh.kill(1)  # SIGKILL mid-DATA: its claim stays 'sending' until the lease (20 s) runs out
    mesh.smtp.release.set()
    mesh.start(0)  # another instance id: it must wait for the lease, then take the delivery over
    ready_at = time.monotonic()
    wait_for(lambda: mesh.sql("SELECT count(*) FROM deliveries WHERE alert_id = %s AND status = 'sent'",
                              red.alert_id)[0][0] == 2, timeout=45, interval=0.2,
             message="both e-mails of the red alert (owner and legal) after the takeover")
    assert time.monotonic() - ready_at < 25, mesh.log()  # when the lease ends, not a 30 s tick after the start
    assert sorted(r[0] for r, _ in mesh.smtp.about(red.alert_id)) == ["legal@example.com", "olivia@example.com"]


@dataclass
class AcceptThen(SmtpSink):
    """Accepts a message (it is in the inbox), then runs `after_accept` once before answering 250."""

    after_accept: Callable[[], None] | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        answer = await super().handle_DATA(server, session, envelope)
        if self.after_accept is not None:
            run, self.after_accept = self.after_accept, None
            await asyncio.get_running_loop().run_in_executor(None, run)
        return answer


def test_a_database_restart_between_the_accepted_send_and_the_sent_write_does_not_send_it_again(
        own_postgres: PostgresServer, kafka_bootstrap: str, http_sink: HttpSink, tmp_path: Path) -> None:
    def database_down() -> bool:
        try:
            psycopg.connect(own_postgres.url, connect_timeout=2).close()
            return False
        except psycopg.OperationalError:
            return True

    def restart_the_database() -> None:  # answer 250 only once it is down, so the 'sent' write meets the outage
        restart = threading.Thread(target=own_postgres.restart, kwargs={"down_for": 2})
        restart.start()
        wait_for(database_down, timeout=30, interval=0.05, message="the database stopped")
        restarts.append(restart)

    restarts: list[threading.Thread] = []
    sink = AcceptThen(after_accept=restart_the_database)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    # A lease short enough that a lost 'sent' write would be taken over (and sent again) within the test.
    mesh = Mesh(kafka_bootstrap, own_postgres.url, sink, port, http_sink, tmp_path,
                extra_env=FAST_RETRIES | {"NOTIFIER_SMTP_TIMEOUT": "10", "NOTIFIER_RETRY_MAX_DELAY": "1",
                                          "NOTIFIER_DELIVERY_LEASE_SECONDS": "22"})
    try:
        mesh.start()
        a = alert("obligation.due_soon", unique_name("C"))  # yellow: one e-mail, to the owner
        mesh.send(a)
        def confirmed() -> bool:
            try:
                return mesh.sql("SELECT status FROM deliveries WHERE alert_id = %s", a.alert_id) == [("sent",)]
            except psycopg.OperationalError:
                return False  # the database is still down

        wait_for(confirmed, timeout=60, interval=0.2, message="the delivery confirmed after the restart")
        assert sink.after_accept is None, "the database was not restarted after the send"
        assert len(sink.about(a.alert_id)) == 1, mesh.log()
        assert "database unavailable recording delivery" in mesh.logs[0].read_text()  # the 'sent' write waited
        later = alert("obligation.due_soon", unique_name("C"))
        mesh.send(later)  # and the process carries on
        wait_for(lambda: sink.about(later.alert_id), timeout=30, message="an e-mail after the restart")
        assert len(sink.about(a.alert_id)) == 1
    finally:
        for restart in restarts:
            restart.join(60)
        mesh.stop()
        sink.release.set()
        controller.stop()


def test_the_remaining_window_a_kill_after_the_server_accepted_resends_with_the_same_message_id(
        kafka_bootstrap: str, postgres_url: str, http_sink: HttpSink, tmp_path: Path) -> None:
    """What SMTP cannot close (ADR 0010): the server took the message, the sender was SIGKILLed before it
    heard 250 and wrote 'sent'. The restart sends it once more, with the same Message-ID, and then never again."""
    mesh: Mesh | None = None

    def kill_the_sender() -> None:
        assert mesh is not None and mesh.process is not None
        os.kill(mesh.process.pid, signal.SIGKILL)
        mesh.process.wait(10)

    sink = AcceptThen(after_accept=kill_the_sender)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    mesh = Mesh(kafka_bootstrap, postgres_url, sink, port, http_sink, tmp_path, extra_env=dict(FAST_RETRIES))
    try:
        mesh.start()
        a = alert("obligation.due_soon", unique_name("C"))
        mesh.send(a)
        wait_for(lambda: sink.after_accept is None and mesh.process is not None and mesh.process.poll() is not None,
                 timeout=30, message="the sender killed after the server accepted")
        mesh.processes.pop(0)
        mesh.start()  # the same instance id: its predecessor's claim is taken over at once
        wait_for(lambda: mesh.sql("SELECT status FROM deliveries WHERE alert_id = %s", a.alert_id) == [("sent",)],
                 timeout=60, interval=0.2, message="the delivery confirmed after the restart")
        copies = sink.about(a.alert_id)
        assert len(copies) == 2 and copies[0][1]["Message-ID"] == copies[1][1]["Message-ID"]
        mesh.send(a)  # a redelivery now finds 'sent'
        later = alert("obligation.due_soon", unique_name("C"))
        mesh.send(later)
        wait_for(lambda: sink.about(later.alert_id), timeout=30, message="a later e-mail")
        assert len(sink.about(a.alert_id)) == 2
    finally:
        mesh.stop()
        sink.release.set()
        controller.stop()


def test_a_record_an_earlier_process_left_unconfirmed_is_produced_again_at_start(mesh: Mesh) -> None:
    """The state a SIGKILL leaves when the e-mail went and 'sent' was written but the broker never confirmed
    the NotificationRecorded (the process died, or the broker was away): the next process produces it at
    its first tick, not a minute after the send."""
    mesh.extra_env.update(STILL_CLOCK)  # the shipped 30 s tick, a clock that does not move
    mesh.start()
    a = alert("obligation.due_soon", unique_name("C"))
    mesh.send(a)
    wait_for(lambda: mesh.sql("SELECT recorded FROM deliveries WHERE alert_id = %s", a.alert_id) == [(True,)],
             timeout=30, message="the delivery sent and its record confirmed")
    mesh.kill()
    mesh.sql("UPDATE deliveries SET recorded = false WHERE alert_id = %s RETURNING 1", a.alert_id)
    mesh.notifications_topic = f"{mesh.prefix}.notification-after"  # where the lost record must show up
    mesh.extra_env["NOTIFIER_NOTIFICATIONS_TOPIC"] = mesh.notifications_topic
    create_topics(mesh.bootstrap, [mesh.notifications_topic], partitions=1)
    mesh.start()
    reader = mesh.reader()
    reader.wait(lambda ms: [n for n in notifications(ms) if n.alert_id == a.alert_id
                            and n.kind is NotificationKind.DELIVERED], timeout=15,
                what="the unconfirmed record produced again by the restarted notifier")
    reader.close()
    assert mesh.sql("SELECT recorded FROM deliveries WHERE alert_id = %s", a.alert_id) == [(True,)]
    assert len(mesh.smtp.about(a.alert_id)) == 1  # the e-mail itself is not sent again
