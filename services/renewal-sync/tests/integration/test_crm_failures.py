"""A CRM outage delays but loses and duplicates nothing, across a crash; after the last round
the update goes to the DLQ with a red "CRM sync failing" alert."""

from __future__ import annotations

from collections import Counter

from contract_schema.topics import RENEWAL_OPPORTUNITY
from mesh_common.dlq import read_dead_letter
from mesh_testing import consume_all, unique_name, wait_for

from .conftest import Launch
from .harness import day, snapshot


def test_crm_outage_delays_but_loses_nothing_and_duplicates_nothing(launch: Launch) -> None:
    service, bus, crm = launch("salesforce")
    assert crm is not None
    ids = [unique_name(f"C-out{i}") for i in range(5)]
    bus.tick(day(2026, 1, 1))
    for cid in ids:
        bus.contract(snapshot(cid))
    crm.down = True
    bus.tick(day(2026, 8, 3))
    wait_for(lambda: crm.failures_served >= 10, timeout=30, message="the service retrying a CRM that is down")
    service.kill()  # crash in the middle of the outage; time moves on meanwhile
    bus.tick(day(2026, 9, 2))
    service.start()
    seen = crm.failures_served
    wait_for(lambda: crm.failures_served > seen, timeout=30, message="retries resumed after the restart")
    assert all(crm.stages(cid) == [] for cid in ids)
    crm.down = False
    for cid in ids:
        wait_for(lambda cid=cid: crm.stages(cid) == ["120d", "90d"], timeout=45, message=f"{cid} delivered in order")
    assert all(crm.per_stage(cid) == Counter({"120d": 1, "90d": 1}) for cid in ids)
    assert crm.rejected == []


def test_after_the_last_round_the_update_goes_to_the_dlq_with_a_red_alert(launch: Launch,
                                                                            kafka_bootstrap: str) -> None:
    _, bus, crm = launch("hubspot", RENEWAL_CRM_ROUNDS="2")
    assert crm is not None
    cid = unique_name("C-dead")
    crm.down = True
    bus.tick(day(2026, 1, 1))
    bus.contract(snapshot(cid))
    bus.tick(day(2026, 8, 3))
    alert = wait_for(lambda: [a for a in bus.alerts(cid) if a.alert_type == "renewal.crm_sync_failing"],
                     timeout=30, message="CRM sync failing alert")[0]
    assert alert.tier.value == "red" and alert.what.startswith("CRM sync failing")
    dead = consume_all(kafka_bootstrap, bus.prefix + RENEWAL_OPPORTUNITY.name + ".dlq", 1, timeout=20)
    assert dead[0].key() == cid.encode()
    assert b'"stage":"120d"' in dead[0].value()
    reason = read_dead_letter(dead[0].headers()).reason
    assert "503" in reason or "circuit" in reason
    assert crm.stages(cid) == []
