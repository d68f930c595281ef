from __future__ import annotations

from datetime import date, timedelta

from renewal_sync.domain.renewal import (
    RenewalState,
    fire_due,
    next_due,
    on_decision,
    on_renewed,
    on_snapshot,
    on_terminated,
    opportunity,
)
from renewal_sync.domain.timeline import ContractView, TimelineSettings

from contract_schema.alert import Tier
from contract_schema.renewal import OpportunityStatus, RenewalDecisionKind, RenewalStage, SlaRecord

from .factories import at, snapshot

S = TimelineSettings()
# end 2026-12-31, notice 30 -> deadline 2026-12-01; 120d = 08-03, 90d = 09-02, 60d = 10-02, 30d = 11-01


def view(**kw: object) -> ContractView:
    return ContractView.from_snapshot(snapshot(**kw))  # type: ignore[arg-type]


def new_state(now_: object = None, **kw: object) -> RenewalState:
    out = on_snapshot(None, view(**kw), S, at(2026, 1, 1))
    assert not out.changed
    return out.state


def test_new_contract_far_from_deadline_announces_nothing_and_is_due_at_120_days() -> None:
    state = new_state()
    assert state.stage is None
    assert next_due(state, S, at(2026, 1, 1)) == at(2026, 8, 3)


def test_each_stage_fires_once_in_order() -> None:
    state = new_state()
    fired = []
    for day in (at(2026, 8, 3), at(2026, 8, 3, 5), at(2026, 9, 2), at(2026, 10, 2), at(2026, 11, 1),
                at(2026, 11, 2), at(2026, 12, 1), at(2026, 12, 31)):
        out = fire_due(state, S, day)
        state = out.state
        if out.changed:
            fired.append(state.stage)
    assert fired == [RenewalStage.DAYS_120, RenewalStage.DAYS_90, RenewalStage.DAYS_60, RenewalStage.DAYS_30,
                     RenewalStage.NOTICE_DEADLINE, RenewalStage.END_DATE]
    assert next_due(state, S, at(2027, 1, 1)) is None


def test_yellow_for_120_90_60_red_from_30_days_without_decision_with_context_text() -> None:
    state = new_state()
    out = fire_due(state, S, at(2026, 8, 3))
    assert out.alerts[0].tier is Tier.YELLOW
    out = fire_due(out.state, S, at(2026, 11, 1))
    alert = out.alerts[0]
    assert alert.tier is Tier.RED
    assert alert.what == ("Contract Hosting C-1 (C-1) expires in 60 days. Renewal decision required. "
                          "Auto-renewal triggers in 30 days without notice.")
    assert alert.owner is not None and alert.owner.email == "olga@example.com"
    assert alert.backup_owner is not None


def test_catch_up_after_downtime_announces_only_the_latest_due_stage_once() -> None:
    state = new_state()
    out = fire_due(state, S, at(2026, 10, 5))
    assert out.state.stage is RenewalStage.DAYS_60 and len(out.alerts) == 1
    assert not fire_due(out.state, S, at(2026, 10, 6)).changed
    assert next_due(out.state, S, at(2026, 10, 6)) == at(2026, 11, 1)


def test_amendment_moves_future_stages_and_close_date_without_reannouncing() -> None:
    state = fire_due(new_state(), S, at(2026, 8, 3)).state  # 120d announced
    out = on_snapshot(state, view(end_date=date(2027, 3, 31), version=2), S, at(2026, 8, 10))
    assert out.changed and not out.alerts  # close date moved, nothing new to announce
    assert next_due(out.state, S, at(2026, 8, 10)) == at(2026, 12, 1)  # 90d before the 2027-03-01 deadline
    assert opportunity(out.state, None, at(2026, 8, 10)).close_date == date(2027, 3, 1)
    # the 120d stage moved into the future again but was announced already: never again
    assert "120d" in out.state.announced


def test_amendment_that_puts_a_stage_in_the_past_fires_it_once_now() -> None:
    state = fire_due(new_state(), S, at(2026, 8, 3)).state
    out = on_snapshot(state, view(end_date=date(2026, 10, 31)), S, at(2026, 8, 10))  # deadline 10-01
    assert out.changed and out.state.stage is RenewalStage.DAYS_60  # 60d = 08-02 is past, 30d = 09-01 is not
    assert len(out.alerts) == 1
    assert not on_snapshot(out.state, view(end_date=date(2026, 10, 31)), S, at(2026, 8, 11)).changed


