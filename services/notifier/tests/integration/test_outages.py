"""A partner outage delays a notification, never drops it; a second replica never sends what another
one is sending. Real broker, PostgreSQL, the SMTP catcher simulator (with its fault window) on loopback,
and `notifier` processes (docs/adr/0010-ride-out-outages.md)."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mesh_sim.recorder import Recorder
from mesh_sim.smtp import SmtpCatcher
from mesh_sim.smtp import create_app as smtp_app
from mesh_sim.testing import serve_in_thread

from contract_schema.alert import NotificationKind
from mesh_common.dlq import read_dead_letter
from mesh_testing import free_port, unique_name, wait_for
from mesh_testing.servers import PostgresServer

from .conftest import HttpSink, Mesh, SmtpSink, notifications
from .test_notifier import OWNER, alert

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
