"""A PostgreSQL restart (`pg_ctl stop -m fast`, every session ends with AdminShutdown) is ridden out:
the outbox relay and the consumer reconnect with backoff, the pending rows stay pending and go out
afterwards; the process never exits. The cluster is this module's own (restarting the session's shared
one would disturb other tests)."""

from __future__ import annotations

from pathlib import Path

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