def test_termination_closes_as_lost_and_stops_the_timeline() -> None:
    state = fire_due(new_state(), S, at(2026, 8, 3)).state
    out = on_terminated(state, date(2026, 8, 20))
    assert out.changed and out.state.status is OpportunityStatus.LOST
    assert next_due(out.state, S, at(2026, 8, 21)) is None
    assert not on_terminated(out.state, date(2026, 8, 20)).changed


def test_terminated_snapshot_closes_as_lost() -> None:
    state = fire_due(new_state(), S, at(2026, 8, 3)).state
    out = on_snapshot(state, view(status="terminated"), S, at(2026, 8, 4))
    assert out.changed and out.state.status is OpportunityStatus.LOST


def test_renewal_closes_as_won_and_starts_the_next_term_once() -> None:
    state = fire_due(new_state(), S, at(2026, 11, 1)).state
    won, nxt = on_renewed(state, 2, date(2027, 12, 31), S, at(2026, 11, 5))
    assert won.changed and won.state.status is OpportunityStatus.WON
    assert nxt.state.term == 2 and nxt.state.status is OpportunityStatus.OPEN and nxt.state.stage is None
    assert nxt.state.revision > won.state.revision - 1
    assert next_due(nxt.state, S, at(2026, 11, 5)) == at(2027, 8, 3)
    again_won, again_next = on_renewed(nxt.state, 2, date(2027, 12, 31), S, at(2026, 11, 6))
    assert not again_won.changed and again_next.state == nxt.state


def test_decision_clears_auto_renewal_risk_and_stops_red_alerts() -> None:
    state = fire_due(new_state(), S, at(2026, 8, 3)).state
    assert state.auto_renewal_risk
    out = on_decision(state, RenewalDecisionKind.RENEGOTIATE)
    assert out.changed and not out.state.auto_renewal_risk
    later = fire_due(out.state, S, at(2026, 11, 1))
    assert later.changed and later.alerts[0].tier is Tier.GREEN
    assert "decision required" not in later.alerts[0].what


def test_evergreen_review_fires_each_period() -> None:
    state = on_snapshot(None, view(end_date=None, effective_date=date(2025, 6, 1)), S, at(2026, 1, 1)).state
    assert next_due(state, S, at(2026, 1, 1)) == at(2026, 6, 1)
    out = fire_due(state, S, at(2026, 6, 1))
    assert out.state.stage is RenewalStage.REVIEW and out.alerts[0].tier is Tier.YELLOW
    assert next_due(out.state, S, at(2026, 6, 2)) == at(2027, 6, 1)
    assert not fire_due(out.state, S, at(2026, 6, 2) + timedelta(days=10)).changed


def test_opportunity_carries_value_owner_risk_and_sla_record() -> None:
    state = fire_due(new_state(), S, at(2026, 8, 3)).state
    sla = SlaRecord(window_start=date(2025, 8, 1), window_end=date(2026, 7, 31), sla_measurements=12, sla_met=11)
    opp = opportunity(state, sla, at(2026, 8, 3))
    assert opp.stage is RenewalStage.DAYS_120 and opp.close_date == date(2026, 12, 1)
    assert str(opp.amount) == "120000.00" and opp.currency == "EUR"
    assert opp.owner.name == "Olga Owner" and opp.backup_owner is not None
    assert opp.auto_renewal_risk and opp.sla_record == sla


def test_an_older_snapshot_redelivered_after_a_crash_changes_nothing() -> None:
    old = snapshot(end_date=date(2026, 12, 31), updated_at="2026-02-01T00:00:00+00:00")
    new = snapshot(end_date=date(2027, 3, 31), version=2, updated_at="2026-03-01T00:00:00+00:00")
    state = on_snapshot(None, ContractView.from_snapshot(old), S, at(2026, 1, 1)).state
    state = fire_due(state, S, at(2026, 8, 3)).state
    state = on_snapshot(state, ContractView.from_snapshot(new), S, at(2026, 8, 4)).state
    replay = on_snapshot(state, ContractView.from_snapshot(old), S, at(2026, 8, 5))
    assert not replay.changed and replay.state == state
    assert replay.state.contract.end_date == date(2027, 3, 31)
