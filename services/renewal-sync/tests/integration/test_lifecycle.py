"""Amendments move the timeline; termination and renewal close the opportunity (fake HubSpot)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import contract_schema as cs
from contract_schema.topics import CONTRACT_EVENTS
from mesh_testing import unique_name, wait_for

from .conftest import Launch
from .harness import day, snapshot


def test_amendment_moving_the_end_date_moves_the_stages_and_updates_the_close_date(launch: Launch) -> None:
    _, bus, crm = launch("hubspot")
    assert crm is not None
    cid, evergreen = unique_name("C-amend"), unique_name("C-evergreen")
    bus.tick(day(2026, 1, 1))
    bus.contract(snapshot(cid))
    bus.contract(snapshot(evergreen, end_date=None, effective_date=date(2025, 9, 1)))  # reviewed yearly
    bus.tick(day(2026, 8, 3))
    wait_for(lambda: crm.stages(cid) == ["120d"], timeout=30, message="120d upsert")
    assert crm.last(cid).close_date == "2026-12-01"  # type: ignore[union-attr]

    # end date moves out by a quarter: deadline 2027-03-01, so 90d moves from 2026-09-02 to 2026-12-01
    bus.contract(snapshot(cid, end_date=date(2027, 3, 31), version=2))
    wait_for(lambda: (u := crm.last(cid)) is not None and u.close_date == "2027-03-01", timeout=30,
             message="close date updated in the CRM")
    opp = wait_for(lambda: [o for o in bus.opportunities(cid) if str(o.close_date) == "2027-03-01"], timeout=20)[0]
    assert opp.stage.value == "120d"  # already announced: not announced again

    bus.tick(day(2026, 9, 2))  # the old 90d date: nothing may fire
    bus.tick(day(2026, 12, 1))  # the new 90d date
    wait_for(lambda: crm.stages(cid)[-1:] == ["90d"], timeout=30, message="90d at its new date")
    assert crm.stages(cid) == ["120d", "120d", "90d"]
    assert crm.last(cid).close_date == "2027-03-01"  # type: ignore[union-attr]

    # pulled in: deadline 2026-12-16 puts 60d and 30d in the past: the latest fires once, now
    bus.contract(snapshot(cid, end_date=date(2027, 1, 15), version=3))
    wait_for(lambda: crm.stages(cid)[-1:] == ["30d"], timeout=30, message="30d fired by the amendment")
    alerts = wait_for(lambda: [a for a in bus.alerts(cid) if a.title.startswith("Renewal 30d")], timeout=20)
    assert len(alerts) == 1 and alerts[0].tier is cs.Tier.RED
    assert crm.stages(cid) == ["120d", "120d", "90d", "30d"]
    assert crm.stages(evergreen) == ["review"]  # 2026-09-01, once, although the clock moved on since
    review = [a for a in bus.alerts(evergreen)]
    assert len(review) == 1 and "periodic review" in review[0].what
    assert crm.rejected == []


def test_termination_closes_lost_and_renewal_closes_won_and_starts_the_next_term(launch: Launch) -> None:
    _, bus, crm = launch("hubspot")
    assert crm is not None
    ended, renewed = unique_name("C-term"), unique_name("C-renew")
    bus.tick(day(2026, 1, 1))
    bus.contract(snapshot(ended))
    bus.contract(snapshot(renewed))
    bus.tick(day(2026, 8, 3))
    wait_for(lambda: crm.stages(ended) == ["120d"] and crm.stages(renewed) == ["120d"], timeout=30)

    at = datetime(2026, 8, 10, tzinfo=UTC)
    bus.send(cs.ContractTerminated(contract_id=ended, tenant_id="t1", version=1, occurred_at=at,
                                   terminated_on=date(2026, 8, 10), reason="supplier exit"), CONTRACT_EVENTS.name)
    bus.send(cs.ContractRenewed(contract_id=renewed, tenant_id="t1", version=2, occurred_at=at,
                                new_end_date=date(2027, 12, 31), renewal_term_months=12), CONTRACT_EVENTS.name)
    wait_for(lambda: (u := crm.last(ended)) is not None and u.crm_stage == "closedlost", timeout=30)
    wait_for(lambda: (u := crm.last(renewed)) is not None and u.crm_stage == "closedwon", timeout=30)
    assert [o.status.value for o in wait_for(lambda: bus.opportunities(ended)[1:], timeout=20)] == ["lost"]
    assert [o.status.value for o in wait_for(lambda: bus.opportunities(renewed)[1:], timeout=20)] == ["won"]

    # the renewed contract's next term: 120 days before its new deadline 2027-12-01 is 2027-08-03
    bus.tick(day(2027, 8, 3))
    wait_for(lambda: len(crm.stages(renewed)) == 3, timeout=30, message="next term's 120d")
    nxt = crm.last(renewed)
    assert nxt is not None and (nxt.stage, nxt.crm_stage, nxt.close_date) == ("120d", "contractsent", "2027-12-01")
    assert crm.stages(ended) == ["120d", "120d"]  # the 120d announcement, then closed lost; nothing after
    assert crm.rejected == []
