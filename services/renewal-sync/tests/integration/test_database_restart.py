"""A PostgreSQL restart (`pg_ctl stop -m fast`, every session ends with AdminShutdown) is ridden out:
the outbox relay and the consumer reconnect with backoff, the pending rows stay pending and go out
afterwards; the process never exits. That holds at any moment: between a start-up's migration and
the first partition assignment (which rebuilds the timelines from PostgreSQL), and while the process
starts with the database down. The cluster is this module's own (restarting the session's shared
one would disturb other tests)."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg

from mesh_testing import unique_name, wait_for
from mesh_testing.servers import PostgresServer

from .harness import Bus, FakeCrm, Service, day, snapshot


def test_a_database_restart_is_ridden_out_and_pending_crm_updates_still_go_out(
        own_postgres: PostgresServer, kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = unique_name("rs") + "."
    crm = FakeCrm("hubspot", flaky=False).start()
    bus = Bus(kafka_bootstrap, prefix)
    service = Service(kafka_bootstrap, own_postgres.url, prefix, crm, tmp_path).start()
    before, during = unique_name("C-before"), unique_name("C-during")
    try:
        bus.tick(day(2026, 1, 1))
        bus.contract(snapshot(before))
        bus.tick(day(2026, 8, 3))
        wait_for(lambda: crm.stages(before) == ["120d"], timeout=30, message="120d before the restart")

        crm.down = True  # the 90d upsert stays pending in the outbox across the restart
        bus.tick(day(2026, 9, 2))
        wait_for(lambda: crm.failures_served >= 2, timeout=30, message="the 90d upsert failing")
        for _ in range(2):  # two restarts: the relay survives more than one
            own_postgres.restart(down_for=2)
            bus.contract(snapshot(during))  # consumed while the database is back or still coming back
        crm.down = False

        assert service.proc is not None
        wait_for(lambda: crm.stages(before) == ["120d", "90d"] or service.proc.poll() is not None,  # type: ignore[union-attr]
                 timeout=60, message="the pending 90d upsert after the restarts")
        assert service.proc.poll() is None, service.log_path.read_text()[-3000:]
        assert crm.stages(before) == ["120d", "90d"]
        wait_for(lambda: crm.stages(during) == ["90d"], timeout=60,  # its latest due stage, once
                 message="the contract sent during the outage")
        wait_for(lambda: [o.stage.value for o in bus.opportunities(before)][-1:] == ["90d"], timeout=30,
                 message="the 90d opportunity record relayed to Kafka")
        assert "reconnected to PostgreSQL" in service.log_path.read_text()
        assert service.proc.poll() is None
        assert crm.rejected == []
    finally:
        service.stop()
        bus.close()
        crm.stop()


def _refuses(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=1).close()
    except psycopg.OperationalError:
        return True
    return False


def test_a_database_restart_between_start_up_and_the_first_assignment_is_waited_out(
        own_postgres: PostgresServer, kafka_bootstrap: str, tmp_path: Path) -> None:
    """What crashed the fault campaign: renewal-sync back from a SIGKILL had migrated and was waiting for
    its partitions (the group waits out the dead member's session) when PostgreSQL restarted; the
    assignment's rebuild met the ended session and the process exited. Then: a start with the database
    down. Each time the process stays up, and the CRM update left pending goes out exactly once."""
    prefix = unique_name("rs") + "."
    crm = FakeCrm("hubspot", flaky=False).start()
    bus = Bus(kafka_bootstrap, prefix)
    # A 10 s session: the restarted process waits that long for its partitions, the window the restart hits.
    service = Service(kafka_bootstrap, own_postgres.url, prefix, crm, tmp_path,
                      RENEWAL_SESSION_TIMEOUT_MS="10000").start()
    before, during, after = unique_name("C-before"), unique_name("C-during"), unique_name("C-after")
    relaying = "this replica now relays the outbox"
    try:
        bus.tick(day(2026, 1, 1))
        bus.contract(snapshot(before))
        bus.tick(day(2026, 8, 3))
        wait_for(lambda: crm.stages(before) == ["120d"], timeout=30, message="120d before the kill")
        crm.down = True  # the 90d upsert stays pending in the outbox across the kill and the restart
        bus.tick(day(2026, 9, 2))
        wait_for(lambda: crm.failures_served >= 1, timeout=30, message="the 90d upsert failing")

        service.kill()
        service.launch()
        # Migrated (the relay starts after the migration) and waiting for its partitions.
        wait_for(lambda: service.log_path.read_text().count(relaying) == 2, timeout=30,
                 message="the restarted process connected and migrated")
        assert not service.ready(), "the partitions came before the database restart: nothing tested"
        own_postgres.restart(down_for=1)
        bus.contract(snapshot(during))
        crm.down = False
        wait_for(service.ready, timeout=45, message="renewal-sync ready after the database restart")
        wait_for(lambda: crm.stages(before) == ["120d", "90d"], timeout=30, message="the pending 90d upsert")
        wait_for(lambda: crm.stages(during) == ["90d"], timeout=30, message="the contract sent during the restart")

        service.stop()  # leaves the group: the next start gets its partitions at once
        outage = threading.Thread(target=own_postgres.restart, kwargs={"down_for": 4})
        outage.start()
        wait_for(lambda: _refuses(own_postgres.url), timeout=20, message="PostgreSQL down")
        seen = len(service.log_path.read_text())
        service.launch()
        bus.contract(snapshot(after))
        outage.join()
        wait_for(service.ready, timeout=45, message="renewal-sync ready after starting with the database down")
        assert "database unavailable" in service.log_path.read_text()[seen:]
        wait_for(lambda: crm.stages(after) == ["90d"], timeout=30, message="a contract sent at start-up")

        wait_for(lambda: [o.stage.value for o in bus.opportunities(before)] == ["120d", "90d"], timeout=30,
                 message="each opportunity record relayed to Kafka once")
        assert crm.stages(before) == ["120d", "90d"] and crm.stages(during) == ["90d"]  # nothing sent twice
        assert service.undelivered() == 0
        assert service.proc is not None and service.proc.poll() is None
        assert crm.rejected == []
    finally:
        service.stop()
        bus.close()
        crm.stop()
