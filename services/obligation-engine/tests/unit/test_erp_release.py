"""A held ERP release: counted while ERP fails, given up only after the give-up duration (docs/adr/0012)."""

from datetime import UTC, datetime, timedelta

from obligation_engine.domain import engine
from obligation_engine.domain.engine import CallErp, DeadLetter, Publish
from obligation_engine.domain.model import ContractState, Parked

from contract_schema import Alert, Origin

from .test_engine import CFG, NOW, scheduled_state

GIVE_UP = timedelta(hours=24)
WALL = datetime(2026, 12, 2, 12, tzinfo=UTC)
TRIGGER = Parked("e1", "erp.performance.v1", 0, 7, b"c1", b"{}", (), NOW, "pending")


def held() -> tuple[ContractState, str]:
    state, effects = engine.apply_completion(scheduled_state(), event_id="e1", obligation_id="go-live",
                                             completed_at=NOW, origin=Origin.CONTRACT,
                                             source_system="contract-registry", evidence_ref=None, now=NOW, cfg=CFG)
    call = next(e for e in effects if isinstance(e, CallErp))
    state = engine.hold_release(state, call.event_id, call.command, TRIGGER)
    assert engine.hold_release(state, call.event_id, call.command, TRIGGER) is state  # held once
    return state, call.event_id


def outcome(state: ContractState, cid: str, *, ok: bool = False, permanent: bool = False,
            at: datetime = WALL) -> tuple[ContractState, list]:  # type: ignore[type-arg]
    return engine.release_outcome(state, cid, ok=ok, permanent=permanent, error="ConnectError: refused", at=at,
                                  give_up=GIVE_UP, now=NOW)


def test_failures_within_the_give_up_time_are_counted_and_the_release_kept() -> None:
    state, cid = held()
    for n, minutes in enumerate((0, 5, 60, 23 * 60), start=1):
        state, effects = outcome(state, cid, at=WALL + timedelta(minutes=minutes))
        assert effects == []
        (r,) = state.releases
        assert r.attempts == n and r.failing_since == WALL and r.last_error == "ConnectError: refused"
    assert ContractState.from_json(state.to_json()).releases == state.releases  # survives in the table


def test_accepted_forgets_the_release_and_a_late_outcome_changes_nothing() -> None:
    state, cid = held()
    state, _ = outcome(state, cid)
    state, effects = outcome(state, cid, ok=True)
    assert state.releases == () and effects == []
    assert outcome(state, cid) == (state, [])


def test_still_failing_after_the_give_up_time_dead_letters_the_trigger_with_a_red_alert() -> None:
    state, cid = held()
    state, _ = outcome(state, cid)
    state, effects = outcome(state, cid, at=WALL + GIVE_UP)
    assert state.releases == ()
    (dead,) = [e for e in effects if isinstance(e, DeadLetter)]
    assert dead.parked == TRIGGER and "gave up after 2 failed round(s) over 24.00 h" in dead.reason
    (alert,) = [e.event for e in effects if isinstance(e, Publish) and isinstance(e.event, Alert)]
    assert alert.alert_type == "obligation.erp-release-failed"


def test_a_permanent_answer_gives_up_at_once() -> None:
    state, cid = held()
    state, effects = outcome(state, cid, permanent=True)
    assert state.releases == () and any(isinstance(e, DeadLetter) for e in effects)
    assert "ERP refused it" in next(e for e in effects if isinstance(e, DeadLetter)).reason


def test_expiry_of_parked_records_can_wait_for_the_state_topic() -> None:
    parked = Parked("e9", "erp.performance.v1", 0, 1, b"c9", b"{}", (), NOW, "unknown contract 'c9'")
    state = engine.park(ContractState("c9", 0), parked)
    later = NOW + timedelta(seconds=CFG.park_seconds)
    assert engine.parked_expired(state, later, CFG)
    assert engine.advance(state, later, CFG, expire_parked=False) == (state, [])
    new, effects = engine.advance(state, later, CFG)
    assert new.parked == () and [type(e) for e in effects] == [DeadLetter]


def test_an_open_circuit_costs_no_round_but_the_give_up_time_still_runs() -> None:
    state, cid = held()
    state, _ = outcome(state, cid)
    state, effects = engine.release_outcome(state, cid, ok=False, permanent=False, error=None,
                                            at=WALL + timedelta(hours=1), give_up=GIVE_UP, now=NOW, counted=False)
    (r,) = state.releases
    assert effects == [] and r.attempts == 1 and r.last_error == "ConnectError: refused"
    state, effects = engine.release_outcome(state, cid, ok=False, permanent=False, error=None, at=WALL + GIVE_UP,
                                            give_up=GIVE_UP, now=NOW, counted=False)
    (dead,) = [e for e in effects if isinstance(e, DeadLetter)]
    assert state.releases == () and "1 failed round(s)" in dead.reason and "ConnectError" in dead.reason
