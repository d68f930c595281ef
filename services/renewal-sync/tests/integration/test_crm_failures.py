"""A CRM outage delays an update, it never drops it: retried durably across a SIGKILL for the
configured time, resumed when the CRM answers, a yellow alert while it fails, only the latest
stage sent; after the give-up time the DLQ, a red alert, and `renewal-sync redrive` sends it.
A 429's Retry-After is honoured."""

from __future__ import annotations

import subprocess
import time
from collections import Counter

import psycopg

from contract_schema.topics import RENEWAL_OPPORTUNITY
from mesh_common.dlq import read_dead_letter
from mesh_testing import consume_all, unique_name, wait_for

from .conftest import Launch
from .harness import day, renewal_sync_command, snapshot

# With the harness's round delays (0.2 s doubling up to 1 s), the old three-round limit dead-lettered an
# update about 2 s into an outage; this outage lasts five times that.
OUTAGE_SECONDS = 10.0


def test_a_crm_outage_across_a_crash_delays_the_update_and_sends_only_the_latest_stage_once(launch: Launch) -> None:
    service, bus, crm = launch("salesforce", RENEWAL_CRM_MAX_ROUND_DELAY="30",
                               RENEWAL_CRM_ALERT_AFTER_MINUTES="0.05")  # yellow after 3 s of failures
    assert crm is not None
    ids = [unique_name(f"C-out{i}") for i in range(5)]
    bus.tick(day(2026, 1, 1))
    for cid in ids:
        bus.contract(snapshot(cid))
    crm.down = True
    down_at = time.monotonic()
    bus.tick(day(2026, 8, 3))  # 120d falls due during the outage
    for cid in ids:
        delayed = wait_for(lambda cid=cid: [a for a in bus.alerts(cid) if a.alert_type == "renewal.crm_sync_delayed"],
                           timeout=30, message=f"{cid}: CRM sync delayed alert")
        assert delayed[0].tier.value == "yellow" and "retrying" in delayed[0].what
    service.kill()  # crash in the middle of the outage; time moves on meanwhile
    bus.tick(day(2026, 9, 2))  # 90d falls due: a newer state of the same opportunities
    service.start()
    seen = crm.failures_served
    wait_for(lambda: crm.failures_served > seen, timeout=30, message="retries resumed after the restart")
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))  # the outage is the fault under test
    assert all(crm.stages(cid) == [] for cid in ids)
    assert not [a for cid in ids for a in bus.alerts(cid) if a.alert_type == "renewal.crm_sync_failing"]

    crm.down = False
    for cid in ids:  # backoffs reach 30 s by now; the first answer resumes every waiting update
        wait_for(lambda cid=cid: crm.stages(cid) == ["90d"], timeout=15, message=f"{cid} delivered once recovered")
    assert all(crm.per_stage(cid) == Counter({"90d": 1}) for cid in ids)  # 120d was overtaken, never sent late
    assert all([o.stage.value for o in bus.opportunities(cid)] == ["120d", "90d"] for cid in ids)
    for cid in ids:  # one yellow alert per contract for the whole spell, across the crash; no red one
        kinds = Counter(a.alert_type for a in bus.alerts(cid) if a.alert_type.startswith("renewal.crm"))
        assert kinds == Counter({"renewal.crm_sync_delayed": 1})
    assert crm.rejected == []


def test_after_the_give_up_time_the_update_is_dead_lettered_and_redrive_sends_it(launch: Launch,
                                                                                 kafka_bootstrap: str) -> None:
    service, bus, crm = launch("hubspot", RENEWAL_CRM_GIVE_UP_AFTER_HOURS="0.002")  # 7.2 s
    assert crm is not None
    cid = unique_name("C-dead")
    crm.down = True
    bus.tick(day(2026, 1, 1))
    bus.contract(snapshot(cid))
    bus.tick(day(2026, 8, 3))
    alert = wait_for(lambda: [a for a in bus.alerts(cid) if a.alert_type == "renewal.crm_sync_failing"],
                     timeout=40, message="CRM sync failing alert")[0]
    assert alert.tier.value == "red" and f"renewal-sync redrive --contract {cid}" in alert.required_action
    answers = list(crm.answers)
    assert answers[-1][0] - answers[0][0] >= 6.5, "retried for the whole give-up time"
    dead = consume_all(kafka_bootstrap, bus.prefix + RENEWAL_OPPORTUNITY.name + ".dlq", 1, timeout=20)
    assert dead[0].key() == cid.encode()
    assert b'"stage":"120d"' in dead[0].value()
    reason = read_dead_letter(dead[0].headers()).reason
    assert "503" in reason or "circuit" in reason
    assert crm.stages(cid) == []

    crm.down = False
    redrive = subprocess.run([*renewal_sync_command(), "redrive", "--contract", cid], env=service.env,
                             capture_output=True, text=True, timeout=60)
    assert redrive.returncode == 0, redrive.stderr
    assert f"re-driving opp:{cid}:" in redrive.stdout and "1 CRM update(s) queued" in redrive.stdout
    wait_for(lambda: crm.stages(cid) == ["120d"], timeout=30, message="the re-driven update at the CRM")
    again = subprocess.run([*renewal_sync_command(), "redrive", "--all"], env=service.env,
                           capture_output=True, text=True, timeout=60)
    assert "0 CRM update(s) queued" in again.stdout  # delivered now: nothing left to re-drive
    assert crm.per_stage(cid) == Counter({"120d": 1})
    assert crm.rejected == []


