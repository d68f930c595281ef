"""A broker restart while a batch is in flight: the batch's commit fails (the group moved on without
this member), the service logs it and carries on; the batch is redelivered and nothing fires twice.

The broker is this module's own (restarting the session's shared one would disturb other tests).
A PostgreSQL lock held by the test keeps the batch in flight across the outage, so the commit
after it is bound to fail: the outage is longer than the session timeout.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from mesh_testing import unique_name, wait_for
from mesh_testing.servers import KafkaServer

from .harness import Bus, FakeCrm, Service, day, snapshot


def test_a_commit_failing_after_a_broker_restart_is_logged_and_the_service_keeps_processing(
        own_kafka: KafkaServer, postgres_url: str, tmp_path: Path) -> None:
    prefix = unique_name("rs") + "."
    crm = FakeCrm("hubspot", flaky=False).start()
    bus = Bus(own_kafka.bootstrap, prefix)
    service = Service(own_kafka.bootstrap, postgres_url, prefix, crm, tmp_path).start()
    schema = service.env["RENEWAL_DB_SCHEMA"]
    before, during = unique_name("C-before"), unique_name("C-during")
    try:
        bus.tick(day(2026, 1, 1))
        bus.contract(snapshot(before))
        bus.tick(day(2026, 8, 3))
        wait_for(lambda: crm.stages(before) == ["120d"], timeout=30, message="120d before the restart")

        with psycopg.connect(postgres_url) as lock:
            lock.execute(f"LOCK TABLE {schema}.contract_state IN ACCESS EXCLUSIVE MODE")
            bus.contract(snapshot(during))  # its batch now waits for the lock: in flight, not committed

            def batch_waits_for_the_lock() -> bool:
                with psycopg.connect(postgres_url, autocommit=True) as probe:
                    row = probe.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND query LIKE %s", (f"%{schema}.contract_state%",)).fetchone()
                return bool(row and row[0])

            wait_for(batch_waits_for_the_lock, timeout=30, message="the batch blocked on the lock")
            own_kafka.restart(down_for=8)  # longer than RENEWAL_SESSION_TIMEOUT_MS (6 s): the session is gone
            lock.rollback()  # the batch completes; its commit cannot succeed

        assert service.proc is not None
        log = service.log_path
        wait_for(lambda: "commit failed" in log.read_text() or service.proc.poll() is not None,  # type: ignore[union-attr]
                 timeout=60, message="the failed commit")
        assert service.proc.poll() is None, log.read_text()[-3000:]

        wait_for(lambda: crm.stages(during) == ["120d"], timeout=60, message="the redelivered contract's 120d")
        bus.tick(day(2026, 9, 2))
        wait_for(lambda: crm.stages(before) == ["120d", "90d"] and crm.stages(during) == ["120d", "90d"],
                 timeout=60, message="90d for both after the restart")
        assert service.proc.poll() is None
        assert crm.rejected == []
    finally:
        service.stop()
        bus.close()
        crm.stop()