def test_a_429_retry_after_is_honoured_and_a_later_stage_is_never_overwritten_by_an_earlier_one(
        launch: Launch, postgres_url: str) -> None:
    service, bus, crm = launch("salesforce", flaky=False)
    assert crm is not None
    crm.rate_limited, crm.retry_after = 3, "2"
    cid = unique_name("C-429")
    bus.tick(day(2026, 1, 1))
    bus.contract(snapshot(cid))
    bus.tick(day(2026, 8, 3))
    wait_for(lambda: crm.answers, timeout=30, message="the first, rate-limited call")
    bus.tick(day(2026, 9, 2))  # 90d queued behind the rate-limited 120d
    wait_for(lambda: crm.stages(cid), timeout=30, message="the upsert after the rate limit")
    answers = list(crm.answers)
    assert [status for _, status in answers] == [429, 429, 429, 200]
    gaps = [later - earlier for (earlier, _), (later, _) in zip(answers, answers[1:], strict=False)]
    assert min(gaps) >= 1.95, f"a call came before Retry-After (2 s) ran out: gaps {gaps}"
    assert crm.stages(cid) == ["90d"]  # only the latest state, once
    with psycopg.connect(postgres_url) as db:  # and the overtaken 120d is closed: nothing can send it late
        rows = db.execute(f"SELECT status FROM {service.env['RENEWAL_DB_SCHEMA']}.outbox "
                          "WHERE target = 'crm' AND contract_id = %s ORDER BY id", (cid,)).fetchall()
    assert [r[0] for r in rows] == ["superseded", "sent"]


def test_a_record_refused_inside_a_batch_is_retried_or_dead_lettered_alone(launch: Launch, kafka_bootstrap: str,
                                                                         postgres_url: str) -> None:
    service, bus, crm = launch("salesforce", flaky=False)
    assert crm is not None
    ok, locked, invalid = (unique_name(f"C-rec-{kind}") for kind in ("ok", "locked", "invalid"))
    crm.record_errors = {locked: ["UNABLE_TO_LOCK_ROW", "UNABLE_TO_LOCK_ROW"],  # transient: retried durably
                         invalid: ["FIELD_CUSTOM_VALIDATION_EXCEPTION"]}  # permanent: the DLQ at once
    bus.tick(day(2026, 1, 1))
    for cid in (ok, locked, invalid):
        bus.contract(snapshot(cid))

    def held() -> int:
        with psycopg.connect(postgres_url) as db:
            row = db.execute(f"SELECT count(*) FROM {service.env['RENEWAL_DB_SCHEMA']}.contract_state "
                             "WHERE contract_id = ANY(%s)", ([ok, locked, invalid],)).fetchone()
        return int(row[0]) if row else 0

    wait_for(lambda: held() == 3, timeout=30, message="the three contracts held")
    bus.tick(day(2026, 8, 3))  # 120d of all three in one tick: one collection call
    wait_for(lambda: crm.stages(locked) == ["120d"], timeout=30, message="the locked record after its retries")
    dead = consume_all(kafka_bootstrap, bus.prefix + RENEWAL_OPPORTUNITY.name + ".dlq", 1, timeout=20)
    assert [d.key() for d in dead] == [invalid.encode()]
    assert b'"stage":"120d"' in dead[0].value()
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in read_dead_letter(dead[0].headers()).reason
    red = wait_for(lambda: [a for a in bus.alerts(invalid) if a.alert_type == "renewal.crm_sync_failing"],
                   timeout=20, message="red alert for the refused record")
    assert f"renewal-sync redrive --contract {invalid}" in red[0].required_action
    assert crm.batches == [3, 1, 1]  # the first call carried all three; only the locked record went again
    assert crm.per_stage(ok) == Counter({"120d": 1}) and crm.per_stage(locked) == Counter({"120d": 1})
    assert crm.stages(invalid) == []
    assert not [a for cid in (ok, locked) for a in bus.alerts(cid) if a.alert_type.startswith("renewal.crm")]
    assert crm.rejected == []
